"""How a wallet's snapshot holds its lot records: as columns, one list per field.

A busy wallet keeps hundreds of lot records for the dispute window (rules §1: the payout lots
of 180 days of wins), against one for a new wallet, and a new process reads the wallet's last
snapshot before its first command on it. Held as one record each, the snapshot was mostly
the same field names and nested objects repeated hundreds of times, and loading it built an
object per value; as columns each field is written once, and the records are rebuilt in one
pass. The wallet itself still holds ``Lot`` records by id: only the snapshot's form changes,
so a snapshot loads to the same wallet its events replay to, and older snapshots (a dict of
records) load as they always did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from itertools import repeat
from operator import methodcaller
from typing import Any
from uuid import UUID

from eventsourcing.domain import BaseAggregate, Snapshot

from domain.tokens import Lot, LotSource, uuids_from_ints

_SOURCES = {source.value: source for source in LotSource}


@dataclass(frozen=True, slots=True)
class LotColumns:
    """A wallet's lot records, in the wallet's order (oldest first), field by field: the
    record at index ``i`` is ``ids[i]``, ``seq[i]``, … Values are the records' own, the
    source as its name."""

    ids: list[str]  # str(lot_id), the key the wallet holds the record under
    seq: list[int]
    source: list[str]
    amount: list[int]
    remaining: list[int]
    created_at: list[datetime]
    refundable_until: list[datetime | None]
    payment_intent_id: list[str | None]
    cents_paid: list[int]
    token_price: list[int]
    frozen: list[bool]
    written_off: list[bool]
    loss: list[int]

    @classmethod
    def of(cls, lots: Iterable[Lot]) -> LotColumns:
        rows = [
            (
                str(lot.lot_id),
                lot.seq,
                lot.source.value,
                lot.amount,
                lot.remaining,
                lot.created_at,
                lot.refundable_until,
                lot.payment_intent_id,
                lot.cents_paid,
                lot.token_price,
                lot.frozen,
                lot.written_off,
                lot.loss,
            )
            for lot in lots
        ]
        columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
        return cls(*(columns or [[] for _ in COLUMNS]))

    def records(self) -> dict[str, Lot]:
        """The wallet's ``lots``: new records, by id, in order. Built column by column, in
        the interpreter's own loops: a Python call per record is most of a cold load."""
        if len({len(getattr(self, name)) for name in COLUMNS}) > 1:
            raise ValueError("lot columns of different lengths")
        lot_ids = uuids_from_ints(list(map(int, map(_hex, self.ids), repeat(16))))
        sources = map(_SOURCES.__getitem__, self.source)
        lots = map(
            Lot,
            lot_ids,
            self.seq,
            sources,
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
        )
        return dict(zip(self.ids, lots, strict=True))


_hex = methodcaller("replace", "-", "")  # a UUID's 32 hex digits from its string


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LotColumns))


class WalletSnapshot(Snapshot):
    """A wallet's snapshot with its lot records as :class:`LotColumns`. Its topic is
    registered where its stored form is (``application/transcodings.py``)."""

    TOPIC = "peerpush:Wallet.Snapshot"

    @classmethod
    def take(cls, aggregate: Any) -> WalletSnapshot:
        snapshot = super().take(aggregate)
        snapshot.state["lots"] = LotColumns.of(aggregate.lots.values())
        return snapshot

    def mutate(self, _: None) -> BaseAggregate[UUID]:
        lots = self.state.get("lots")
        if isinstance(lots, LotColumns):
            # The records the wallet holds, before any upcast reads its state.
            return replace(self, state={**self.state, "lots": lots.records()}).mutate(None)
        return super().mutate(None)
