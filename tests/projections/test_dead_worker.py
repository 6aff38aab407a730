"""A projection worker killed while its session waits on the database does not leave that
session behind: PostgreSQL ends it (and its transaction) instead of letting it finish its
wait and hold the projections' lock for a client that no longer exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from projections.runner import LOCK_CLASS
from tests.projections.support import Projected, connect

ROOT = Path(__file__).resolve().parents[2]
# Bounds for a broken run only: each loop ends as soon as its condition holds.
WORKER_START_SECONDS = 120
GONE_SECONDS = 60
Conn = psycopg.Connection[dict[str, Any]]


def test_a_worker_killed_while_waiting_for_the_projections_lock_leaves_no_session_behind(
    projected: Projected,
) -> None:
    db = projected.db
    name = f"dead-{uuid4().hex[:12]}"
    with connect(db) as holder:
        # Another runner's batch, in effect: the worker's first batch must wait for it.
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, db.schema))
        env = {**os.environ, "DATABASE_URL": db.url, "DB_SCHEMA": db.schema, "PGAPPNAME": name}
        worker = subprocess.Popen(
            [sys.executable, "-m", "projections", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + WORKER_START_SECONDS
            while not waiting_on_the_lock(holder, name):
                assert worker.poll() is None, worker.communicate()[1].decode()
                assert time.monotonic() < deadline, "the worker never reached the lock"
                time.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=60)
        finally:
            worker.kill()

        # The lock is still held: only PostgreSQL noticing the dead client ends the session.
        deadline = time.monotonic() + GONE_SECONDS
        while sessions_of(holder, name):
            assert time.monotonic() < deadline, (
                f"the killed worker's session still waits: {sessions_of(holder, name)}"
            )
            time.sleep(0.1)


def waiting_on_the_lock(conn: Conn, name: str) -> bool:
    return any(
        s["wait_event_type"] == "Lock" and s["wait_event"] == "advisory"
        for s in sessions_of(conn, name)
    )


def sessions_of(conn: Conn, name: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity "
        "WHERE application_name = %s",
        (name,),
    ).fetchall()
    return list(rows)
