"""A wallet's snapshot, stored with its lot records as columns, loads to the wallet its events
replay to; snapshots stored before (a record per lot, as a row or as a dict) still do."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper

from application.ledger import Ledger
from application.transcodings import DataclassTranscoding
from domain.aggregate import Cause
from domain.tokens import Lot, LotSource
from domain.wallet import Wallet
from domain.wallet_snapshot import LotColumns
from tests.unit.test_wallet import ADJUSTMENT, CHALLENGE, ME, STRIPE, T0, USER, WINDOW, B

ADMIN = Cause.admin("admin-1")


@pytest.fixture(scope="module")
def mapper() -> Mapper[UUID]:
    return Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


def a_wallet_with_every_kind_of_lot() -> tuple[Wallet, list[Any]]:
    """Deposits (one frozen by an open dispute, one written off with a loss), payout lots
    and an adjustment lot; and the events that made it."""
    w = Wallet.open(USER, ME, T0)
    for pi, cents in (("pi_a", 100), ("pi_b", 50), ("pi_c", 30)):
        w.credit_deposit(pi, cents, 1, WINDOW, STRIPE, T0)
    w.debit_adjustment(ADJUSTMENT, 120, "correction", ADMIN, T0)  # all of a, 20 of b
    w.open_dispute("pi_b", "dp_b", STRIPE, T0)
    w.lose_dispute("dp_b", 50, STRIPE, T0)  # 30 left to take back, 20 the platform's loss
    w.open_dispute("pi_c", "dp_c", STRIPE, T0)
    w.credit_adjustment(UUID(int=7), 15, "goodwill", ADMIN, T0)
    w.lock_stake(CHALLENGE, 10, ME, T0)
    w.settle_stake(CHALLENGE, 25, Cause.worker("settle"), T0)
    for k in range(20):  # records most of whose fields are alike, as a busy wallet's
        w.lock_stake(UUID(int=100 + k), 1, ME, T0)
        w.settle_stake(UUID(int=100 + k), 2, Cause.worker("settle"), T0 + timedelta(hours=k))
    lots = list(w.lots.values())
    assert {lot.source for lot in lots} == set(LotSource)
    assert w.lot(B).written_off and w.lot(B).loss == 20
    assert any(lot.frozen and not lot.written_off for lot in lots)
    return w, list(w.collect_events())


def replayed(events: list[Any]) -> Wallet:
    wallet: Wallet = reduce(lambda w, e: e.mutate(w), events, None)
    return wallet


def stored_and_loaded(mapper: Mapper[UUID], snapshot: Any) -> tuple[bytes, Wallet]:
    stored = mapper.to_stored_event(snapshot)
    loaded = mapper.to_domain_event(stored).mutate(None)
    assert isinstance(loaded, Wallet)
    return stored.state, loaded


def test_a_snapshot_stores_lot_records_as_columns_and_loads_the_wallet_its_events_replay_to(
    mapper: Mapper[UUID],
) -> None:
    w, events = a_wallet_with_every_kind_of_lot()

    state, loaded = stored_and_loaded(mapper, Wallet.Snapshot.take(w))

    assert b"peerpush_lot_columns" in state and b"peerpush_lot_row" not in state
    assert b'"all":false' in state  # no record frozen but one: that one by its index
    assert vars(loaded) == vars(replayed(events)) == vars(w)
    assert list(loaded.lots) == list(w.lots)  # FIFO order kept
    assert all(type(lot.source) is LotSource for lot in loaded.lots.values())
    assert {lot.lot_id for lot in loaded.lots.values()} == {UUID(key) for key in w.lots}


def test_a_loaded_wallet_decides_as_the_replayed_one_and_shares_no_record(
    mapper: Mapper[UUID],
) -> None:
    w, events = a_wallet_with_every_kind_of_lot()
    snapshot = mapper.to_domain_event(mapper.to_stored_event(Wallet.Snapshot.take(w)))
    first, second = snapshot.mutate(None), snapshot.mutate(None)
    assert isinstance(first, Wallet)

    first.debit_adjustment(UUID(int=8), 20, "fee", ADMIN, T0)
    again = replayed(events)
    again.debit_adjustment(UUID(int=8), 20, "fee", ADMIN, T0)

    assert [e.taken for e in first.collect_events()] == [e.taken for e in again.collect_events()]
    assert vars(second) == vars(w)


def test_a_wallet_without_lot_records_round_trips(mapper: Mapper[UUID]) -> None:
    w = Wallet.open(USER, ME, T0)
    events = list(w.collect_events())

    _, loaded = stored_and_loaded(mapper, Wallet.Snapshot.take(w))

    assert loaded.lots == {} and vars(loaded) == vars(replayed(events))
    assert LotColumns.of([]).records() == {}


@pytest.mark.parametrize("form", ["rows", "dicts"])
def test_a_snapshot_stored_before_lot_columns_still_loads_the_same_wallet(
    mapper: Mapper[UUID], form: str
) -> None:
    """Stored by the library's snapshot class, its lots a dict of records: as flat rows
    (``peerpush_lot_row``) or, before those, dicts of fields (``peerpush_lot``)."""
    w, events = a_wallet_with_every_kind_of_lot()
    writer = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    if form == "dicts":  # registered last, it encodes lots as it did then
        writer.transcoder.register(DataclassTranscoding(Lot, "peerpush_lot"))  # type: ignore[attr-defined]  # JSONTranscoder's

    stored = writer.to_stored_event(Snapshot.take(w))
    loaded = mapper.to_domain_event(stored).mutate(None)

    assert (b"peerpush_lot_row" in stored.state) == (form == "rows")
    assert b"peerpush_lot_columns" not in stored.state
    assert isinstance(loaded, Wallet)
    assert vars(loaded) == vars(replayed(events))
    assert list(loaded.lots) == list(w.lots)
