"""A wallet's card disputes and write-offs (rules §6).

A dispute freezes the lot its deposit created (or waits for the deposit when it arrives
first); won, the lot is usable again; lost, card money is taken back: written off. A refund
made outside our flow is written off too, and reversed once if it fails later. A mixin of
``Wallet``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain.aggregate import Cause, LedgerEvent
from domain.tokens import Returned, positive_tokens, returning
from domain.wallet_state import EarlyLoss, WalletState, WriteOffReason, WriteOffRecord


class Disputes(WalletState):
    """Frozen lots, disputes kept until their deposit arrives, and write-offs by reference."""

    class DisputeRecorded(LedgerEvent):
        """A dispute arrived before its deposit was credited; kept until it is."""

        TOPIC = "peerpush:Wallet.DisputeRecorded"
        dispute_id: str
        payment_intent_id: str

        def apply(self, wallet: WalletState) -> None:
            wallet.early_disputes[self.payment_intent_id] = self.dispute_id

    class EarlyDisputeClosed(LedgerEvent):
        """A dispute kept before its deposit was credited was closed; applied at the credit.

        Won: the deposit will be credited usable. Lost: it will be credited and then written
        off for ``cents``.
        """

        TOPIC = "peerpush:Wallet.EarlyDisputeClosed"
        dispute_id: str
        payment_intent_id: str
        won: bool
        cents: int

        def apply(self, wallet: WalletState) -> None:
            wallet.early_disputes.pop(self.payment_intent_id, None)
            if not self.won:
                wallet.early_losses[self.payment_intent_id] = EarlyLoss(self.dispute_id, self.cents)

    class LotFrozen(LedgerEvent):
        """A card dispute freezes the lot it paid for (rules §6); no hold is released."""

        TOPIC = "peerpush:Wallet.LotFrozen"
        dispute_id: str
        lot_id: UUID
        tokens: int

        def apply(self, wallet: WalletState) -> None:
            lot = wallet.lot(self.lot_id)
            lot.frozen = True
            wallet.available -= self.tokens
            wallet.frozen += self.tokens
            wallet.disputes[self.dispute_id] = str(self.lot_id)
            for pi, dispute in list(wallet.early_disputes.items()):
                if dispute == self.dispute_id:
                    del wallet.early_disputes[pi]

    class LotUnfrozen(LedgerEvent):
        """The dispute was won: the lot is usable again."""

        TOPIC = "peerpush:Wallet.LotUnfrozen"
        dispute_id: str
        lot_id: UUID
        tokens: int

        def apply(self, wallet: WalletState) -> None:
            wallet.lot(self.lot_id).frozen = False
            wallet.frozen -= self.tokens
            wallet.available += self.tokens
            wallet.disputes.pop(self.dispute_id, None)

    class LotWrittenOff(LedgerEvent):
        """Card money taken back (lost dispute, refund outside our flow).

        ``written_off`` (w) tokens are written off: ``taken`` leave the lot, and
        ``loss`` (w − taken) is booked as the platform's dispute loss. What stays in the
        lot is usable again (``released``) unless the lot is wholly written off.
        """

        TOPIC = "peerpush:Wallet.LotWrittenOff"
        reference: str
        reason: str
        lot_id: UUID
        cents: int
        written_off: int
        taken: int
        loss: int
        lot_closed: bool
        released: int
        from_frozen: bool
        stays_frozen: bool

        def apply(self, wallet: WalletState) -> None:
            lot = wallet.lot(self.lot_id)
            if self.from_frozen:
                wallet.frozen -= self.taken + self.released
            else:
                wallet.available -= self.taken
            wallet.available += self.released
            lot.remaining -= self.taken
            lot.loss += self.loss
            lot.frozen = self.stays_frozen
            lot.written_off = self.lot_closed
            wallet.written_off_total += self.written_off
            wallet.disputes.pop(self.reference, None)
            wallet.write_offs[self.reference] = WriteOffRecord(
                self.lot_id, self.written_off, self.reason
            )

    class WriteOffReversed(LedgerEvent):
        """A refund made outside our flow, written off, ended ``failed`` or ``canceled``:
        its ``written_off`` tokens come back (``returned``: refills first reduce the lot's
        booked loss) and the lot reopens unless another write-off still closes it."""

        TOPIC = "peerpush:Wallet.WriteOffReversed"
        reference: str
        lot_id: UUID
        written_off: int
        returned: Returned
        reopened: bool
        # The lot is still disputed: it is frozen again and its tokens come back frozen.
        refrozen: bool = False

        def apply(self, wallet: WalletState) -> None:
            if self.refrozen:
                wallet.lot(self.lot_id).frozen = True
            wallet._give_back(self.returned)
            wallet.written_off_total -= self.written_off
            if self.reopened:
                wallet.lot(self.lot_id).written_off = False
            wallet.write_offs.pop(self.reference, None)
            wallet.reversed_write_offs[self.reference] = self.written_off

    def open_dispute(
        self, payment_intent_id: str, dispute_id: str, cause: Cause, at: datetime
    ) -> None:
        """Freeze the disputed deposit's lot, or keep the dispute until it is credited."""
        if dispute_id in self.disputes:
            return
        lot_id = self.deposits.get(payment_intent_id)
        if lot_id is None:
            if payment_intent_id not in self.early_disputes:
                self._record(
                    self.DisputeRecorded,
                    cause,
                    at,
                    dispute_id=dispute_id,
                    payment_intent_id=payment_intent_id,
                )
            return
        self.freeze_lot(UUID(lot_id), dispute_id, cause, at)

    def freeze_lot(self, lot_id: UUID, dispute_id: str, cause: Cause, at: datetime) -> None:
        """Freeze the lot for this dispute.

        A lot already wholly written off (refunded outside our flow) has nothing left to
        freeze, but the dispute is recorded all the same (``tokens=0``): if it is lost, the
        card money goes a second time and its whole w must be booked as the platform's loss.
        """
        lot = self.lot(lot_id)
        if lot.frozen and not lot.written_off:
            return
        if lot.written_off:
            self._record(self.LotFrozen, cause, at, dispute_id=dispute_id, lot_id=lot_id, tokens=0)
            return
        self._record(
            self.LotFrozen, cause, at, dispute_id=dispute_id, lot_id=lot_id, tokens=lot.remaining
        )

    def win_dispute(self, dispute_id: str, cause: Cause, at: datetime) -> None:
        lot_id = self.disputes.get(dispute_id)
        if lot_id is None:
            self._close_early_dispute(dispute_id, True, 0, cause, at)
            return
        lot = self.lot(lot_id)
        self._record(
            self.LotUnfrozen,
            cause,
            at,
            dispute_id=dispute_id,
            lot_id=lot.lot_id,
            tokens=lot.remaining if lot.frozen else 0,
        )

    def lose_dispute(self, dispute_id: str, cents: int, cause: Cause, at: datetime) -> None:
        lot_id = self.disputes.get(dispute_id)
        if lot_id is None:
            self._close_early_dispute(dispute_id, False, cents, cause, at)
            return
        self.write_off(UUID(lot_id), dispute_id, WriteOffReason.DISPUTE_LOST, cents, cause, at)

    def _close_early_dispute(
        self, dispute_id: str, won: bool, cents: int, cause: Cause, at: datetime
    ) -> None:
        """A dispute closed before its deposit arrived: remember the verdict for the credit."""
        for payment_intent_id, early in self.early_disputes.items():
            if early == dispute_id:
                if not won:
                    positive_tokens(cents, what="cents")
                self._record(
                    self.EarlyDisputeClosed,
                    cause,
                    at,
                    dispute_id=dispute_id,
                    payment_intent_id=payment_intent_id,
                    won=won,
                    cents=cents,
                )
                return

    def write_off(
        self,
        lot_id: UUID,
        reference: str,
        reason: str,
        cents: int,
        cause: Cause,
        at: datetime,
    ) -> int:
        """Take back card money: w = cents ÷ the lot's price, at most its amount (rules §6)."""
        positive_tokens(cents, what="cents")
        lot = self.lot(lot_id)
        w = min(cents // lot.token_price, lot.amount)
        taken = min(w, lot.remaining)
        # A lot wholly written off stays so: a later, smaller write-off must not reopen it.
        closed = lot.written_off or w == lot.amount
        # A frozen lot's tokens beyond w become usable again, unless another open dispute
        # still holds the lot; an unfrozen lot's already are.
        stays_frozen = lot.frozen and any(
            held == str(lot_id) and dispute != reference for dispute, held in self.disputes.items()
        )
        released = lot.remaining - taken if lot.frozen and not closed and not stays_frozen else 0
        self._record(
            self.LotWrittenOff,
            cause,
            at,
            reference=reference,
            reason=str(reason),
            lot_id=lot_id,
            cents=cents,
            written_off=w,
            taken=taken,
            loss=w - taken,
            lot_closed=closed,
            released=released,
            from_frozen=lot.frozen,
            stays_frozen=stays_frozen and not closed,
        )
        return w

    def reverse_write_off(self, reference: str, cause: Cause, at: datetime) -> bool:
        """An external refund that was written off ended failed or canceled: give its
        tokens back. Unknown or already reversed references change nothing."""
        found = self.write_offs.get(reference)
        if found is None or found.reason != WriteOffReason.EXTERNAL_REFUND:
            return False
        lot = self.lot(found.lot_id)
        still_closed = any(
            other.lot_id == found.lot_id and other.written_off == lot.amount
            for ref, other in self.write_offs.items()
            if ref != reference
        )
        # A dispute still open on the lot keeps whatever comes back to it frozen (rules §1).
        refrozen = not lot.frozen and str(lot.lot_id) in self.disputes.values()
        returned = returning(self.lots, [(lot.lot_id, found.written_off)])
        if refrozen:
            returned = tuple(
                (lot_id, refilled, recovered, True) for lot_id, refilled, recovered, _ in returned
            )
        self._record(
            self.WriteOffReversed,
            cause,
            at,
            reference=reference,
            lot_id=lot.lot_id,
            written_off=found.written_off,
            returned=returned,
            reopened=lot.written_off and not still_closed,
            refrozen=refrozen,
        )
        return True
