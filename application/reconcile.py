"""Reconciliation: the ledger against what Stripe says happened (rules §6).

Stripe's charges, refunds, transfers and disputes created since a date are listed through the
Stripe adapter and matched with the ledger's deposits, refunds, cash-outs and written-off lots
by Stripe id, never by date. Every difference is reported:

- ``missing_in_ledger``: Stripe has it (since the date), the ledger has no record of it;
- ``missing_at_stripe``: the ledger recorded it (since the date), Stripe's list lacks it;
- ``amount_differs``: both know it, the cents differ.

The ledger side is read from the event stream (all of it, indexed by Stripe id), so an object
created at Stripe just before the date and recorded just after is still matched: Stripe is
listed from a day before the date for the ledger's side of the comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TextIO

from domain.wallet import Wallet
from domain.wallet_state import WriteOffReason

LOOKBACK = timedelta(days=1)
REFUND_MADE = frozenset({"pending", "requires_action", "succeeded"})
KINDS = ("charges", "refunds", "transfers", "disputes")


@dataclass(frozen=True)
class StripeObject:
    """One of Stripe's money objects, as reconciliation compares it."""

    kind: str  # charges | refunds | transfers | disputes
    stripe_id: str  # the id the ledger records: PaymentIntent, refund, transfer, dispute
    cents: int  # what it moved, net (a failed refund 0, a transfer net of reversals)
    created: datetime


class StripeRecords(Protocol):
    """Stripe's lists, as the reconciliation reads them."""

    def money_objects(self, since: datetime) -> Sequence[StripeObject]:
        """Charges, refunds, transfers and disputes created at or after ``since``."""
        ...


@dataclass(frozen=True)
class LedgerRecord:
    kind: str
    stripe_id: str
    cents: int
    at: datetime


@dataclass(frozen=True)
class Mismatch:
    kind: str
    stripe_id: str
    problem: str  # missing_in_ledger | missing_at_stripe | amount_differs
    ledger_cents: int | None
    stripe_cents: int | None


@dataclass
class Report:
    since: datetime
    matched: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: {"count": 0, "cents": 0} for k in KINDS}
    )
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def write_text(self, out: TextIO) -> None:
        """The report as an operator reads it: matched totals, then every mismatch."""
        out.write(f"reconciliation since {self.since.isoformat()}\n")
        for kind, totals in self.matched.items():
            out.write(f"  matched {kind:<10} {totals['count']:>6}  {totals['cents']:>12} cents\n")
        if self.ok:
            out.write("no mismatch\n")
            return
        out.write(f"{len(self.mismatches)} mismatch(es):\n")
        for m in self.mismatches:
            out.write(
                f"  {m.problem:<18} {m.kind:<10} {m.stripe_id}  "
                f"ledger={m.ledger_cents} stripe={m.stripe_cents}\n"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "ok": self.ok,
            "matched": self.matched,
            "mismatches": [asdict(m) for m in self.mismatches],
        }


def ledger_records(events: Iterable[Any]) -> dict[tuple[str, str], LedgerRecord]:
    """What the ledger recorded of Stripe's objects, by (kind, Stripe id), from wallet events
    in stream order: cents are net of later failures and reversals."""
    out: dict[tuple[str, str], LedgerRecord] = {}
    cashouts: dict[str, tuple[int, str]] = {}  # cash-out id → (token price, transfer id)

    def put(kind: str, stripe_id: str, cents: int, at: datetime) -> None:
        first = out.get((kind, stripe_id))
        out[(kind, stripe_id)] = LedgerRecord(kind, stripe_id, cents, first.at if first else at)

    def add(kind: str, stripe_id: str, cents: int, at: datetime) -> None:
        found = out.get((kind, stripe_id))
        put(kind, stripe_id, (found.cents if found else 0) + cents, at)

    W = Wallet
    for e in events:
        at = e.timestamp
        if isinstance(e, W.DepositCredited):
            put("charges", e.payment_intent_id, e.cents_paid, at)
        elif isinstance(e, W.LotRefunded):
            add("refunds", e.refund_id, e.cents, at)
        elif isinstance(e, W.RefundFailed):
            put("refunds", e.refund_id, 0, at)
        elif isinstance(e, (W.LotFrozen, W.DisputeRecorded)):
            if ("disputes", e.dispute_id) not in out:
                put("disputes", e.dispute_id, 0, at)
        elif isinstance(e, W.LotWrittenOff):
            kind = "refunds" if e.reason == WriteOffReason.EXTERNAL_REFUND else "disputes"
            put(kind, e.reference, e.cents, at)
        elif isinstance(e, W.WriteOffReversed):
            put("refunds", e.reference, 0, at)
        elif isinstance(e, W.CashoutRequested):
            cashouts[str(e.cashout_id)] = (e.token_price, "")
        elif isinstance(e, W.CashoutSettled):
            price, _ = cashouts.get(str(e.cashout_id), (1, ""))
            cashouts[str(e.cashout_id)] = (price, e.transfer_id)
            put("transfers", e.transfer_id, e.tokens * price, at)
        elif isinstance(e, W.CashoutReversed):
            price, transfer_id = cashouts.get(str(e.cashout_id), (1, ""))
            add("transfers", transfer_id, -e.tokens * price, at)
    return out


def reconcile(
    since: datetime,
    ledger: Mapping[tuple[str, str], LedgerRecord],
    stripe: StripeRecords,
    until: datetime | None = None,
) -> Report:
    """Compare; Stripe is listed from a day before ``since`` (see the module's docstring).

    With ``until``, objects created (and records made) at or after it are left out: the
    scheduled run leaves out the last moments, in which a webhook may still be on its way.
    """
    listed = {(o.kind, o.stripe_id): o for o in stripe.money_objects(since - LOOKBACK)}
    report = Report(since)
    for key, obj in sorted(listed.items()):
        record = ledger.get(key)
        if obj.created < since or (until is not None and obj.created >= until):
            continue  # listed only to match the ledger's records since the date
        if record is None:
            # A refund that failed moved nothing; every dispute is known to the ledger.
            if obj.cents or obj.kind == "disputes":
                report.mismatches.append(
                    Mismatch(obj.kind, obj.stripe_id, "missing_in_ledger", None, obj.cents)
                )
            continue
        if record.cents != obj.cents:
            report.mismatches.append(
                Mismatch(obj.kind, obj.stripe_id, "amount_differs", record.cents, obj.cents)
            )
            continue
        report.matched[obj.kind]["count"] += 1
        report.matched[obj.kind]["cents"] += obj.cents
    for key, record in sorted(ledger.items()):
        if record.at >= since and (until is None or record.at < until) and key not in listed:
            report.mismatches.append(
                Mismatch(record.kind, record.stripe_id, "missing_at_stripe", record.cents, None)
            )
    return report


def wallet_events(ledger: Any, page: int = 1000) -> Iterable[Any]:
    """Every wallet event of a ledger's stream, decoded, in stream order."""
    start = 1
    while True:
        batch = ledger.recorder.select_notifications(start, page)
        for n in batch:
            if n.topic.startswith("peerpush:Wallet."):
                yield ledger.mapper.to_domain_event(n)
        if len(batch) < page:
            return
        start = batch[-1].id + 1


def reconcile_ledger(since: datetime, ledger: Any, stripe: StripeRecords) -> Report:
    """The ledger's wallet events since the start against Stripe's objects since ``since``."""
    return reconcile(since, ledger_records(wallet_events(ledger)), stripe)
