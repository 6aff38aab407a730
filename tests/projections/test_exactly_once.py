"""Every event is applied exactly once: a worker killed mid catch-up, restarted, and two
runners racing leave the read models a from-scratch replay would make."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

from adapters.persistence import DatabaseSettings
from projections.runner import Projector
from tests.projections.support import (
    Projected,
    assert_read_models_match_domain,
    assert_same_tables,
    bulk_wallet_events,
    connect,
    dump,
    positions,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER_DEADLINE_SECONDS = 60


def start_worker(db: DatabaseSettings, name: str = "") -> subprocess.Popen[bytes]:
    """``python -m projections run`` against the test's schema (its sessions named ``name``)."""
    env = {**os.environ, "DATABASE_URL": db.url, "DB_SCHEMA": db.schema}
    if name:
        env["PGAPPNAME"] = name
    return subprocess.Popen(
        [sys.executable, "-m", "projections", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lowest_position(db: DatabaseSettings) -> int:
    with connect(db) as conn:
        row = conn.execute("SELECT min(position) AS p FROM projection_positions").fetchone()
    return int(row["p"] or 0) if row else 0


def sessions_named(db: DatabaseSettings, name: str) -> int:
    with connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    return int(row["n"]) if row else 0


def wait_until(condition: Callable[[], bool], worker: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + WORKER_DEADLINE_SECONDS
    while not condition():
        if worker.poll() is not None:
            raise AssertionError(f"the worker died: {worker.communicate()[1].decode()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_worker_killed_mid_catch_up_and_restarted_applies_every_event_exactly_once(
    projected: Projected,
) -> None:
    ledger, db = projected.ledger, projected.db
    # More events than one batch (5,000) of the worker holds, so it is killed between two.
    bulk_wallet_events(ledger, wallets_count=91, events_each=99)
    head = ledger.head()
    assert head > 9_000  # 91 × 99: a batch of 5,000, then one of 4,009 to be killed in

    killed = f"killed-{uuid4().hex[:12]}"
    worker = start_worker(db, killed)
    try:
        wait_until(lambda: lowest_position(db) > 0, worker, "the first batch")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        worker.kill()
    # The killed worker's sessions end (with their transaction) before anyone goes on.
    deadline = time.monotonic() + WORKER_DEADLINE_SECONDS
    while sessions_named(db, killed):
        assert time.monotonic() < deadline, "the killed worker's sessions outlived it"
        time.sleep(0.05)
    reached = lowest_position(db)
    assert 0 < reached < head, f"the worker was not killed mid catch-up ({reached}/{head})"

    worker = start_worker(db)
    try:
        wait_until(lambda: lowest_position(db) >= head, worker, "the catch-up")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    assert set(positions(db).values()) == {head}

    resumed = dump(db)
    assert_read_models_match_domain(ledger, db)
    replayed = projected.projector.rebuild()
    assert replayed == head
    from_scratch = dump(db)
    assert_same_tables(resumed, from_scratch)
    with connect(db) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM wallet_transactions) AS txs, "
            "(SELECT count(DISTINCT position) FROM wallet_transactions) AS tx_positions, "
            "(SELECT count(*) FROM journal_entries) AS entries"
        ).fetchone()
    assert counts is not None
    assert counts["txs"] == counts["tx_positions"] == len(from_scratch["wallet_transactions"])
    assert counts["entries"] == len(from_scratch["journal_entries"])


def test_two_runners_racing_on_one_schema_leave_what_one_rebuild_makes(
    projected: Projected,
) -> None:
    ledger, db = projected.ledger, projected.db
    bulk_wallet_events(ledger, wallets_count=40, events_each=50)
    runners = [Projector(db, ledger, batch_size=97) for _ in range(2)]
    barrier = threading.Barrier(len(runners))
    errors: list[BaseException] = []

    def race(runner: Projector) -> None:
        try:
            barrier.wait()
            runner.catch_up()
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=race, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for r in runners:
        r.close()
    assert errors == []
    assert set(positions(db).values()) == {ledger.head()}
    raced = dump(db)
    assert_read_models_match_domain(ledger, db)
    projected.projector.rebuild()
    assert_same_tables(raced, dump(db))
