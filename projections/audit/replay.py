"""The stream replayed into wallets and challenges, in memory, trusting nothing else.

Each stored event is decoded with the ledger's own mapper and applied to its aggregate with
the domain's ``mutate`` (which checks that versions follow each other). Verifications and
invite codes move no money: their events are decoded (so an unreadable one is found) but
not kept. The journal's accounts are derived from the replayed aggregates, independently of
the journal projection's posting rules.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.challenge import CANCELLED, SETTLED, Challenge
from domain.wallet import Wallet
from projections.audit.findings import Finding
from projections.money_events import MONEY_TOPICS

MAX_EVENT_FINDINGS = 50

OTHER, WALLET, MONEY, CHALLENGE, SETTLEMENT = range(5)
W = Wallet
CLOSING = {Challenge.Settled.TOPIC, Challenge.Cancelled.TOPIC}


def kind_of(topic: str) -> int:
    """How the audit treats an event: kept in a wallet (moving money or not), kept in a
    challenge (a settlement is a journal entry), or only decoded."""
    if topic.startswith("peerpush:Wallet."):
        return MONEY if topic in MONEY_TOPICS else WALLET
    if topic.startswith("peerpush:Challenge."):
        return SETTLEMENT if topic == Challenge.Settled.TOPIC else CHALLENGE
    return OTHER


OnTransaction = Callable[[int, UUID, int | None, int | None], None]
"""Told of each Wallet money event: (position, wallet, change of available, available after);
the two numbers are None when the event was not applied (its wallet can no longer be trusted)."""
SETTLED_TOPIC = Challenge.Settled.TOPIC
DROPPED_TOPIC = Wallet.LotRecordsDropped.TOPIC


class Replay:
    """Wallets and challenges as the stream makes them, plus what the stream looked like.

    ``results`` keeps each settled challenge's per-participant result from its ``Settled``
    event, ``{user_id: (expected, accepted, finished, share)}``, which the aggregate does not
    hold (the ``challenge_participants`` read model does).
    """

    def __init__(
        self,
        decode: Callable[[Notification], Any],
        on_money: Callable[[int], None] | None = None,
        on_transaction: OnTransaction | None = None,
    ) -> None:
        self.decode = decode
        self.on_money = on_money
        self.on_transaction = on_transaction
        self.wallets: dict[UUID, Wallet] = {}
        self.challenges: dict[UUID, Challenge] = {}
        self.results: dict[UUID, dict[str, tuple[int, int, bool, int]]] = {}
        self.by_aggregate: Counter[str] = Counter()
        self.events = 0
        self.first = 0
        self.last = 0
        self.gaps = 0
        self.findings: list[Finding] = []
        self.failed = 0
        self.stopped: dict[UUID, int] = {}
        self._kinds: dict[str, int] = {}
        self.dropped_lots: set[str] = set()
        """Lots whose records a wallet dropped (rules §1): their read-model rows stay."""

    def apply(self, n: Notification) -> None:
        position = n.id
        if position != self.last + 1:
            self.gaps += position - self.last - 1
        if not self.first:
            self.first = position
        self.last = position
        self.events += 1
        topic = n.topic
        kind = self._kinds.get(topic)
        if kind is None:
            kind = self._kinds[topic] = kind_of(topic)
        self.by_aggregate[topic.partition(".")[0]] += 1
        if kind in (MONEY, SETTLEMENT) and self.on_money is not None:
            self.on_money(position)
        on_transaction = self.on_transaction if kind == MONEY else None
        oid: UUID = n.originator_id  # type: ignore[assignment]  # a uuid column
        try:
            event = self.decode(n)
        except Exception as error:
            self._failed(n, f"cannot be decoded: {error}")
            if on_transaction is not None:
                on_transaction(position, oid, None, None)
            return
        if kind == OTHER:
            return
        if kind >= CHALLENGE:
            store: dict[UUID, Any] = self.challenges
        else:
            store = self.wallets
        if oid in self.stopped:
            self.stopped[oid] += 1
            if on_transaction is not None:
                on_transaction(position, oid, None, None)
            return
        current = store.get(oid)
        before = current.available if on_transaction is not None and current is not None else 0
        try:
            store[oid] = aggregate = event.mutate(current)
        except Exception as error:
            self._failed(n, f"does not apply to its aggregate: {type(error).__name__} {error}")
            # Its state can no longer be trusted: later events of it are counted, not applied.
            self.stopped[oid] = 0
            if on_transaction is not None:
                on_transaction(position, oid, None, None)
        else:
            if on_transaction is not None:
                after = aggregate.available
                on_transaction(position, oid, after - before, after)
            elif topic == SETTLED_TOPIC:
                self.results[oid] = {str(r[0]): (r[1], r[2], r[3], r[5]) for r in event.results}
            elif topic == DROPPED_TOPIC:
                self.dropped_lots.update(str(lot_id) for lot_id in event.lot_ids)
        if topic in CLOSING:
            self._compact(store.get(oid))

    def _compact(self, challenge: Challenge | None) -> None:
        """A closed challenge takes no more submissions: drop them, keep its money."""
        if challenge is not None:
            challenge.submissions = {}
            challenge.photo_hashes = {}

    def _failed(self, n: Notification, why: str) -> None:
        self.failed += 1
        if self.failed <= MAX_EVENT_FINDINGS:
            self.findings.append(
                Finding(
                    "event",
                    f"{n.topic} v{n.originator_version} of {n.originator_id} {why}",
                    position=n.id,
                )
            )

    def finish(self) -> None:
        for aggregate_id, skipped in self.stopped.items():
            if skipped:
                self.findings.append(
                    Finding("event", f"{skipped} later event(s) of {aggregate_id} not applied")
                )
        if self.failed > MAX_EVENT_FINDINGS:
            more = self.failed - MAX_EVENT_FINDINGS
            self.findings.append(Finding("event", f"... and {more} more events that failed"))


def accounts(wallets: dict[UUID, Wallet], challenges: dict[UUID, Challenge]) -> dict[str, int]:
    """The journal's account balances implied by the aggregates (non-zero ones).

    Users' available, frozen and pending tokens; open challenges' stakes and penalties;
    platform revenue (fees and forfeits), dispute losses (what lots still owe), adjustments
    and unclaimed tokens of erased users; Stripe's side: tokens bought (negative), refunded,
    taken by disputes and transferred.
    """
    out: defaultdict[str, int] = defaultdict(int)
    for w in wallets.values():
        u = f"user:{w.user_id}"
        out[f"{u}:available"] += w.available
        out[f"{u}:frozen"] += w.frozen
        out[f"{u}:withdrawal_pending"] += w.withdrawal_pending
        out[f"{u}:cashout_pending"] += w.cashout_pending
        out["platform:dispute_losses"] -= sum(lot.loss for lot in w.lots.values())
        out["platform:adjustments"] += w.adjusted_out - w.adjusted_in
        out["stripe:clearing"] -= w.deposited
        out["stripe:refunds"] += w.refunded
        out["stripe:disputes"] += w.written_off_total
        out["stripe:transfers"] += w.cashed_out
        out["platform:unclaimed"] += w.unclaimed
    for c in challenges.values():
        if c.status == SETTLED:
            out["platform:revenue"] += c.fee + c.forfeited
        elif c.status != CANCELLED:
            for p in c.participants.values():
                out[f"challenge:{c.id}:stake:{p.user_id}"] += p.stake
                out[f"challenge:{c.id}:penalties"] += p.penalties
    return {account: balance for account, balance in out.items() if balance}


def account_class(account: str) -> str:
    """``user:<id>:available`` → ``user:available``; ``challenge:<id>:stake:<user>`` →
    ``challenge:stake``; platform and Stripe accounts are their own class."""
    parts = account.split(":")
    if parts[0] == "user" and len(parts) == 3:
        return f"user:{parts[2]}"
    if parts[0] == "challenge" and len(parts) >= 3:
        return f"challenge:{parts[2]}"
    return account


def by_class(balances: dict[str, int]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for account, balance in balances.items():
        out[account_class(account)] += balance
    return dict(sorted(out.items()))
