"""Keeps a process's aggregate cache in step with what other processes write.

A command decides first on the aggregates this process has cached (``TRUSTED_CACHE``,
`application.ledger`); if another process has changed one since, the save fails on its
version and the command runs again on fresh state. That is always correct, but each such
failure costs a transaction, and with several API processes sharing the traffic most
aggregates were last written by another one. So each process listens on the events table's
channel (the event store sends a NOTIFY with every transaction of events) and, woken, reads
which aggregates the new events belong to and drops the cached ones that are now behind. Its
own writes are already in its cache at their version, so they drop nothing.

The follower only makes conflicts rare: between another process's commit and this one
hearing of it, a command may still decide on the old version, and the events table refuses
its save as before. If the listening connection is lost, the thread reconnects and goes on
from the last position it read (the table, not the notifications, is what it reads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from adapters.persistence import CONNECT_TIMEOUT_SECONDS, DatabaseSettings

log = logging.getLogger("peerpush.cache")

# How long the listener blocks before checking whether it should stop; the pause before
# reconnecting; how many events one read takes at most.
LISTEN_SLICE_SECONDS = 1.0
RECONNECT_PAUSE_SECONDS = 0.5
PAGE = 10_000

# (aggregate id, version an event gave it) -> drop the cached aggregate if it is older.
Forget = Callable[[UUID, int], None]


class CacheFollower:
    """One listening thread per process: drops cached aggregates others have changed."""

    def __init__(self, db: DatabaseSettings, table: str, channel: str, forget: Forget) -> None:
        self.db = db
        self.forget = forget
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._head = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.{}").format(
            sql.Identifier(db.schema), sql.Identifier(table)
        )
        self._since = sql.SQL(
            "SELECT notification_id, originator_id, originator_version FROM {}.{} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(db.schema), sql.Identifier(table))
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.position = -1  # the last event read (-1: not started)

    def start(self) -> None:
        """Start listening; returns once the listener has subscribed (so every write
        committed from now on is heard)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._follow_forever, name="peerpush-cache-follower", daemon=True
            )
            self._thread.start()
            self._ready.wait(timeout=CONNECT_TIMEOUT_SECONDS * 2)

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _follow_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow_once()
            except psycopg.Error:
                if self._stop.is_set():
                    break
                log.warning("cache follower lost its connection; reconnecting", exc_info=True)
                self._stop.wait(RECONNECT_PAUSE_SECONDS)
            except Exception:  # a bad row must not stop the follower: log, go on
                log.exception("cache follower failed; starting again")
                self._stop.wait(RECONNECT_PAUSE_SECONDS)

    def _follow_once(self) -> None:
        with psycopg.connect(
            self.db.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        ) as conn:
            conn.execute(self._listen)
            if self.position < 0:
                row = conn.execute(self._head).fetchone()
                self.position = int(row[0]) if row else 0
            self._ready.set()
            self._catch_up(conn)  # what was written while it was away
            while not self._stop.is_set():
                # Returns after the slice even when nothing came, so close() is noticed.
                if any(True for _ in conn.notifies(timeout=LISTEN_SLICE_SECONDS, stop_after=1)):
                    self._catch_up(conn)

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            rows = conn.execute(self._since, (self.position, PAGE)).fetchall()
            for position, originator_id, version in rows:
                self.forget(originator_id, version)
                self.position = position
            if len(rows) < PAGE:
                return
