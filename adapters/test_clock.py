"""The test clock of a development deployment, shared by every process through PostgreSQL.

Business time is the wall clock plus an offset that only grows (like Stripe's test clocks).
The offset lives in the ``test_clock`` table (migration 0010), not in a process's memory: an
advance made through one API process must be the business time of every other API process and
of every worker (``peerpush worker``), or a worker would settle on a different day than the one
the API shows. Production never builds this clock (its clock is the wall clock).

The offset is read on every ``now()``: one primary-key read on a connection the clock keeps
open (about 0.6 ms measured on the shared test machine), so an advance is seen by the very
next reading in any process, with no cache to go stale. ``now()`` is called a few times per
command, and only in development. A read model query that needs the time takes it from
``now_sql()`` instead: PostgreSQL's clock plus the offset, evaluated inside that query, so the
reading costs no round trip of its own (``GET /v1/wallet``). In development the database runs
on the same host as the API (the embedded server, or the compose file's), so both readings
come from one wall clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from adapters.persistence import CONNECT_TIMEOUT_SECONDS, DatabaseSettings

NOW_SQL = "(statement_timestamp() + (SELECT offset_us FROM test_clock) * interval '1 microsecond')"


class PgTestClock:
    """A test clock whose offset every process of one schema shares."""

    def __init__(self, db: DatabaseSettings) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def now(self) -> datetime:
        row = self._execute("SELECT offset_us FROM test_clock")
        return datetime.now(UTC) + _offset(row)

    def now_sql(self) -> str:
        """``now()`` as an SQL expression over the same schema (``projections.queries.SqlClock``):
        the statement's start plus the offset that statement's snapshot sees."""
        return NOW_SQL

    def advance(self, by: timedelta) -> datetime:
        """Move business time forward by ``by`` for every process; returns the new time."""
        if by < timedelta(0):
            raise ValueError("the clock only moves forward")
        micros = by // timedelta(microseconds=1)
        row = self._execute(
            "UPDATE test_clock SET offset_us = offset_us + %s RETURNING offset_us", (micros,)
        )
        return datetime.now(UTC) + _offset(row)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
                    return row
                except psycopg.OperationalError:
                    # The server closed the connection (restart, idle timeout): reconnect once.
                    conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.db.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=f"-c search_path={self.db.schema}",
            )
        return self._conn


def _offset(row: tuple[Any, ...] | None) -> timedelta:
    if row is None:
        raise RuntimeError("the test_clock table has no row: run the migrations")
    return timedelta(microseconds=int(row[0]))
