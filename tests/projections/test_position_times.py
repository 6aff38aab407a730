""" "As of a time T" is the stream up to the last position whose event time is at most T, even
when commit order and clock order differ, and it is found through the (position, time) index
without reading the stream (rules §8)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from projections.base import Positioned
from projections.position_times import POSITION_AT, IndexBehind, floors, position_at
from tests.projections.support import ADMIN, START, Projected, bulk_wallet_events, connect

MINUTE = timedelta(minutes=1)


@contextmanager
def clock_read_at(ledger: Ledger, at: datetime) -> Iterator[None]:
    """A command whose clock was read at ``at``, as when a request read the clock, then was
    slower to commit than one that read it later: its event lands at a later position with
    an earlier time."""
    clock = ledger.clock
    ledger.clock = AdjustableClock(at, frozen=True)
    try:
        yield
    finally:
        ledger.clock = clock


def stream_times(ledger: Ledger) -> dict[int, datetime]:
    stream = ledger.recorder.select_notifications(1, 10_000)
    return {n.id: ledger.mapper.to_domain_event(n).timestamp for n in stream}


def by_definition(times: dict[int, datetime], at: datetime) -> int:
    return max((p for p, t in times.items() if t <= at), default=0)


def out_of_order_stream(ledger: Ledger) -> None:
    """Deposits and adjustments of three users whose clock readings jump back and forth."""
    users = [uuid4() for _ in range(3)]
    minutes = [10, 30, 20, 5, 40, 25, 25, 45, 1, 50, 35]
    for n, m in enumerate(minutes):
        user = users[n % 3]
        with clock_read_at(ledger, START + m * MINUTE):
            if n % 2:
                ledger.adjust(user, "credit", 10 + n, "goodwill", uuid4(), Cause.admin(ADMIN))
            else:
                ledger.credit_deposit(user, f"pi_{n}", 100 + n, Cause.stripe(f"evt_{n}"))


def test_the_floors_of_a_batch_are_the_earliest_time_from_each_position_on() -> None:
    at = [START + m * MINUTE for m in (3, 1, 4, 1, 5)]
    events = [
        Positioned(p, type("E", (), {"timestamp": t})())
        for p, t in zip((2, 3, 5, 6, 9), at, strict=True)
    ]
    assert [(p, f) for p, _, f in floors(events)] == [
        (2, at[1]),
        (3, at[1]),
        (5, at[3]),
        (6, at[3]),
        (9, at[4]),
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 5_000])
def test_as_of_a_time_is_the_last_position_at_or_before_it_whatever_the_commit_order(
    projected: Projected, batch_size: int
) -> None:
    ledger, projector = projected.ledger, projected.projector
    out_of_order_stream(ledger)
    projector.batch_size = batch_size
    projector.catch_up()
    times = stream_times(ledger)
    assert sorted(times, key=lambda p: (times[p], p)) != sorted(times), "clock order = commit order"
    with connect(projected.db) as conn:
        for t in sorted(set(times.values())):
            for at in (t - timedelta(seconds=1), t, t + timedelta(seconds=1)):
                assert position_at(conn, at) == by_definition(times, at), at
        assert position_at(conn, START - MINUTE) == 0
        assert position_at(conn, START + 99 * MINUTE) == ledger.head()


def test_a_rebuilt_index_answers_like_the_one_kept_batch_by_batch(projected: Projected) -> None:
    ledger, projector = projected.ledger, projected.projector
    out_of_order_stream(ledger)
    projector.batch_size = 2
    projector.catch_up()
    with connect(projected.db) as conn:
        kept = conn.execute("SELECT * FROM position_times ORDER BY position").fetchall()
    assert projector.rebuild(["position_times"]) == ledger.head()
    with connect(projected.db) as conn:
        rebuilt = conn.execute("SELECT * FROM position_times ORDER BY position").fetchall()
    assert rebuilt == kept and len(kept) == ledger.head()


def test_an_index_behind_the_stream_does_not_answer(projected: Projected) -> None:
    ledger, projector = projected.ledger, projected.projector
    out_of_order_stream(ledger)
    projector.catch_up()
    covered = ledger.head()
    # A late commit with an early time: the index has not seen it, so it cannot say.
    with clock_read_at(ledger, START):
        ledger.credit_deposit(uuid4(), "pi_late", 100, Cause.stripe("evt_late"))
    with connect(projected.db) as conn:
        with pytest.raises(IndexBehind) as behind:
            position_at(conn, START + 2 * MINUTE)
        assert (behind.value.indexed, behind.value.head) == (covered, ledger.head())
        # A caller that asked before the late commit is answered from what the index covers.
        assert position_at(conn, START + 2 * MINUTE, covering=covered) == by_definition(
            {p: t for p, t in stream_times(ledger).items() if p <= covered}, START + 2 * MINUTE
        )
        projector.catch_up()
        assert position_at(conn, START + 2 * MINUTE) == ledger.head()


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def test_as_of_a_time_reads_one_index_entry_not_the_stream(projected: Projected) -> None:
    ledger, projector = projected.ledger, projected.projector
    bulk_wallet_events(ledger, wallets_count=40, events_each=50)
    out_of_order_stream(ledger)
    projector.catch_up()
    assert ledger.head() > 2_000
    with connect(projected.db) as conn:
        conn.execute("ANALYZE position_times")
        conn.execute("ANALYZE ledger_events")
        explained = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + POSITION_AT, {"at": START + 22 * MINUTE}
        ).fetchone()
    assert explained is not None
    nodes = list(plan_nodes(explained["QUERY PLAN"][0]["Plan"]))
    scans = {n["Relation Name"]: n for n in nodes if "Relation Name" in n}
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
    # The stream's head comes from the end of its position index; the answer from the end
    # of the floor index: one row each, whatever the stream's length.
    assert scans["ledger_events"]["Node Type"].startswith("Index")
    assert scans["position_times"]["Node Type"].startswith("Index")
    assert scans["position_times"]["Index Name"] == "position_times_floor_idx"
    assert scans["ledger_events"]["Actual Rows"] <= 1
    assert scans["position_times"]["Actual Rows"] == 1
