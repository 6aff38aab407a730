"""Tokens and the lots that hold them (rules §1).

A lot remembers where its tokens came from, so a refund can go back to the card that paid
and a returned stake can go back to the very lots it was taken from. Debits consume lots in
the order they were created in the wallet (FIFO) and record the ``(lot_id, tokens)`` pairs
they took, which is what lets the lots be rebuilt exactly from the stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import repeat
from typing import Any
from uuid import UUID, SafeUUID

from domain.errors import InsufficientFunds, InvalidAmount

MAX_TOKENS = 2**53
"""Largest amount a command may carry: beyond it a JSON number stops being exact."""


class LotSource(StrEnum):
    """Where a lot's tokens came from (rules §1)."""

    DEPOSIT = "deposit"
    PAYOUT = "payout"
    ADJUSTMENT = "adjustment"


Taken = tuple[tuple[UUID, int], ...]
"""``(lot_id, tokens)`` pairs consumed by one debit, in consumption order."""

Returned = tuple[tuple[UUID, int, int, bool], ...]
"""``(lot_id, refilled, loss_recovered, frozen)`` records of tokens coming back to their lots.

Tokens returning to a lot with a booked dispute loss first reduce that loss (they go to the
platform), and only then refill it; tokens refilling a frozen lot arrive frozen. The command
decides the split and records it, so a reader of the stream needs no lot state to place them."""


def positive_tokens(value: object, *, what: str = "tokens") -> int:
    """Validate a money amount: a positive ``int`` no larger than 2^53 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} must be a whole number of tokens")
    if value <= 0:
        raise InvalidAmount(f"{what} must be positive")
    if value > MAX_TOKENS:
        raise InvalidAmount(f"{what} must be at most 2^53")
    return value


def non_negative_tokens(value: object, *, what: str, limit: int) -> int:
    """Validate an amount that may be zero (a free stake, no penalty)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} must be a whole number of tokens")
    if value < 0 or value > limit:
        raise InvalidAmount(f"{what} must be between 0 and {limit}")
    return value


@dataclass(slots=True)
class Lot:
    """Tokens credited to a wallet in one go, and what became of them.

    ``loss`` is the part of a dispute write-off that could not be taken from the lot
    because its tokens had already gone elsewhere; it is the platform's loss until tokens
    come back to the lot.
    """

    lot_id: UUID
    seq: int
    source: LotSource
    amount: int
    remaining: int
    created_at: datetime
    refundable_until: datetime | None = None
    payment_intent_id: str | None = None
    cents_paid: int = 0
    token_price: int = 1
    frozen: bool = False
    written_off: bool = False
    loss: int = 0

    def __post_init__(self) -> None:
        # A snapshot stores the source as its string; the record holds the enum.
        if type(self.source) is not LotSource:
            self.source = LotSource(self.source)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as one flat row: every command copies its wallet (a pickle round trip,
        ``adapters.aggregate_cache.SerialisedRepository``), with the hundreds of records a busy
        wallet keeps for the dispute window, and a UUID pickled the default way costs more
        than the rest of its record."""
        return (
            _restore_lot,
            (
                self.lot_id.int,
                self.seq,
                _SOURCE_NAMES[self.source],
                self.amount,
                self.remaining,
                self.created_at,
                self.refundable_until,
                self.payment_intent_id,
                self.cents_paid,
                self.token_price,
                self.frozen,
                self.written_off,
                self.loss,
            ),
        )

    @property
    def usable(self) -> bool:
        return not self.frozen and not self.written_off

    def refundable_at(self, now: datetime) -> bool:
        return (
            self.source is LotSource.DEPOSIT
            and self.usable
            and self.refundable_until is not None
            and now < self.refundable_until
        )


_SOURCES = {source.value: source for source in LotSource}
_SOURCE_NAMES = {source: source.value for source in LotSource}
_UNSAFE = SafeUUID.unknown


def uuid_from_int(value: int) -> UUID:
    """A UUID built the way unpickling one does (no parsing, no checks): for records of our
    own writing rebuilt by the hundred."""
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", value)
    object.__setattr__(uuid, "is_safe", _UNSAFE)
    return uuid


def uuids_from_ints(values: Sequence[int]) -> list[UUID]:
    """UUIDs built as :func:`uuid_from_int` builds one, in the interpreter's own loops (no
    Python call per id): the hundreds of lot ids of a wallet's snapshot."""
    uuids = list(map(object.__new__, repeat(UUID, len(values))))
    deque(map(object.__setattr__, uuids, repeat("int"), values), maxlen=0)
    deque(map(object.__setattr__, uuids, repeat("is_safe"), repeat(_UNSAFE)), maxlen=0)
    return uuids


def _restore_lot(lot_id: int, seq: int, source: str, *rest: Any) -> Lot:
    """A lot record from its pickled row (:meth:`Lot.__reduce__`): its id rebuilt without
    parsing, its source looked up."""
    return Lot(uuid_from_int(lot_id), seq, _SOURCES[source], *rest)


def take_fifo(lots: Iterable[Lot], tokens: int, *, available: int) -> Taken:
    """Choose what a debit of ``tokens`` consumes: usable lots, oldest first."""
    if tokens > available:
        raise InsufficientFunds(tokens, available)
    taken: list[tuple[UUID, int]] = []
    left = tokens
    for lot in lots:
        if left == 0:
            break
        # Most records of a busy wallet are empty: the cheaper test first.
        if lot.remaining > 0 and lot.usable:
            part = min(lot.remaining, left)
            taken.append((lot.lot_id, part))
            left -= part
    if left:
        raise InsufficientFunds(tokens, tokens - left)
    return tuple(taken)


def take_capped(lots: Iterable[Lot], tokens: int, *, available: int) -> Taken:
    """Like :func:`take_fifo` but takes only what is available (penalties are capped)."""
    capped = min(tokens, available)
    return take_fifo(lots, capped, available=available) if capped > 0 else ()


def total(records: Iterable[Sequence[Any]]) -> int:
    """Tokens moved by ``(lot_id, tokens, ...)`` records."""
    return sum(int(r[1]) for r in records)


def part_of(taken: Iterable[Sequence[Any]], tokens: int) -> Taken:
    """The first ``tokens`` of what a debit took, in the order it took them.

    When only part of a hold comes back (a finisher's share smaller than its stake), it
    refills the lots in the order they were consumed.
    """
    out: list[tuple[UUID, int]] = []
    left = tokens
    for lot_id, amount in taken:
        if left == 0:
            break
        part = min(int(amount), left)
        out.append((UUID(str(lot_id)), part))
        left -= part
    return tuple(out)


def returning(lots: dict[str, Lot], pairs: Iterable[Sequence[Any]]) -> Returned:
    """Split tokens coming back to their lots into refills and recovered dispute loss."""
    loss_left: dict[str, int] = {}
    out: list[tuple[UUID, int, int, bool]] = []
    for lot_id, amount in pairs:
        lot = lots[str(lot_id)]
        loss = loss_left.get(str(lot_id), lot.loss)
        recovered = min(int(amount), loss)
        loss_left[str(lot_id)] = loss - recovered
        out.append((lot.lot_id, int(amount) - recovered, recovered, lot.frozen))
    return tuple(out)
