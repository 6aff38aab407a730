"""Read-your-writes waits without polling: one listener per process, woken by NOTIFY.

The projector, in the same transaction that records a batch's positions, sends
``pg_notify(CHANNEL, '<schema>:<position>')``; PostgreSQL delivers it on commit, to every
process, so it works whether the projector runs in this process or in
``peerpush projections run`` elsewhere. Each process keeps ONE listening connection (a
thread) and the latest position it has heard of; every waiting request sleeps on a
condition variable instead of querying the database, so a thousand waiters cost what one
does. Waits are bounded in time by the caller and in number by ``max_waiters``: beyond it a
request is refused at once (``TooManyWaiters``) rather than queueing behind the others.

If the listening connection is lost, the thread reconnects, re-reads the positions (a
notification sent while it was away is never replayed) and wakes the waiters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

log = logging.getLogger("peerpush.projections")

CHANNEL = "peerpush_positions"
# How long the listener blocks for notifications before checking whether it should stop,
# and the pause before reconnecting after losing its connection.
LISTEN_SLICE_SECONDS = 1.0
RECONNECT_PAUSE_SECONDS = 0.5


# A worker's session must not outlive its process. A SIGKILLed client's backend normally
# sees the closed socket at its next read, but one that is running a statement or waiting for
# a lock when the client dies keeps its transaction (and the projections' lock) until that
# wait ends; PostgreSQL 14+ checks the client every CLIENT_CHECK while a statement runs. TCP
# keepalives do the same for a peer that vanished without closing (a crashed host).
CLIENT_CHECK = "2s"
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def open_session(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection for a projection worker or listener (see CLIENT_CHECK)."""
    conn = psycopg.connect(url, autocommit=True, **KEEPALIVES)  # type: ignore[arg-type]  # libpq keywords, which psycopg passes through as **kwargs
    if conn.info.server_version >= 140000:
        conn.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK}'")
    return conn


# The position every named projection has reached (a projection without a row is at 0).
LOWEST_POSITION = (
    "SELECT CASE WHEN count(*) = cardinality(%(names)s::text[]) "
    "THEN coalesce(min(position), 0) ELSE 0 END "
    "FROM projection_positions WHERE name = ANY(%(names)s::text[])"
)


def announce_position(cur: psycopg.Cursor[Any], schema: str, names: Sequence[str]) -> None:
    """Queue a notification of the read models' lowest position, sent when the batch's
    transaction commits (and never if it rolls back)."""
    cur.execute(
        f"SELECT pg_notify(%(channel)s, %(schema)s || ':' || ({LOWEST_POSITION}))",
        {"channel": CHANNEL, "schema": schema, "names": list(names)},
    )


class TooManyWaiters(Exception):
    """More requests are already waiting for the read models than the process allows."""


class PositionWatch:
    """The lowest position the read models have committed, as heard through NOTIFY."""

    def __init__(
        self,
        url: str,
        schema: str,
        names: Callable[[], Sequence[str]],
        *,
        max_waiters: int,
    ) -> None:
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        self.url = url
        self.schema = schema
        self.names = names
        self.max_waiters = max_waiters
        self._cond = threading.Condition()
        self._known = -1  # nothing heard yet
        self._waiters = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def waiters(self) -> int:
        """How many requests are waiting right now."""
        with self._cond:
            return self._waiters

    def wait(self, position: int, timeout: float) -> bool:
        """Block until the read models have applied ``position``; False after ``timeout``.

        Raises ``TooManyWaiters`` at once when ``max_waiters`` requests already wait.
        """
        with self._cond:
            if self._known >= position:
                return True
            if self._waiters >= self.max_waiters:
                raise TooManyWaiters(f"{self._waiters} requests are already waiting")
            self._start()
            self._waiters += 1
            try:
                return self._cond.wait_for(
                    lambda: self._known >= position or self._stop.is_set(), timeout
                ) and (self._known >= position)
            finally:
                self._waiters -= 1

    def close(self) -> None:
        """Stop the listener and wake every waiter (they return False)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    # -- the listener thread -------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._listen_forever, name="peerpush-position-watch", daemon=True
            )
            self._thread.start()

    def _listen_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_once()
            except psycopg.Error:
                if self._stop.is_set():
                    break
                log.warning("position listener lost its connection; reconnecting", exc_info=True)
                self._stop.wait(RECONNECT_PAUSE_SECONDS)

    def _listen_once(self) -> None:
        with open_session(self.url) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            # Read after LISTEN: a batch committed in between is in the read or the queue.
            conn.execute(f'SET search_path TO "{self.schema}"')
            row = conn.execute(LOWEST_POSITION, {"names": list(self.names())}).fetchone()
            self._heard(int(row[0]) if row else 0)
            prefix = f"{self.schema}:"
            while not self._stop.is_set():
                # Returns after the slice even when nothing came, so close() is noticed.
                for note in conn.notifies(timeout=LISTEN_SLICE_SECONDS):
                    if note.payload.startswith(prefix):
                        self._heard(int(note.payload[len(prefix) :]))

    def _heard(self, position: int) -> None:
        with self._cond:
            if position > self._known:
                self._known = position
                self._cond.notify_all()
