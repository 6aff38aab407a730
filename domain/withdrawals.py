"""A wallet's refunds to the card: withdrawal holds and each lot's outcome (rules §2).

Phase one holds refundable deposit lots (``Wallet.WithdrawalRequested``); phase two records
one outcome per lot: refunded, refused (tokens back in the lot), and later perhaps failed.
A closed wallet's one refund per lot (rules §7) is the same hold. A mixin of ``Wallet``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain.aggregate import Cause, LedgerEvent
from domain.errors import NotRefundable, OutcomeAlreadyRecorded, UnknownLot, UnknownWithdrawal
from domain.tokens import Returned, Taken, positive_tokens, returning, take_fifo, total
from domain.wallet_state import LotOutcome, WalletState, WithdrawalHold


class Withdrawals(WalletState):
    """Refunds to the card, lot by lot, each lot refunded at most once."""

    class WithdrawalRequested(LedgerEvent):
        """Phase one of a refund to the card: the chosen lots' tokens are held."""

        TOPIC = "peerpush:Wallet.WithdrawalRequested"
        withdrawal_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: WalletState) -> None:
            wallet._take(self.taken)
            wallet.withdrawals[str(self.withdrawal_id)] = WithdrawalHold(
                withdrawal_id=self.withdrawal_id,
                lots={str(lot): n for lot, n in self.taken},
            )
            wallet.withdrawal_pending += self.tokens
            if wallet.closed:  # the one refund to the card a closed wallet's lot gets
                wallet.erasure_tried.update((str(lot), True) for lot, _ in self.taken)

    class LotRefunded(LedgerEvent):
        """Stripe refunded one lot of a withdrawal: its tokens left the ledger."""

        TOPIC = "peerpush:Wallet.LotRefunded"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        refund_id: str
        cents: int

        def apply(self, wallet: WalletState) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = LotOutcome.REFUNDED
            hold.refund_ids[str(self.lot_id)] = self.refund_id
            wallet.withdrawal_pending -= self.tokens
            wallet.refunded += self.tokens

    class LotRefundRefused(LedgerEvent):
        """The refund of one lot was not made: its tokens went back to the lot."""

        TOPIC = "peerpush:Wallet.LotRefundRefused"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        reason: str
        returned: Returned

        def apply(self, wallet: WalletState) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = LotOutcome.REFUSED
            wallet.withdrawal_pending -= self.tokens
            wallet._give_back(self.returned)

    class WithdrawalSettled(LedgerEvent):
        """Every lot of the withdrawal has an outcome."""

        TOPIC = "peerpush:Wallet.WithdrawalSettled"
        withdrawal_id: UUID
        refunded: int
        refused: int

        def apply(self, wallet: WalletState) -> None:
            wallet.withdrawals[str(self.withdrawal_id)].settled = True

    class RefundFailed(LedgerEvent):
        """A refund recorded as made failed later: its tokens came back to the lot."""

        TOPIC = "peerpush:Wallet.RefundFailed"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        refund_id: str
        returned: Returned

        def apply(self, wallet: WalletState) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = LotOutcome.FAILED
            wallet.refunded -= self.tokens
            wallet._give_back(self.returned)

    def refundable(self, now: datetime) -> int:
        return sum(lot.remaining for lot in self.lots.values() if lot.refundable_at(now))

    def request_withdrawal(
        self, withdrawal_id: UUID, tokens: int, cause: Cause, at: datetime
    ) -> Taken:
        """Hold refundable deposit lots, oldest first, for a refund to the card."""
        positive_tokens(tokens)
        self._refuse_if_closed()
        if str(withdrawal_id) in self.withdrawals:
            return tuple(
                (UUID(lot), n) for lot, n in self.withdrawals[str(withdrawal_id)].lots.items()
            )
        refundable = [lot for lot in self.lots.values() if lot.refundable_at(at)]
        available = sum(lot.remaining for lot in refundable)
        if tokens > available:
            raise NotRefundable(tokens, available)
        taken = take_fifo(refundable, tokens, available=available)
        self._record(
            self.WithdrawalRequested,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            tokens=tokens,
            taken=taken,
        )
        return taken

    def record_refund(
        self,
        withdrawal_id: UUID,
        lot_id: UUID,
        refund_id: str,
        cause: Cause,
        at: datetime,
    ) -> None:
        """Record that Stripe refunded one lot of a withdrawal (its first outcome)."""
        hold, tokens = self._pending_lot(withdrawal_id, lot_id)
        lot = self.lot(lot_id)
        self._record(
            self.LotRefunded,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            refund_id=refund_id,
            cents=tokens * lot.token_price,
        )
        self._settle_if_complete(hold, cause, at)

    def refuse_refund(
        self, withdrawal_id: UUID, lot_id: UUID, reason: str, cause: Cause, at: datetime
    ) -> None:
        """Record that one lot's refund was not made: its tokens go back to the lot."""
        hold, tokens = self._pending_lot(withdrawal_id, lot_id)
        self._record(
            self.LotRefundRefused,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            reason=reason,
            returned=returning(self.lots, [(lot_id, tokens)]),
        )
        self._settle_if_complete(hold, cause, at)

    def fail_refund(self, withdrawal_id: UUID, lot_id: UUID, cause: Cause, at: datetime) -> bool:
        """A refund already recorded as made failed later; anything else is ignored.

        Its tokens go back to the lot's record, so a record dropped meanwhile (rules §1:
        only long after its refund window) cannot take them: ``UnknownLot``, nothing changes.
        """
        hold = self.withdrawals.get(str(withdrawal_id))
        if hold is None:
            raise UnknownWithdrawal(f"no withdrawal {withdrawal_id}")
        if hold.outcome(lot_id) is not LotOutcome.REFUNDED:
            return False
        tokens = hold.lots[str(lot_id)]
        self.lot(lot_id)
        self._record(
            self.RefundFailed,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            refund_id=hold.refund_ids.get(str(lot_id), ""),
            returned=returning(self.lots, [(lot_id, tokens)]),
        )
        return True

    # -- an erased owner's refunds (rules §7) ----------------------------------------------

    def erasure_refundable(self, at: datetime) -> Taken:
        """What a closed wallet still refunds to the card: usable deposit lots in their
        refund window that no refund to the card was tried for since the closing."""
        if not self.closed:
            return ()
        return tuple(
            (lot.lot_id, lot.remaining)
            for lot in self.lots.values()
            if lot.remaining > 0
            and lot.refundable_at(at)
            and str(lot.lot_id) not in self.erasure_tried
        )

    def request_erasure_refund(self, withdrawal_id: UUID, cause: Cause, at: datetime) -> Taken:
        """Hold every lot a closed wallet still refunds to the card, for one refund each.

        The same ``WithdrawalRequested`` a user's withdrawal records, so the withdrawal
        worker makes and records the refunds; its lots are never refunded a second time.
        """
        taken = self.erasure_refundable(at)
        if taken:
            self._record(
                self.WithdrawalRequested,
                cause,
                at,
                withdrawal_id=withdrawal_id,
                tokens=total(taken),
                taken=taken,
            )
        return taken

    def _pending_lot(self, withdrawal_id: UUID, lot_id: UUID) -> tuple[WithdrawalHold, int]:
        hold = self.withdrawals.get(str(withdrawal_id))
        if hold is None:
            raise UnknownWithdrawal(f"no withdrawal {withdrawal_id}")
        if str(lot_id) not in hold.lots:
            raise UnknownLot(f"lot {lot_id} is not part of withdrawal {withdrawal_id}")
        if hold.outcome(lot_id) is not LotOutcome.PENDING:
            raise OutcomeAlreadyRecorded(f"lot {lot_id} already {hold.outcome(lot_id)}")
        return hold, hold.lots[str(lot_id)]

    def _settle_if_complete(self, hold: WithdrawalHold, cause: Cause, at: datetime) -> None:
        if all(hold.outcome(lot) is not LotOutcome.PENDING for lot in hold.lots):
            refunded = sum(
                n for lot, n in hold.lots.items() if hold.outcome(lot) is LotOutcome.REFUNDED
            )
            self._record(
                self.WithdrawalSettled,
                cause,
                at,
                withdrawal_id=hold.withdrawal_id,
                refunded=refunded,
                refused=sum(hold.lots.values()) - refunded,
            )
