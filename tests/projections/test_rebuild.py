"""Read models are a function of the stream: rebuilt any number of times, or caught up from
far behind while commands keep arriving, they hold the same rows (rules §8)."""

from __future__ import annotations

import contextlib
import io
import threading

from application.demo import play
from tests.projections.support import (
    Projected,
    assert_read_models_match_domain,
    assert_same_tables,
    bulk_wallet_events,
    dump,
    positions,
)


def quietly_play(projected: Projected) -> None:
    """The scripted four-player challenge of ``make run``: deposits, stakes, proofs, votes,
    a penalty, settlement (its progress report is not this test's business)."""
    with contextlib.redirect_stdout(io.StringIO()):
        play(projected.ledger, projected.clock)


def test_rebuilding_twice_gives_the_tables_the_incremental_run_made(
    projected: Projected,
) -> None:
    bulk_wallet_events(projected.ledger, wallets_count=10, events_each=40)
    quietly_play(projected)
    projected.projector.batch_size = 50
    projected.projector.catch_up()
    incremental = dump(projected.db)
    assert incremental["challenge_summaries"] and incremental["journal_postings"]

    head = projected.ledger.head()
    assert projected.projector.rebuild() == head
    first = dump(projected.db)
    assert projected.projector.rebuild() == head
    second = dump(projected.db)

    assert_same_tables(first, incremental)
    assert_same_tables(second, first)
    assert set(positions(projected.db).values()) == {head}


def test_rebuilding_one_projection_leaves_the_same_tables(projected: Projected) -> None:
    quietly_play(projected)
    projected.projector.catch_up()
    before = dump(projected.db)
    projected.projector.rebuild(["wallets"])
    assert_same_tables(dump(projected.db), before)
    assert set(positions(projected.db).values()) == {projected.ledger.head()}


def test_a_projection_far_behind_catches_up_while_commands_keep_arriving(
    projected: Projected,
) -> None:
    ledger, projector = projected.ledger, projected.projector
    bulk_wallet_events(ledger, wallets_count=60, events_each=99)
    projector.batch_size = 500
    first_pass_done = threading.Event()
    errors: list[BaseException] = []
    plays = 0

    def keep_commanding() -> None:
        nonlocal plays
        try:
            while plays == 0 or not first_pass_done.is_set():
                quietly_play(projected)
                plays += 1
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    # The writer plays until the projector's first pass from far behind is over, so commands
    # arrive all through it; the projector then follows until the writer stops.
    behind = ledger.head()
    writer = threading.Thread(target=keep_commanding)
    writer.start()
    try:
        while True:
            projector.catch_up()
            first_pass_done.set()
            if not writer.is_alive():
                break
    finally:
        first_pass_done.set()
        writer.join(timeout=60)
    assert errors == []
    projector.catch_up()
    head = ledger.head()
    assert head > behind
    assert set(positions(projected.db).values()) == {head}

    caught_up = dump(projected.db)
    assert len(caught_up["challenge_summaries"]) == plays
    assert_read_models_match_domain(ledger, projected.db)
    projector.rebuild()
    assert_same_tables(caught_up, dump(projected.db))
