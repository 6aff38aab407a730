"""A wallet whose owner was erased (rules §7): closed, and its leftovers unclaimed.

A mixin of ``Wallet``; the closed wallet's one refund per lot is a withdrawal
(``domain.withdrawals``).
"""

from __future__ import annotations

from datetime import datetime

from domain.aggregate import Cause, LedgerEvent
from domain.tokens import Taken, total
from domain.withdrawals import Withdrawals


class Closing(Withdrawals):
    """Closing a wallet, and moving what no refund returns to the platform's ``unclaimed``."""

    class Closed(LedgerEvent):
        """The owner was erased (rules §7): the tokens here are no longer anyone's to spend.

        Carries no personal data, only who closed it (``actor``) and when (``timestamp``).
        Tokens that reach the wallet later are refunded to the card once or moved to the
        platform's ``unclaimed`` account.
        """

        TOPIC = "peerpush:Wallet.Closed"

        def apply(self, wallet: Withdrawals) -> None:
            wallet.closed = True

    class TokensUnclaimed(LedgerEvent):
        """Tokens of a closed wallet that no refund returns moved to the platform's
        ``unclaimed`` account: ``moved`` says which lots they left. Never revenue."""

        TOPIC = "peerpush:Wallet.TokensUnclaimed"
        tokens: int
        moved: Taken

        def apply(self, wallet: Withdrawals) -> None:
            wallet._take(self.moved)
            wallet.unclaimed += self.tokens

    def close(self, cause: Cause, at: datetime) -> None:
        """Close the wallet of an erased user; closing twice changes nothing."""
        if not self.closed:
            self._record(self.Closed, cause, at)

    def move_unclaimed(self, cause: Cause, at: datetime) -> Taken:
        """Move a closed wallet's usable tokens that no refund will return to ``unclaimed``.

        Lots still waiting for their one refund to the card stay; frozen lots wait for their
        dispute's outcome.
        """
        if not self.closed:
            return ()
        waiting = {str(lot) for lot, _ in self.erasure_refundable(at)}
        moved = tuple(
            (lot.lot_id, lot.remaining)
            for lot in self.lots.values()
            if lot.usable and lot.remaining > 0 and str(lot.lot_id) not in waiting
        )
        if moved:
            self._record(self.TokensUnclaimed, cause, at, tokens=total(moved), moved=moved)
        return moved
