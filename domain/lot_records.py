"""Dropping the records of long-consumed lots from a wallet's state (rules §1).

A wallet keeps every lot it ever had as a record tokens can return to; without an end, a
command on an old wallet would cost more with every deposit. A record is dropped once
nothing can bring tokens back to it: its lot is empty, carries no booked dispute loss, no
hold (stake, penalty, withdrawal in flight), cash-out that could still be reversed, open
dispute or reversible write-off names it,
and it is older than both its refund window and ``DISPUTE_WINDOW_DAYS``. The decision is an
event (``Wallet.LotRecordsDropped``) so replay gives the same state whatever the setting is
later; the read models keep every lot row. A mixin of ``Wallet``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from domain.aggregate import Cause, LedgerEvent
from domain.tokens import Lot
from domain.values import CashoutStatus
from domain.wallet_state import WalletState, WriteOffReason


class LotRecords(WalletState):
    """Which lot records the wallet may forget, and forgetting them."""

    class LotRecordsDropped(LedgerEvent):
        """Records of empty, long-settled lots left the wallet's state (rules §1).

        Nothing can return tokens to them any more; their history stays in the stream and
        their rows in the read models.
        """

        TOPIC = "peerpush:Wallet.LotRecordsDropped"
        lot_ids: tuple[UUID, ...]

        def apply(self, wallet: WalletState) -> None:
            for lot_id in self.lot_ids:
                del wallet.lots[str(lot_id)]
            wallet.lots_dropped += len(self.lot_ids)

    def droppable_lots(self, dispute_window: timedelta, at: datetime) -> tuple[UUID, ...]:
        """The lot records nothing can return tokens to any more, oldest first."""
        done = [lot for lot in self.lots.values() if _long_done(lot, dispute_window, at)]
        if not done:  # the usual case: what names lots is not worth gathering
            return ()
        named = self._lots_named()
        return tuple(lot.lot_id for lot in done if str(lot.lot_id) not in named)

    def drop_old_lot_records(
        self, dispute_window: timedelta, cause: Cause, at: datetime
    ) -> tuple[UUID, ...]:
        """Forget the records :meth:`droppable_lots` names; none, no event."""
        dropped = self.droppable_lots(dispute_window, at)
        if dropped:
            self._record(self.LotRecordsDropped, cause, at, lot_ids=dropped)
        return dropped

    def _lots_named(self) -> set[str]:
        """Lots something could still return tokens to (or a dispute still refer to)."""
        named = {str(part.lot_id) for parts in self.stakes.values() for part in parts}
        named |= {str(part.lot_id) for parts in self.penalties.values() for part in parts}
        for hold in self.withdrawals.values():
            if not hold.settled:
                named |= hold.lots.keys()
        named |= set(self.disputes.values())
        # A cash-out's transfer can be reversed (tokens back to its lots) whenever Stripe says
        # so, even long after it settled: its lots are kept unless it failed or came back whole.
        for cashout in getattr(self, "cashouts", {}).values():
            if cashout.status != CashoutStatus.FAILED and cashout.reversed < cashout.tokens:
                named |= {str(lot) for lot, _ in cashout.lots}
        named |= {
            str(record.lot_id)
            for record in self.write_offs.values()
            if record.reason == WriteOffReason.EXTERNAL_REFUND
        }
        return named


def _long_done(lot: Lot, dispute_window: timedelta, at: datetime) -> bool:
    kept_until = lot.created_at + dispute_window
    if lot.refundable_until is not None:
        kept_until = max(kept_until, lot.refundable_until)
    return lot.remaining == 0 and lot.loss == 0 and not lot.frozen and at >= kept_until
