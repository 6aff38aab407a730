"""``wallet_balances``, ``wallet_lots`` and ``wallet_transactions`` (rules §2).

Built only from Wallet events. Events carry their decisions (which lots a debit took, which
lots returning tokens refill and whether those are frozen), so this projection assigns and
adds: it needs the rows it touches, never a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg

from domain.balances import FIGURES
from domain.wallet import Wallet
from projections.base import (
    Positioned,
    by_class,
    copy_rows,
    fetch_by,
    upsert,
    uuid_order,
    with_topic_prefix,
)

W = Wallet
BALANCE_FIELDS = FIGURES
TX_COLUMNS = (
    "position",
    "wallet_id",
    "user_id",
    "type",
    "amount",
    "tokens",
    "available_after",
    "challenge_id",
    "withdrawal_id",
    "payment_intent_id",
    "adjustment_id",
    "lot_id",
    "reference",
    "cashout_id",
    "actor",
    "request_id",
    "event_time",
)
Outcome = tuple[str | None, int, dict[str, Any]]
"""What one event did to a wallet: (transaction type or None, tokens moved, references)."""


class WalletsProjection:
    name = "wallets"
    tables = ("wallet_transactions", "wallet_lots", "wallet_balances")

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        mine = with_topic_prefix(events, "peerpush:Wallet.")
        if not mine:
            return
        batch = _Batch(cur, mine)
        for p in mine:
            batch.apply(p)
        batch.flush()


class _Batch:
    """The rows one batch touches, loaded once, changed in memory, written once."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        self.cur = cur
        wallet_ids = {p.originator_id for p in events}
        self.wallets = {
            r["wallet_id"]: r for r in fetch_by(cur, "wallet_balances", "wallet_id", wallet_ids)
        }
        self.lots = {
            r["lot_id"]: r for r in fetch_by(cur, "wallet_lots", "lot_id", set(_lot_ids(events)))
        }
        self.touched_wallets: set[UUID] = set()
        self.touched_lots: set[UUID] = set()
        self.transactions: list[tuple[Any, ...]] = []

    def apply(self, p: Positioned) -> None:
        e = p.event
        if isinstance(e, W.Opened):
            self.wallets[p.originator_id] = {
                "wallet_id": p.originator_id,
                "user_id": e.user_id,
                **dict.fromkeys(BALANCE_FIELDS, 0),
                "lot_count": 0,
                "closed": False,
                "opened_at": p.at,
                "updated_at": p.at,
                "last_position": p.position,
            }
            self.touched_wallets.add(p.originator_id)
            return
        w = self.wallets[p.originator_id]
        before = w["available"]
        kind, tokens, refs = self._change(w, p)
        w["updated_at"], w["last_position"] = p.at, p.position
        self.touched_wallets.add(p.originator_id)
        if kind is None:
            return
        self.transactions.append(
            (
                p.position,
                w["wallet_id"],
                w["user_id"],
                kind,
                w["available"] - before,
                tokens,
                w["available"],
                refs.get("challenge_id"),
                refs.get("withdrawal_id"),
                refs.get("payment_intent_id"),
                refs.get("adjustment_id"),
                refs.get("lot_id"),
                refs.get("reference"),
                refs.get("cashout_id"),
                e.actor,
                e.request_id,
                p.at,
            )
        )

    def _change(self, w: dict[str, Any], p: Positioned) -> Outcome:
        """Apply one event to the rows; returns (transaction type, tokens moved, references)."""
        change = by_class(CHANGES, type(p.event))
        if change is None:
            return None, 0, {}  # WithdrawalSettled, DisputeRecorded: no money moves
        return change(self, w, p, p.event)  # type: ignore[no-any-return]  # the table of handlers is typed by event class only

    def _deposit_credited(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._new_lot(
            w,
            p,
            e.lot_id,
            "deposit",
            e.tokens,
            refundable_until=e.refundable_until,
            payment_intent_id=e.payment_intent_id,
            cents_paid=e.cents_paid,
            token_price=e.token_price,
        )
        w["deposited"] += e.tokens
        return (
            "deposit",
            e.tokens,
            {"payment_intent_id": e.payment_intent_id, "lot_id": e.lot_id},
        )

    def _stake_locked(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.taken, p)
        w["staked"] += e.tokens
        return "stake", e.tokens, {"challenge_id": e.challenge_id}

    def _penalty_charged(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.taken, p)
        w["penalised"] += e.tokens
        return (
            "penalty",
            e.tokens,
            {"challenge_id": e.challenge_id, "reference": str(e.submission_id)},
        )

    def _holds_returned(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._give_back(w, e.returned, p)
        w["staked"] -= e.stake
        w["penalised"] -= e.penalties
        return "holds_returned", e.stake + e.penalties, {"challenge_id": e.challenge_id}

    def _stake_settled(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._give_back(w, e.returned, p)
        if e.payout_lot_id is not None and e.payout_tokens > 0:
            self._new_lot(w, p, e.payout_lot_id, "payout", e.payout_tokens)
        w["staked"] -= e.stake
        w["won"] += e.payout_tokens
        w["forfeited"] += max(0, e.stake - e.share)
        return (
            "settlement",
            e.share,
            {"challenge_id": e.challenge_id, "lot_id": e.payout_lot_id},
        )

    def _withdrawal_requested(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.taken, p)
        w["withdrawal_pending"] += e.tokens
        return "withdrawal", e.tokens, {"withdrawal_id": e.withdrawal_id}

    def _lot_refunded(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["withdrawal_pending"] -= e.tokens
        w["refunded"] += e.tokens
        return (
            "refund",
            e.tokens,
            {"withdrawal_id": e.withdrawal_id, "lot_id": e.lot_id, "reference": e.refund_id},
        )

    def _lot_refund_refused(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["withdrawal_pending"] -= e.tokens
        self._give_back(w, e.returned, p)
        return (
            "refund_refused",
            e.tokens,
            {"withdrawal_id": e.withdrawal_id, "lot_id": e.lot_id, "reference": e.reason},
        )

    def _refund_failed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["refunded"] -= e.tokens
        self._give_back(w, e.returned, p)
        return (
            "refund_failed",
            e.tokens,
            {"withdrawal_id": e.withdrawal_id, "lot_id": e.lot_id, "reference": e.refund_id},
        )

    def _adjustment_credited(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._new_lot(w, p, e.lot_id, "adjustment", e.tokens)
        w["adjusted_in"] += e.tokens
        return (
            "adjustment_credit",
            e.tokens,
            {"adjustment_id": e.adjustment_id, "reference": e.reason},
        )

    def _adjustment_debited(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.taken, p)
        w["adjusted_out"] += e.tokens
        return (
            "adjustment_debit",
            e.tokens,
            {"adjustment_id": e.adjustment_id, "reference": e.reason},
        )

    def _lot_frozen(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._lot(e.lot_id, p)["frozen"] = True
        w["available"] -= e.tokens
        w["frozen"] += e.tokens
        return "freeze", e.tokens, {"lot_id": e.lot_id, "reference": e.dispute_id}

    def _lot_unfrozen(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._lot(e.lot_id, p)["frozen"] = False
        w["frozen"] -= e.tokens
        w["available"] += e.tokens
        return "unfreeze", e.tokens, {"lot_id": e.lot_id, "reference": e.dispute_id}

    def _lot_written_off(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        lot = self._lot(e.lot_id, p)
        if e.from_frozen:
            w["frozen"] -= e.taken + e.released
        else:
            w["available"] -= e.taken
        w["available"] += e.released
        lot["remaining"] -= e.taken
        lot["dispute_loss"] += e.loss
        lot["frozen"] = e.stays_frozen
        lot["written_off"] = e.lot_closed
        w["written_off"] += e.written_off
        return "write_off", e.written_off, {"lot_id": e.lot_id, "reference": e.reference}

    def _closed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["closed"] = True
        return None, 0, {}

    def _tokens_unclaimed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.moved, p)
        w["unclaimed"] += e.tokens
        return "unclaimed", e.tokens, {}

    def _write_off_reversed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        if e.refrozen:
            self._lot(e.lot_id, p)["frozen"] = True
        self._give_back(w, e.returned, p)
        if e.reopened:
            self._lot(e.lot_id, p)["written_off"] = False
        w["written_off"] -= e.written_off
        return (
            "write_off_reversed",
            e.written_off,
            {"lot_id": e.lot_id, "reference": e.reference},
        )

    def _cashout_requested(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        self._take(w, e.taken, p)
        w["cashout_pending"] += e.tokens
        return "cashout", e.tokens, {"cashout_id": e.cashout_id}

    def _cashout_settled(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["cashout_pending"] -= e.tokens
        w["cashed_out"] += e.tokens
        return (
            "cashout_transferred",
            e.tokens,
            {"cashout_id": e.cashout_id, "reference": e.transfer_id},
        )

    def _cashout_failed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["cashout_pending"] -= e.tokens
        self._give_back(w, e.returned, p)
        return "cashout_failed", e.tokens, {"cashout_id": e.cashout_id, "reference": e.reason}

    def _cashout_reversed(self, w: dict[str, Any], p: Positioned, e: Any) -> Outcome:
        w["cashed_out"] -= e.tokens
        self._give_back(w, e.returned, p)
        return (
            "cashout_reversed",
            e.tokens,
            {"cashout_id": e.cashout_id, "reference": e.reversal_id},
        )

    def _lot(self, lot_id: Any, p: Positioned) -> dict[str, Any]:
        lot = self.lots[_uuid(lot_id)]
        lot["last_position"] = p.position
        self.touched_lots.add(lot["lot_id"])
        return lot

    def _new_lot(
        self,
        w: dict[str, Any],
        p: Positioned,
        lot_id: UUID,
        source: str,
        tokens: int,
        **deposit: Any,
    ) -> None:
        self.lots[lot_id] = {
            "lot_id": lot_id,
            "wallet_id": w["wallet_id"],
            "user_id": w["user_id"],
            "seq": w["lot_count"],
            "source": source,
            "amount": tokens,
            "remaining": tokens,
            "created_at": p.at,
            "refundable_until": deposit.get("refundable_until"),
            "payment_intent_id": deposit.get("payment_intent_id"),
            "cents_paid": deposit.get("cents_paid"),
            "token_price": deposit.get("token_price"),
            "frozen": False,
            "written_off": False,
            "dispute_loss": 0,
            "last_position": p.position,
        }
        self.touched_lots.add(lot_id)
        w["lot_count"] += 1
        w["available"] += tokens

    def _take(self, w: dict[str, Any], taken: Iterable[Sequence[Any]], p: Positioned) -> None:
        for lot_id, tokens in taken:
            self._lot(lot_id, p)["remaining"] -= tokens
            w["available"] -= tokens

    def _give_back(
        self, w: dict[str, Any], returned: Iterable[Sequence[Any]], p: Positioned
    ) -> None:
        for lot_id, refilled, recovered, frozen in returned:
            lot = self._lot(lot_id, p)
            lot["dispute_loss"] -= recovered
            lot["remaining"] += refilled
            w["frozen" if frozen else "available"] += refilled

    def flush(self) -> None:
        upsert(
            self.cur,
            "wallet_balances",
            ("wallet_id",),
            [self.wallets[i] for i in sorted(self.touched_wallets, key=uuid_order)],
        )
        upsert(
            self.cur,
            "wallet_lots",
            ("lot_id",),
            [self.lots[i] for i in sorted(self.touched_lots, key=uuid_order)],
        )
        copy_rows(self.cur, "wallet_transactions", TX_COLUMNS, self.transactions)


# Which rows each event class changes (an event class not listed moves no money).
CHANGES: dict[type[Any], Callable[[_Batch, dict[str, Any], Positioned, Any], Outcome] | None] = {
    W.DepositCredited: _Batch._deposit_credited,
    W.StakeLocked: _Batch._stake_locked,
    W.PenaltyCharged: _Batch._penalty_charged,
    W.HoldsReturned: _Batch._holds_returned,
    W.StakeSettled: _Batch._stake_settled,
    W.WithdrawalRequested: _Batch._withdrawal_requested,
    W.LotRefunded: _Batch._lot_refunded,
    W.LotRefundRefused: _Batch._lot_refund_refused,
    W.RefundFailed: _Batch._refund_failed,
    W.AdjustmentCredited: _Batch._adjustment_credited,
    W.AdjustmentDebited: _Batch._adjustment_debited,
    W.LotFrozen: _Batch._lot_frozen,
    W.LotUnfrozen: _Batch._lot_unfrozen,
    W.LotWrittenOff: _Batch._lot_written_off,
    W.Closed: _Batch._closed,
    W.TokensUnclaimed: _Batch._tokens_unclaimed,
    W.WriteOffReversed: _Batch._write_off_reversed,
    W.CashoutRequested: _Batch._cashout_requested,
    W.CashoutSettled: _Batch._cashout_settled,
    W.CashoutFailed: _Batch._cashout_failed,
    W.CashoutReversed: _Batch._cashout_reversed,
}


def _uuid(value: Any) -> UUID:
    """Decoded events carry UUIDs already; anything else is parsed."""
    return value if value.__class__ is UUID else UUID(str(value))


def _taken_lots(e: Any) -> Iterable[Any]:
    return [pair[0] for pair in e.taken]


def _returned_lots(e: Any) -> Iterable[Any]:
    return [record[0] for record in e.returned]


def _the_lot(e: Any) -> Iterable[Any]:
    return (e.lot_id,)


LOT_REFERENCES: dict[type[Any], Callable[[Any], Iterable[Any]] | None] = {
    W.StakeLocked: _taken_lots,
    W.PenaltyCharged: _taken_lots,
    W.WithdrawalRequested: _taken_lots,
    W.AdjustmentDebited: _taken_lots,
    W.HoldsReturned: _returned_lots,
    W.StakeSettled: _returned_lots,
    W.LotRefundRefused: _returned_lots,
    W.RefundFailed: _returned_lots,
    W.LotFrozen: _the_lot,
    W.LotUnfrozen: _the_lot,
    W.LotWrittenOff: _the_lot,  # its ``taken`` is a token count, not lot pairs
    W.TokensUnclaimed: lambda e: [pair[0] for pair in e.moved],
    W.WriteOffReversed: _returned_lots,
    W.CashoutRequested: _taken_lots,
    W.CashoutFailed: _returned_lots,
    W.CashoutReversed: _returned_lots,
}


def _lot_ids(events: Iterable[Positioned]) -> Iterable[UUID]:
    """Every existing lot a batch's events refer to (new lots are created in memory)."""
    for p in events:
        refs = by_class(LOT_REFERENCES, type(p.event))
        if refs is not None:
            for lot_id in refs(p.event):
                yield _uuid(lot_id)
