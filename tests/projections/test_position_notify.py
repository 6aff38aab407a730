"""Read-your-writes waits are woken by the projector's NOTIFY, not by polling: many waiters
share one listening connection, a batch committed by another process wakes them, a lost
listener reconnects, and requests beyond the waiter bound are refused at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest

from adapters.persistence import DatabaseSettings
from domain.aggregate import Cause
from projections.position_watch import TooManyWaiters
from projections.runner import Projector
from tests.projections.support import Projected, connect

ROOT = Path(__file__).resolve().parents[2]
# Generous: a wait returns as soon as it is woken; this only bounds a broken run.
LONG_WAIT = 120.0


def settle(condition: Callable[[], bool]) -> None:
    """Block until ``condition`` holds (checked on every thread switch, no wall clock)."""
    event = threading.Event()
    while not condition():
        event.wait(0.01)


def waiting_threads(
    projector: Projector, position: int, count: int
) -> tuple[list[threading.Thread], list[bool]]:
    results: list[bool] = []
    lock = threading.Lock()

    def wait() -> None:
        ok = projector.wait_for(position, timeout=LONG_WAIT)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for t in threads:
        t.start()
    settle(lambda: projector.waiters == count or len(results) > 0)
    assert projector.waiters == count, f"only {projector.waiters} of {count} are waiting"
    return threads, results


def backends_named(db: DatabaseSettings, name: str) -> list[dict[str, object]]:
    with connect(db) as conn:
        return conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()


def test_two_hundred_waiters_share_one_database_connection_and_all_wake_on_one_batch(
    projected: Projected, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, db = projected.ledger, projected.db
    projector = Projector(db, ledger, max_waiters=200)
    try:
        projector.positions()  # this thread's own connection, opened before the name is set
        receipt = ledger.credit_deposit(uuid4(), "pi_0", 1_000, Cause.stripe("evt_0"))
        name = f"ryw-{uuid4().hex[:12]}"
        monkeypatch.setenv("PGAPPNAME", name)

        threads, results = waiting_threads(projector, receipt.position, 200)
        monkeypatch.delenv("PGAPPNAME")
        opened = backends_named(db, name)
        assert len(opened) == 1, f"200 waiters opened {len(opened)} connections"

        assert projector.run_once() > 0  # one batch, committed by this (another) thread
        for t in threads:
            t.join(timeout=LONG_WAIT)
        assert results == [True] * 200
        assert len(backends_named(db, name)) == 1
    finally:
        projector.close()


def test_a_waiter_is_woken_by_a_batch_the_worker_process_commits(projected: Projected) -> None:
    ledger, projector, db = projected.ledger, projected.projector, projected.db
    user = uuid4()
    receipt = ledger.credit_deposit(user, "pi_0", 1_000, Cause.stripe("evt_0"))
    env = {**os.environ, "DATABASE_URL": db.url, "DB_SCHEMA": db.schema}
    worker = subprocess.Popen(
        [sys.executable, "-m", "projections", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert projector.wait_for(receipt.position, timeout=LONG_WAIT)
        assert projector.wallet_rows([user])[user]["available"] == 1_000
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_a_waiter_beyond_the_bound_is_refused_at_once(projected: Projected) -> None:
    ledger, db = projected.ledger, projected.db
    projector = Projector(db, ledger, max_waiters=2)
    try:
        threads, results = waiting_threads(projector, ledger.head() + 1_000, 2)
        with pytest.raises(TooManyWaiters):
            projector.wait_for(ledger.head() + 1_000, timeout=LONG_WAIT)
    finally:
        projector.close()  # wakes the two waiters: their positions never come
    for t in threads:
        t.join(timeout=LONG_WAIT)
    assert results == [False, False]


def test_a_listener_whose_connection_is_lost_reconnects_and_still_wakes_the_waiter(
    projected: Projected, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, projector, db = projected.ledger, projected.projector, projected.db
    receipt = ledger.credit_deposit(uuid4(), "pi_0", 1_000, Cause.stripe("evt_0"))
    name = f"ryw-{uuid4().hex[:12]}"
    monkeypatch.setenv("PGAPPNAME", name)
    threads, results = waiting_threads(projector, receipt.position, 1)
    monkeypatch.delenv("PGAPPNAME")

    def listener() -> list[dict[str, object]]:
        # The listener's last statement reads the positions once it has LISTENed.
        return [b for b in backends_named(db, name) if "cardinality" in str(b["query"])]

    settle(lambda: len(listener()) == 1)
    with connect(db) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (listener()[0]["pid"],))
    worker = Projector(db, ledger)
    try:
        worker.catch_up()
    finally:
        worker.close()
    threads[0].join(timeout=LONG_WAIT)
    assert results == [True]
