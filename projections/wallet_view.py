"""The caller's wallet as the API shows it (rules §2, §8): now, from the read models, or as
of a moment, replayed from the stream.

"As of" names a stream position, or an ISO 8601 time (UTC when it has no offset): the stream up
to the last position whose event time is at most that time, read from the position index. An
index behind the stream's head cannot answer (an event it has not seen may be earlier than the
time): the query waits for it like a ``min_position`` read does, then gives up with
`ReadModelBehind`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from application.ledger import Ledger
from domain.balances import SHOWN
from domain.errors import InvalidField, NotFound
from domain.tokens import Lot, LotSource
from domain.values import WithdrawalStatus
from projections.point_in_time import WalletAsOf, wallet_as_of
from projections.position_times import IndexBehind
from projections.queries import ReadModelBehind, ReadModels, SqlClock

ZERO: dict[str, int] = dict.fromkeys(SHOWN, 0)


class InvalidAsOf(InvalidField):
    code = "invalid_as_of"


@dataclass
class WalletView:
    """Balances and lots of one user's wallet, now or as of a moment."""

    reads: ReadModels
    ledger: Ledger
    wait_for: Callable[[int, float], bool]  # the projector's read-your-writes wait
    wait_seconds: float

    def balances(self, user_id: UUID) -> dict[str, Any]:
        """The wallet's balances now, with what may be refunded and cashed out now, and the
        read models' ``position``: one statement (``ReadModels.wallet_now``), which reads the
        development test clock itself (`SqlClock`) instead of a query of its own first."""
        settings, clock = self.ledger.settings, self.ledger.clock
        row, refundable, cashoutable, position = self.reads.wallet_now(
            user_id,
            clock.now_sql() if isinstance(clock, SqlClock) else clock.now(),
            settings.cashout_hold_days,
            settings.max_cashout_tokens_day,
        )
        return {
            **{k: row[k] if row else 0 for k in ZERO},  # no wallet yet: nothing anywhere
            "refundable": refundable,
            "cashoutable": cashoutable,
            "position": position,
        }

    def balances_as_of(self, user_id: UUID, as_of: str) -> dict[str, Any]:
        """The balances over the stream up to ``as_of``, and that ``position``."""
        position, then = self._then(user_id, as_of)
        return {**(then.balances if then else ZERO), "position": position}

    def lots_as_of(self, user_id: UUID, as_of: str) -> list[dict[str, Any]]:
        """The lots as the ``wallet_lots`` read model showed them then."""
        _, then = self._then(user_id, as_of)
        return [lot_row(lot) for lot in then.lots] if then else []

    def withdrawal(self, user_id: UUID, withdrawal_id: UUID) -> dict[str, Any] | None:
        """One of the user's withdrawals and what became of each lot (None: no such
        withdrawal of theirs). The status comes from the wallet, which may be ahead of the
        read models: the head read after loading it covers every event it reflects, so
        ``min_position`` with the position answered reads balances that include it."""
        rows = self.reads.withdrawal(user_id, withdrawal_id)
        held = self.ledger.wallet_of(user_id).withdrawals.get(str(withdrawal_id)) if rows else None
        if held is None:
            return None
        return {
            "withdrawal_id": withdrawal_id,
            "status": WithdrawalStatus.SETTLED if held.settled else WithdrawalStatus.PENDING,
            "tokens": sum(held.lots.values()),
            "lots": [
                {"lot_id": lot, "tokens": n, "status": held.outcome(lot)}
                for lot, n in held.lots.items()
            ],
            "position": max(rows[-1]["position"], self.ledger.head()),
        }

    def _then(self, user_id: UUID, as_of: str) -> tuple[int, WalletAsOf | None]:
        """The wallet over the stream up to the position ``as_of`` names (None: it did not
        exist then), and that position."""
        try:
            if as_of.isdigit():
                position = int(as_of)
            else:
                at = datetime.fromisoformat(as_of)
                position = self.position_at(at if at.tzinfo else at.replace(tzinfo=UTC))
        except ValueError:
            raise InvalidAsOf("as_of is an ISO 8601 time or a position") from None
        try:
            return position, wallet_as_of(self.ledger, user_id, position=position)
        except NotFound:
            return position, None

    def position_at(self, at: datetime) -> int:
        """The last position whose event time is at most ``at``, through the position index,
        waiting (bounded) for an index behind the stream's head."""
        try:
            return self.reads.position_at(at)
        except IndexBehind as behind:
            head = behind.head
        if self.wait_for(head, self.wait_seconds):
            try:
                return self.reads.position_at(at, covering=head)
            except IndexBehind:
                pass
        raise ReadModelBehind(
            "the position index has not caught up with the stream yet", self.reads.position()
        )


def lot_row(lot: Lot) -> dict[str, Any]:
    """A replayed lot as the ``wallet_lots`` read model shows it (prices on deposits only)."""
    return {
        "lot_id": lot.lot_id,
        "seq": lot.seq,
        "source": lot.source,
        "amount": lot.amount,
        "remaining": lot.remaining,
        "created_at": lot.created_at,
        "refundable_until": lot.refundable_until,
        "payment_intent_id": lot.payment_intent_id,
        "token_price": lot.token_price if lot.source == LotSource.DEPOSIT else None,
        "frozen": lot.frozen,
        "written_off": lot.written_off,
    }
