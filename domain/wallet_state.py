"""What a wallet remembers, as typed records, and the state changes its events share.

The wallet's events live in modules by concept (``domain.stakes``, ``domain.withdrawals``,
``domain.disputes``, ``domain.closing``), each a mixin of the ``Wallet`` aggregate; they all
read and assign the state declared here. Snapshots store these records through the
registered transcodings (``application/transcodings.py``), so each is a plain dataclass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.errors import UnknownLot, WalletClosed
from domain.tokens import Lot, Returned, Taken

if TYPE_CHECKING:
    from domain.aggregate import Cause, LedgerEvent


class LotOutcome(StrEnum):
    """What became of one lot of a withdrawal (rules §2, two phases)."""

    PENDING = "pending"
    REFUNDED = "refunded"
    REFUSED = "refused"
    FAILED = "failed"


class WriteOffReason(StrEnum):
    """Why card money was taken back from a lot (``Wallet.LotWrittenOff.reason``)."""

    DISPUTE_LOST = "dispute_lost"
    EXTERNAL_REFUND = "external_refund"


@dataclass(frozen=True, slots=True)
class LotPart:
    """Tokens a hold took from one lot: where they go back to."""

    lot_id: UUID
    tokens: int


def lot_parts(pairs: Taken) -> list[LotPart]:
    return [LotPart(UUID(str(lot)), int(n)) for lot, n in pairs]


def as_taken(parts: Iterable[LotPart]) -> Taken:
    return tuple((part.lot_id, part.tokens) for part in parts)


def held(parts: Iterable[LotPart]) -> int:
    """Tokens a hold took, all lots together."""
    return sum(part.tokens for part in parts)


@dataclass(frozen=True, slots=True)
class EarlyLoss:
    """A dispute lost before its deposit was credited: written off at the credit."""

    dispute_id: str
    cents: int


@dataclass(frozen=True, slots=True)
class WriteOffRecord:
    """A write-off by reference, kept so an external refund's can be reversed once."""

    lot_id: UUID
    written_off: int
    reason: str


@dataclass(slots=True)
class WithdrawalHold:
    """Tokens on their way back to the card, lot by lot (rules §2, two phases)."""

    withdrawal_id: UUID
    lots: dict[str, int]
    outcomes: dict[str, str] = field(default_factory=dict)
    refund_ids: dict[str, str] = field(default_factory=dict)
    settled: bool = False

    def outcome(self, lot_id: UUID | str) -> LotOutcome:
        return LotOutcome(self.outcomes.get(str(lot_id), LotOutcome.PENDING))

    def pending(self) -> int:
        """Tokens of this withdrawal still waiting for their lot's first outcome."""
        return sum(n for lot, n in self.lots.items() if self.outcome(lot) is LotOutcome.PENDING)


class WalletState:
    """The state every part of the wallet reads; assigned only by events' apply steps."""

    user_id: UUID
    lots: dict[str, Lot]
    next_lot_seq: int
    lots_dropped: int
    deposits: dict[str, str]
    stakes: dict[str, list[LotPart]]
    penalties: dict[str, list[LotPart]]
    withdrawals: dict[str, WithdrawalHold]
    disputes: dict[str, str]
    early_disputes: dict[str, str]
    early_losses: dict[str, EarlyLoss]
    adjustments: dict[str, int]
    available: int
    frozen: int
    staked: int
    withdrawal_pending: int
    cashout_pending: int
    deposited: int
    refunded: int
    cashed_out: int
    won: int
    forfeited: int
    penalised: int
    written_off_total: int
    adjusted_in: int
    adjusted_out: int
    closed: bool
    unclaimed: int
    erasure_tried: dict[str, bool]  # lots held for their one refund since closing
    write_offs: dict[str, WriteOffRecord]
    reversed_write_offs: dict[str, int]  # reference → w given back

    if TYPE_CHECKING:

        def _record(
            self, event_class: type[LedgerEvent], cause: Cause, at: datetime, **fields: Any
        ) -> None: ...

    def _init_state(self, user_id: UUID) -> None:
        self.user_id = user_id
        self.lots = {}
        self.next_lot_seq = 0
        self.lots_dropped = 0
        self.deposits = {}
        self.stakes = {}
        self.penalties = {}
        self.withdrawals = {}
        self.disputes = {}
        self.early_disputes = {}
        self.early_losses = {}
        self.adjustments = {}
        self.available = 0
        self.frozen = 0
        self.staked = 0
        self.withdrawal_pending = 0
        self.cashout_pending = 0
        self.deposited = 0
        self.refunded = 0
        self.cashed_out = 0
        self.won = 0
        self.forfeited = 0
        self.penalised = 0
        self.written_off_total = 0
        self.adjusted_in = 0
        self.adjusted_out = 0
        self.closed = False
        self.unclaimed = 0
        self.erasure_tried = {}
        self.write_offs = {}
        self.reversed_write_offs = {}

    def lot(self, lot_id: UUID | str) -> Lot:
        try:
            return self.lots[str(lot_id)]
        except KeyError:
            raise UnknownLot(f"no lot {lot_id} in this wallet") from None

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise WalletClosed("this wallet's owner was erased: its tokens cannot be moved")

    # -- state changes shared by several events -----------------------------------------

    def _add_lot(self, lot: Lot) -> None:
        self.lots[str(lot.lot_id)] = lot
        self.next_lot_seq = lot.seq + 1
        self.available += lot.remaining

    def _take(self, taken: Taken) -> None:
        for lot_id, tokens in taken:
            self.lots[str(lot_id)].remaining -= tokens
            self.available -= tokens

    def _give_back(self, returned: Returned) -> None:
        for lot_id, refilled, recovered, frozen in returned:
            lot = self.lots[str(lot_id)]
            lot.loss -= recovered
            lot.remaining += refilled
            if frozen:
                self.frozen += refilled
            else:
                self.available += refilled
