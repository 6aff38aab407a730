"""Cash-outs: winnings paid to the user's Stripe Connect account (rules §2, §6).

A mixin the :class:`~domain.wallet.Wallet` inherits, so the wallet stays one aggregate (one
stream, one version) while its cash-out rules live in their own module. Like a withdrawal it
has two phases: ``CashoutRequested`` holds tokens (FIFO, ``payout`` and ``adjustment`` lots
only, each at least ``CASHOUT_HOLD_DAYS`` old, so a chargeback on the deposits behind a pool
lands before its winnings leave), then the cash-out worker makes one Stripe Transfer and
records ``CashoutSettled`` or ``CashoutFailed`` (the tokens back to their lots). A reversed
transfer, whole or partial, returns the reversed tokens to their lots in the order they were
taken (``CashoutReversed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.aggregate import Cause, LedgerEvent
from domain.errors import (
    BelowMinimumCashout,
    NotCashoutable,
    OutcomeAlreadyRecorded,
    UnknownCashout,
)
from domain.tokens import Lot, Returned, Taken, positive_tokens, returning, take_fifo
from domain.values import CashoutStatus

if TYPE_CHECKING:
    from domain.aggregate import LedgerAggregate as _Base
else:
    _Base = object

CASHOUT_SOURCES = ("payout", "adjustment")
"""Lots a cash-out may take: card money (``deposit``) only ever goes back to the card."""

DAY = timedelta(hours=24)

PENDING, SETTLED, FAILED = tuple(CashoutStatus)


@dataclass(frozen=True)
class CashoutLimits:
    """The bold numbers of rules §2 that bound a cash-out."""

    minimum: int = 1_000
    per_day: int = 50_000
    hold: timedelta = timedelta(days=7)


@dataclass(slots=True)
class CashoutHold:
    """Tokens on their way to the user's connected account, and what became of them."""

    cashout_id: UUID
    tokens: int
    lots: list[list[Any]]  # [lot id, tokens] in the order they were taken
    token_price: int
    requested_at: datetime
    status: CashoutStatus = PENDING
    transfer_id: str = ""
    reason: str = ""
    reversed: int = 0
    reversals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = CashoutStatus(self.status)  # a snapshot holds the plain string

    @property
    def cents(self) -> int:
        return self.tokens * self.token_price


def _slice(taken: Iterable[Sequence[Any]], start: int, tokens: int) -> Taken:
    """The part of a hold from its ``start``-th token, ``tokens`` long, in taking order: a
    second partial reversal refills the lots after those the first one refilled."""
    out: list[tuple[UUID, int]] = []
    skip, left = start, tokens
    for lot_id, amount in taken:
        n = int(amount)
        skipped = min(skip, n)
        skip -= skipped
        part = min(n - skipped, left)
        if part > 0:
            out.append((UUID(str(lot_id)), part))
            left -= part
        if left == 0:
            break
    return tuple(out)


class Cashouts(_Base):
    """The wallet's cash-out commands and events (mixed into ``Wallet``)."""

    # State the wallet owns (set in ``Wallet.__init__``); declared for the type checker.
    lots: dict[str, Lot]
    available: int
    cashout_pending: int
    cashed_out: int
    cashouts: dict[str, CashoutHold]

    if TYPE_CHECKING:

        def _take(self, taken: Taken) -> None: ...
        def _give_back(self, returned: Returned) -> None: ...
        def _refuse_if_closed(self) -> None: ...

    class CashoutRequested(LedgerEvent):
        """Phase one of a cash-out: the chosen lots' tokens are held, to be paid at
        ``token_price`` cents each (the price in force when it was asked for)."""

        TOPIC = "peerpush:Wallet.CashoutRequested"
        cashout_id: UUID
        tokens: int
        taken: Taken
        token_price: int
        cents: int

        def apply(self, wallet: Cashouts) -> None:
            wallet._take(self.taken)
            wallet.cashouts[str(self.cashout_id)] = CashoutHold(
                cashout_id=self.cashout_id,
                tokens=self.tokens,
                lots=[[str(lot), n] for lot, n in self.taken],
                token_price=self.token_price,
                requested_at=self.timestamp,
            )
            wallet.cashout_pending += self.tokens

    class CashoutSettled(LedgerEvent):
        """Stripe made the transfer: the tokens left the ledger for the connected account."""

        TOPIC = "peerpush:Wallet.CashoutSettled"
        cashout_id: UUID
        tokens: int
        transfer_id: str

        def apply(self, wallet: Cashouts) -> None:
            hold = wallet.cashouts[str(self.cashout_id)]
            hold.status = SETTLED
            hold.transfer_id = self.transfer_id
            wallet.cashout_pending -= self.tokens
            wallet.cashed_out += self.tokens

    class CashoutFailed(LedgerEvent):
        """The transfer was not made: the held tokens went back to their lots."""

        TOPIC = "peerpush:Wallet.CashoutFailed"
        cashout_id: UUID
        tokens: int
        reason: str
        returned: Returned

        def apply(self, wallet: Cashouts) -> None:
            hold = wallet.cashouts[str(self.cashout_id)]
            hold.status = FAILED
            hold.reason = self.reason
            wallet.cashout_pending -= self.tokens
            wallet._give_back(self.returned)

    class CashoutReversed(LedgerEvent):
        """Stripe reversed (part of) the transfer: the reversed tokens are back in their
        lots, refilling them in the order they were taken."""

        TOPIC = "peerpush:Wallet.CashoutReversed"
        cashout_id: UUID
        reversal_id: str
        tokens: int
        returned: Returned

        def apply(self, wallet: Cashouts) -> None:
            hold = wallet.cashouts[str(self.cashout_id)]
            hold.reversed += self.tokens
            hold.reversals[self.reversal_id] = self.tokens
            wallet.cashed_out -= self.tokens
            wallet._give_back(self.returned)

    # -- queries -----------------------------------------------------------------------

    def cashout_lots(self, now: datetime, hold: timedelta) -> list[Lot]:
        """The usable payout and adjustment lots old enough to leave, oldest first."""
        return [
            lot
            for lot in self.lots.values()
            if lot.source in CASHOUT_SOURCES
            and lot.usable
            and lot.remaining > 0
            and lot.created_at <= now - hold
        ]

    def cashoutable(self, now: datetime, hold: timedelta) -> int:
        return sum(lot.remaining for lot in self.cashout_lots(now, hold))

    def cashed_out_last_day(self, now: datetime) -> int:
        """Tokens of cash-outs asked for in the last 24 h that were not refused."""
        return sum(
            h.tokens
            for h in self.cashouts.values()
            if h.status != FAILED and now - DAY < h.requested_at <= now
        )

    def cashout(self, cashout_id: UUID) -> CashoutHold:
        hold = self.cashouts.get(str(cashout_id))
        if hold is None:
            raise UnknownCashout(f"no cash-out {cashout_id}")
        return hold

    # -- commands ----------------------------------------------------------------------

    def request_cashout(
        self,
        cashout_id: UUID,
        tokens: int,
        token_price: int,
        limits: CashoutLimits,
        cause: Cause,
        at: datetime,
    ) -> CashoutHold:
        """Hold payout and adjustment lots past their hold, oldest first, for one transfer.

        Asking again with the same id returns the first hold (the Idempotency-Key's id).
        """
        positive_tokens(tokens)
        existing = self.cashouts.get(str(cashout_id))
        if existing is not None:
            return existing
        self._refuse_if_closed()
        if tokens < limits.minimum:
            raise BelowMinimumCashout(f"a cash-out is at least {limits.minimum} tokens")
        allowance = max(0, limits.per_day - self.cashed_out_last_day(at))
        if tokens > allowance:
            raise NotCashoutable(tokens, allowance, "daily_cap")
        lots = self.cashout_lots(at, limits.hold)
        eligible = sum(lot.remaining for lot in lots)
        if tokens > eligible:
            raise NotCashoutable(tokens, min(eligible, allowance), "cashoutable_lots")
        taken = take_fifo(lots, tokens, available=eligible)
        self._record(
            self.CashoutRequested,
            cause,
            at,
            cashout_id=cashout_id,
            tokens=tokens,
            taken=taken,
            token_price=token_price,
            cents=tokens * token_price,
        )
        return self.cashouts[str(cashout_id)]

    def settle_cashout(
        self, cashout_id: UUID, transfer_id: str, cause: Cause, at: datetime
    ) -> None:
        """Record that Stripe made the cash-out's transfer (its one outcome)."""
        hold = self._pending_cashout(cashout_id)
        self._record(
            self.CashoutSettled,
            cause,
            at,
            cashout_id=cashout_id,
            tokens=hold.tokens,
            transfer_id=transfer_id,
        )

    def fail_cashout(self, cashout_id: UUID, reason: str, cause: Cause, at: datetime) -> None:
        """Record that the transfer was not made: the tokens go back to their lots."""
        hold = self._pending_cashout(cashout_id)
        self._record(
            self.CashoutFailed,
            cause,
            at,
            cashout_id=cashout_id,
            tokens=hold.tokens,
            reason=reason[:200] or "refused",
            returned=returning(self.lots, hold.lots),
        )

    def reverse_cashout(
        self, cashout_id: UUID, reversal_id: str, tokens: int, cause: Cause, at: datetime
    ) -> int:
        """Give back the tokens of a reversal (capped at what is still cashed out); a
        reversal already recorded, or one of a transfer never settled, changes nothing."""
        hold = self.cashout(cashout_id)
        if hold.status != SETTLED or reversal_id in hold.reversals:
            return 0
        back = min(tokens, hold.tokens - hold.reversed)
        if back <= 0:
            return 0
        self._record(
            self.CashoutReversed,
            cause,
            at,
            cashout_id=cashout_id,
            reversal_id=reversal_id,
            tokens=back,
            returned=returning(self.lots, _slice(hold.lots, hold.reversed, back)),
        )
        return back

    def _pending_cashout(self, cashout_id: UUID) -> CashoutHold:
        hold = self.cashout(cashout_id)
        if hold.status != PENDING:
            raise OutcomeAlreadyRecorded(f"cash-out {cashout_id} already {hold.status}")
        return hold
