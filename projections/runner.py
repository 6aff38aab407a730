"""Runs projections over the event stream: batched, tracked, exactly once.

Each batch is one transaction on the read-model database: take the projections' advisory
lock, read their positions (FOR UPDATE), apply the next events to every projection that has
not seen them, record the new positions, commit. A crash anywhere rolls the whole batch back,
so no event is applied twice or skipped; a second runner waits on the lock and continues from
the committed positions, so any number of copies may run (rules §9).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg

from adapters.persistence import DatabaseSettings, database_unreachable
from application.ledger import Ledger
from projections.base import Positioned, Projection, fetch_by
from projections.chain import ChainProjection
from projections.challenges import ChallengesProjection
from projections.journal import JournalProjection
from projections.position_times import PositionTimesProjection
from projections.position_watch import PositionWatch, announce_position, open_session
from projections.revenue import RevenueProjection
from projections.wallets import WalletsProjection

log = logging.getLogger("peerpush.projections")

LOCK_CLASS = 0x70656572  # "peer": the projections' advisory locks, one per schema


def all_projections() -> list[Projection]:
    return [
        WalletsProjection(),
        ChallengesProjection(),
        RevenueProjection(),
        JournalProjection(),
        ChainProjection(),
        PositionTimesProjection(),
    ]


@dataclass(frozen=True)
class Status:
    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class Projector:
    """Keeps the read models in step with the ledger's stream."""

    def __init__(
        self,
        db: DatabaseSettings,
        ledger: Ledger,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 5_000,
        max_waiters: int = 64,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.projections = list(projections or all_projections())
        self.batch_size = batch_size
        # One connection per thread: a reader's wait_for must not nest its transaction in
        # the worker's (run_forever in another thread), nor see the batch before its commit.
        self._local = threading.local()
        self.applied_to = 0  # the last position a batch of this runner applied
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        # Read-your-writes waiters share one listener; it connects on the first wait.
        self._watch = PositionWatch(
            db.url,
            db.schema,
            lambda: [p.name for p in self.projections],
            max_waiters=max_waiters,
        )

    # -- running ------------------------------------------------------------------------

    def run_once(self, until: int | None = None) -> int:
        """Apply one batch (none past ``until``); returns how many events it read (0: up to
        date)."""
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            positions = self._lock_positions(cur, self.projections)
            return self._apply_next(cur, self.projections, positions, until)

    def catch_up(self, until: int | None = None) -> int:
        """Run batches until every projection has reached ``until`` (default: the head)."""
        target = self.ledger.head() if until is None else until
        applied = 0
        while min(self.positions().values(), default=0) < target:
            n = self.run_once(until)
            if n == 0:
                break
            applied += n
        return applied

    def run_forever(self, stop: Any, poll_seconds: float = 0.2) -> None:
        """Follow the stream until ``stop`` (a threading.Event) is set.

        A database that goes away (a restart, a failover) is waited for, not fatal: the batch
        in flight rolls back with its positions, and the next attempt reconnects.
        """
        outage = 0
        while not stop.is_set():
            try:
                applied = self.run_once()
            except Exception as e:
                if not database_unreachable(e):
                    raise
                outage += 1
                log.warning("database unreachable, projections wait (attempt %d): %s", outage, e)
                stop.wait(min(5.0, poll_seconds * 2**outage))
                continue
            outage = 0
            if applied == 0:
                stop.wait(poll_seconds)
                continue
            log.info(
                "projections batch",
                extra={"worker": "projections", "events": applied, "position": self.applied_to},
            )

    def rebuild(self, names: Sequence[str] | None = None) -> int:
        """Drop the named projections' rows and replay the whole stream into them.

        One transaction: readers see the old tables until the commit swaps in the new ones.
        """
        chosen = [p for p in self.projections if names is None or p.name in names]
        unknown = set(names or ()) - {p.name for p in chosen}
        if unknown:
            raise ValueError(f"unknown projection(s): {', '.join(sorted(unknown))}")
        conn = self._connection()
        applied = 0
        with conn.transaction(), conn.cursor() as cur:
            self._lock_positions(cur, chosen)
            for projection in chosen:
                for table in projection.tables:
                    cur.execute(f"DELETE FROM {table}")
            cur.execute(
                "UPDATE projection_positions SET position = 0 WHERE name = ANY(%s)",
                ([p.name for p in chosen],),
            )
            positions = dict.fromkeys((p.name for p in chosen), 0)
            while n := self._apply_next(cur, chosen, positions):
                applied += n
                positions = self._read_positions(cur, chosen)
        return applied

    # -- reading ------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            return self._read_positions(cur, self.projections)

    def status(self) -> list[Status]:
        head = self.ledger.head()
        return [Status(name, pos, head) for name, pos in self.positions().items()]

    def write_status(self, out: TextIO) -> None:
        """Each projection's position and lag behind the stream, as a table."""
        out.write(f"{'projection':<12}{'position':>10}{'head':>10}{'lag':>8}\n")
        for s in self.status():
            out.write(f"{s.name:<12}{s.position:>10}{s.head:>10}{s.lag:>8}\n")

    def wallet_rows(self, user_ids: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        """``wallet_balances`` rows by user id (for the command line's summary)."""
        conn = self._connection()
        with conn.cursor() as cur:
            rows = fetch_by(cur, "wallet_balances", "user_id", set(user_ids))
        return {r["user_id"]: r for r in rows}

    def wait_for(self, position: int, timeout: float = 2.0) -> bool:
        """Block until every projection has applied ``position`` (read your writes).

        Woken by the batch's NOTIFY (see ``projections.position_watch``), not by polling;
        raises ``TooManyWaiters`` at once when ``max_waiters`` requests already wait.
        """
        return self._watch.wait(position, timeout)

    @property
    def waiters(self) -> int:
        """How many read-your-writes waits are in progress in this process."""
        return self._watch.waiters

    def close(self) -> None:
        self._watch.close()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    # -- plumbing -----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = open_session(self.db.url)
            conn.execute(f'SET search_path TO "{self.db.schema}"')
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _lock_positions(
        self, cur: psycopg.Cursor[Any], projections: Sequence[Projection]
    ) -> dict[str, int]:
        # Scoped to the schema: runners of other schemas in the database do not wait on it.
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, self.db.schema))
        cur.execute(
            "INSERT INTO projection_positions (name) SELECT unnest(%s::text[]) "
            "ON CONFLICT (name) DO NOTHING",
            ([p.name for p in projections],),
        )
        return self._read_positions(cur, projections, for_update=True)

    def _read_positions(
        self,
        cur: psycopg.Cursor[Any],
        projections: Sequence[Projection],
        *,
        for_update: bool = False,
    ) -> dict[str, int]:
        names = [p.name for p in projections]
        cur.execute(
            "SELECT name, position FROM projection_positions WHERE name = ANY(%s)"
            + (" FOR UPDATE" if for_update else ""),
            (names,),
        )
        found = dict(cur.fetchall())
        return {name: int(found.get(name, 0)) for name in names}

    def _apply_next(
        self,
        cur: psycopg.Cursor[Any],
        projections: Sequence[Projection],
        positions: dict[str, int],
        until: int | None = None,
    ) -> int:
        start = min(positions.values(), default=0)
        notifications = self.ledger.recorder.select_notifications(
            start, self.batch_size, stop=until, inclusive_of_start=False
        )
        if not notifications:
            return 0
        to_event = self.ledger.mapper.to_domain_event
        events = [Positioned(n.id, to_event(n), n) for n in notifications]
        last = self.applied_to = events[-1].position
        for projection in projections:
            seen = positions[projection.name]
            fresh = events if seen <= start else [p for p in events if p.position > seen]
            if fresh:
                projection.apply_batch(cur, fresh)
        cur.execute(
            "UPDATE projection_positions SET position = %s, updated_at = now() "
            "WHERE name = ANY(%s) AND position < %s",
            (last, [p.name for p in projections], last),
        )
        announce_position(cur, self.db.schema, [p.name for p in self.projections])
        return len(events)
