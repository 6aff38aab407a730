"""Reading the stored stream for an audit: one read-only snapshot, batches, constant memory.

Every query of one audit runs in a single ``REPEATABLE READ, READ ONLY`` transaction, so the
stream, the read models and the stored chain are seen at one moment even while the ledger
keeps writing, and nothing can be changed by the audit.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

import psycopg
from eventsourcing.persistence import Notification

from adapters.persistence import CONNECT_TIMEOUT_SECONDS, DatabaseSettings

BATCH = 5_000
EVENTS_TABLE = "ledger_events"
Conn = psycopg.Connection[Any]
T = TypeVar("T")


@contextmanager
def snapshot(db: DatabaseSettings) -> Iterator[Conn]:
    """A read-only, repeatable-read transaction on ``db``'s schema, rolled back at the end."""
    conn = psycopg.connect(
        db.url, connect_timeout=CONNECT_TIMEOUT_SECONDS, options=f"-c search_path={db.schema}"
    )
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        yield conn
    finally:
        conn.rollback()
        conn.close()


def batches(
    conn: Conn, *, after: int = 0, until: int | None = None, size: int = BATCH
) -> Iterator[list[Notification]]:
    """The stored events after position ``after`` (up to ``until``), in position order."""
    query = (
        "SELECT notification_id, originator_id, originator_version, topic, state "
        f"FROM {EVENTS_TABLE} WHERE notification_id > %s"
    )
    params: list[Any] = [after]
    if until is not None:
        query += " AND notification_id <= %s"
        params.append(until)
    with conn.cursor(name="audit_events", binary=True) as cur:
        cur.itersize = size
        cur.execute(query + " ORDER BY notification_id", params)
        while rows := cur.fetchmany(size):
            yield [
                Notification(
                    id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=r[4]
                )
                for r in rows
            ]


def prefetched(source: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``source``'s items, produced by a thread up to ``depth`` ahead of the consumer.

    The database prepares and sends the next batch while this process decodes the last one
    (psycopg waits for the network without the GIL); the connection serialises its users.
    """
    items: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((False, None))
        except BaseException as error:  # handed to the consumer, raised there
            items.put((False, error))

    worker = threading.Thread(target=produce, name="audit-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            more, item = items.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()


def stream_rows(conn: Conn, query: str, params: Any = (), size: int = BATCH) -> Iterator[Any]:
    """Rows of any query through a server-side cursor (never all in memory)."""
    with conn.cursor(name=f"audit_rows_{time.monotonic_ns()}") as cur:
        cur.itersize = size
        cur.execute(query, params)
        while rows := cur.fetchmany(size):
            yield from rows


def head(conn: Conn) -> int:
    row = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
    assert row is not None, "an aggregate query always returns a row"
    return int(row[0])


def has_table(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


class Progress:
    """A one-line progress bar with rate and ETA on a terminal's stderr; silent when piped."""

    def __init__(self, total: int, label: str, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty()
        self.total, self.label = max(total, 1), label
        self.started = self.shown = time.monotonic()
        self.done = 0

    def update(self, done: int, position: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self.shown < 0.2:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        share = min(position / self.total, 1.0)
        left = (self.total - position) * done / max(position, 1) / max(rate, 1e-9)
        bar = "#" * int(share * 30)
        self.out.write(
            f"\r{self.label} [{bar:<30}] {share:4.0%} {done:,} events "
            f"{rate:,.0f}/s ETA {int(left) // 60}:{int(left) % 60:02d} "
        )
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.out.write("\r\033[K")
            self.out.flush()
