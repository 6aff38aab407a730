"""A lot record comes back whole from the command's copy and from a snapshot, old or new."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex

from application.transcodings import SNAPSHOT_TYPES, DataclassTranscoding, snapshot_transcodings
from domain.tokens import Lot, LotSource

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOTS = [
    Lot(uuid4(), 0, LotSource.DEPOSIT, 100, 40, T0, T0 + timedelta(days=90), "pi_1", 100, 1,
        frozen=True, written_off=False, loss=3),
    Lot(uuid4(), 1, LotSource.PAYOUT, 7, 0, T0),
    Lot(uuid4(), 2, LotSource.ADJUSTMENT, 5, 5, T0, written_off=True),
]  # fmt: skip


def transcoder(*extra: object) -> JSONTranscoder:
    t = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), *extra):
        t.register(transcoding)  # type: ignore[arg-type]
    return t


def test_a_copied_lot_record_is_equal_and_independent() -> None:
    for copied in (pickle.loads(pickle.dumps(LOTS, pickle.HIGHEST_PROTOCOL)), copy.deepcopy(LOTS)):
        assert copied == LOTS
        assert all(type(lot.source) is LotSource for lot in copied)
        assert {lot.lot_id: n for n, lot in enumerate(copied)}[LOTS[1].lot_id] == 1
        copied[0].remaining = 0
        assert LOTS[0].remaining == 40


def test_snapshots_store_lots_as_rows_and_still_read_the_older_dicts() -> None:
    now = transcoder(*snapshot_transcodings())
    before = transcoder(*(DataclassTranscoding(cls, name) for cls, name in SNAPSHOT_TYPES))
    written = now.encode({"lots": LOTS})
    assert b"peerpush_lot_row" in written
    assert now.decode(written) == {"lots": LOTS}
    assert now.decode(before.encode({"lots": LOTS})) == {"lots": LOTS}
