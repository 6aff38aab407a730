"""The wallet: one per user, the only place a user's tokens live (rules §2).

Commands check the rules and decide exactly which lots move; the events they record carry
those decisions (``taken`` pairs, ``returned`` triples) so applying an event only assigns.

The aggregate is assembled from one mixin per concept, each holding its events and
commands: ``Stakes`` (challenge holds), ``Withdrawals`` and ``Closing`` (refunds to the card,
an erased owner), ``Disputes`` (freezes and write-offs), ``LotRecords`` (dropping old lot
records). The library redefines every mixin's events as ``Wallet.<Event>`` under their
explicit topics, so streams recorded before the split load unchanged. A new concept (such as
cash-outs) is one more mixin listed here, before ``LedgerAggregate``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerAggregate, LedgerCreated, LedgerEvent
from domain.cashouts import CashoutHold, Cashouts
from domain.closing import Closing
from domain.disputes import Disputes
from domain.errors import InvalidField
from domain.lot_records import LotRecords
from domain.stakes import Stakes
from domain.tokens import Lot, LotSource, Taken, positive_tokens, take_fifo
from domain.used_ids import ADJUSTMENT, UsedId
from domain.wallet_snapshot import WalletSnapshot
from domain.wallet_state import (
    EarlyLoss,
    LotOutcome,
    LotPart,
    WalletState,
    WithdrawalHold,
    WriteOffReason,
    WriteOffRecord,
)
from domain.withdrawals import Withdrawals

__all__ = [
    "EarlyLoss",
    "LotOutcome",
    "LotPart",
    "Wallet",
    "WithdrawalHold",
    "WriteOffReason",
    "WriteOffRecord",
]


class Wallet(Cashouts, Closing, Withdrawals, Disputes, Stakes, LotRecords, LedgerAggregate):
    """A user's tokens: lots, holds for stakes, penalties and withdrawals, and totals."""

    TOPIC = "peerpush:Wallet"
    class_version = 4
    # Its lot records snapshotted as columns (snapshots of the library's class still load).
    Snapshot = WalletSnapshot

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before wallets could be closed: open, nothing unclaimed, and no
        external refund to reverse (a failure of one written off before is not reversed)."""
        state.update(
            closed=False,
            unclaimed=0,
            erasure_tried={},
            write_offs={},
            reversed_write_offs={},
        )

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot from before typed records and dropped lot records: its holds were
        ``[lot, tokens]`` lists, its early losses and write-offs lists too; no record had
        been dropped, so the next lot's sequence number is the number of lots."""
        for name in ("stakes", "penalties"):
            state[name] = {
                key: [LotPart(UUID(str(lot)), int(n)) for lot, n in parts]
                for key, parts in state[name].items()
            }
        state["early_losses"] = {
            pi: EarlyLoss(str(dispute), int(cents))
            for pi, (dispute, cents) in state["early_losses"].items()
        }
        state["write_offs"] = {
            ref: WriteOffRecord(UUID(str(lot)), int(w), str(reason))
            for ref, (lot, w, reason) in state["write_offs"].items()
        }
        state["next_lot_seq"] = len(state["lots"])
        state["lots_dropped"] = 0

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A snapshot taken before cash-outs existed has none."""
        state.update(cashouts={})

    class Opened(LedgerCreated):
        TOPIC = "peerpush:Wallet.Opened"
        user_id: UUID

    class DepositCredited(LedgerEvent):
        """Tokens bought with a card: one per PaymentIntent, a new deposit lot."""

        TOPIC = "peerpush:Wallet.DepositCredited"
        payment_intent_id: str
        lot_id: UUID
        tokens: int
        cents_paid: int
        token_price: int
        refundable_until: datetime

        def apply(self, wallet: WalletState) -> None:
            wallet._add_lot(
                Lot(
                    lot_id=self.lot_id,
                    seq=wallet.next_lot_seq,
                    source=LotSource.DEPOSIT,
                    amount=self.tokens,
                    remaining=self.tokens,
                    created_at=self.timestamp,
                    refundable_until=self.refundable_until,
                    payment_intent_id=self.payment_intent_id,
                    cents_paid=self.cents_paid,
                    token_price=self.token_price,
                )
            )
            wallet.deposits[self.payment_intent_id] = str(self.lot_id)
            wallet.deposited += self.tokens

    class AdjustmentCredited(LedgerEvent):
        """``marked``: the adjustment id is remembered by its own ``UsedId`` (saved with
        this event), not in the wallet's state; v1 events kept it in ``adjustments``."""

        TOPIC = "peerpush:Wallet.AdjustmentCredited"
        class_version = 2
        adjustment_id: UUID
        lot_id: UUID
        tokens: int
        reason: str
        marked: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(marked=False)

        def apply(self, wallet: WalletState) -> None:
            wallet._add_lot(
                Lot(
                    lot_id=self.lot_id,
                    seq=wallet.next_lot_seq,
                    source=LotSource.ADJUSTMENT,
                    amount=self.tokens,
                    remaining=self.tokens,
                    created_at=self.timestamp,
                )
            )
            wallet.adjusted_in += self.tokens
            if not self.marked:
                wallet.adjustments[str(self.adjustment_id)] = self.tokens

    class AdjustmentDebited(LedgerEvent):
        """``marked`` as for ``AdjustmentCredited``."""

        TOPIC = "peerpush:Wallet.AdjustmentDebited"
        class_version = 2
        adjustment_id: UUID
        tokens: int
        taken: Taken
        reason: str
        marked: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(marked=False)

        def apply(self, wallet: WalletState) -> None:
            wallet._take(self.taken)
            wallet.adjusted_out += self.tokens
            if not self.marked:
                wallet.adjustments[str(self.adjustment_id)] = -self.tokens

    def __init__(self, user_id: UUID) -> None:
        self._init_state(user_id)
        self.cashouts: dict[str, CashoutHold] = {}

    @classmethod
    def open(cls, user_id: UUID, cause: Cause, at: datetime) -> Wallet:
        return cls._create(
            cls.Opened,
            id=ids.wallet_id(user_id),
            user_id=user_id,
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )

    # -- queries -----------------------------------------------------------------------

    @property
    def written_off(self) -> int:
        """The lifetime written-off total, under the name every view gives it."""
        return self.written_off_total

    def has_credited(self, payment_intent_id: str) -> bool:
        return payment_intent_id in self.deposits

    @property
    def holds_in_flight(self) -> bool:
        return bool(
            self.staked
            or self.withdrawal_pending
            or self.cashout_pending
            or any(self.penalties.values())
        )

    # -- commands ----------------------------------------------------------------------

    def credit_deposit(
        self,
        payment_intent_id: str,
        cents_paid: int,
        token_price: int,
        refund_window: timedelta,
        cause: Cause,
        at: datetime,
    ) -> bool:
        """Credit a paid PaymentIntent once; a repeat delivery changes nothing."""
        if self.has_credited(payment_intent_id):
            return False
        positive_tokens(cents_paid, what="cents paid")
        positive_tokens(token_price, what="token price")
        tokens = cents_paid // token_price
        if tokens <= 0:
            raise InvalidField("the payment buys no whole token")
        lot_id = ids.deposit_lot_id(payment_intent_id)
        self._record(
            self.DepositCredited,
            cause,
            at,
            payment_intent_id=payment_intent_id,
            lot_id=lot_id,
            tokens=tokens,
            cents_paid=cents_paid,
            token_price=token_price,
            refundable_until=at + refund_window,
        )
        early = self.early_disputes.get(payment_intent_id)
        if early is not None:
            self.freeze_lot(lot_id, early, cause, at)
        lost = self.early_losses.get(payment_intent_id)
        if lost is not None:
            self.write_off(
                lot_id, lost.dispute_id, WriteOffReason.DISPUTE_LOST, lost.cents, cause, at
            )
        return True

    def adjusted_before(self, adjustment_id: UUID) -> bool:
        """Whether an adjustment recorded before ids were kept apart (v1 events) had this id;
        later ones are remembered by their ``UsedId``, which the application looks up."""
        return str(adjustment_id) in self.adjustments

    def credit_adjustment(
        self, adjustment_id: UUID, tokens: int, reason: str, cause: Cause, at: datetime
    ) -> UsedId | None:
        """An admin's credit: a new adjustment lot. A repeated adjustment id changes nothing.

        Returns the id's marker, to be saved with the wallet (``None``: a repeat). The caller
        has checked there is no marker of this id yet."""
        positive_tokens(tokens)
        if self.adjusted_before(adjustment_id):
            return None
        self._record(
            self.AdjustmentCredited,
            cause,
            at,
            adjustment_id=adjustment_id,
            lot_id=ids.adjustment_lot_id(adjustment_id),
            tokens=tokens,
            reason=_reason(reason),
            marked=True,
        )
        return UsedId.record(self.id, ADJUSTMENT, str(adjustment_id), cause, at)

    def debit_adjustment(
        self, adjustment_id: UUID, tokens: int, reason: str, cause: Cause, at: datetime
    ) -> UsedId | None:
        """An admin's debit, FIFO. A repeated adjustment id changes nothing (as a credit)."""
        positive_tokens(tokens)
        if self.adjusted_before(adjustment_id):
            return None
        taken = take_fifo(self.lots.values(), tokens, available=self.available)
        self._record(
            self.AdjustmentDebited,
            cause,
            at,
            adjustment_id=adjustment_id,
            tokens=tokens,
            taken=taken,
            reason=_reason(reason),
            marked=True,
        )
        return UsedId.record(self.id, ADJUSTMENT, str(adjustment_id), cause, at)


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not 1 <= len(reason) <= 500:
        raise InvalidField("a reason of 1 to 500 characters is required")
    return reason
