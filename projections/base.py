"""What a projection is: tables, the events it reads, and a batch apply.

A projection turns a batch of events into writes on its own tables, inside the transaction
the runner opens; the runner records the projection's position in that same transaction, so
every event is applied exactly once (a crash rolls back both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg


@dataclass(frozen=True, slots=True)
class Positioned:
    """A decoded event and its position in the stream (and, from the runner, the stored
    notification it was decoded from: the hash chain needs its exact bytes)."""

    position: int
    event: Any
    notification: Any = None

    @property
    def topic(self) -> str:
        return str(type(self.event).TOPIC)

    @property
    def originator_id(self) -> UUID:
        return self.event.originator_id  # type: ignore[no-any-return]  # the library types ids loosely; ours are UUIDs

    @property
    def at(self) -> datetime:
        return self.event.timestamp  # type: ignore[no-any-return]  # every domain event carries an aware timestamp


_MATCHES: dict[str, dict[type[Any], bool]] = {}


def with_topic_prefix(events: Sequence[Positioned], prefix: str) -> list[Positioned]:
    """The events whose topic starts with ``prefix``, in order (one check per event class)."""
    known = _MATCHES.setdefault(prefix, {})
    classes = {type(p.event) for p in events}
    for cls in classes - known.keys():
        known[cls] = str(cls.TOPIC).startswith(prefix)
    wanted = {cls for cls in classes if known[cls]}
    if len(wanted) == len(classes):
        return list(events)
    return [p for p in events if type(p.event) in wanted]


def uuid_order(key: UUID) -> int:
    """Sort key giving UUIDs their own order (``UUID.__lt__`` compares ``.int``), but with
    C-level integer comparisons."""
    return key.int


def by_class(handlers: dict[type[Any], Any], cls: type[Any]) -> Any:
    """The entry for ``cls`` or its nearest registered base, like an ``isinstance`` chain,
    but one dict lookup per event (the answer is cached; None: no entry)."""
    try:
        return handlers[cls]
    except KeyError:
        found = next((handlers[b] for b in cls.__mro__[1:] if b in handlers), None)
        handlers[cls] = found
        return found


class Projection(Protocol):
    # Read-only members, so a projection's fixed-length tuple of tables fits the protocol.
    @property
    def name(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]: ...

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        """Write what ``events`` change, in order; called inside the runner's transaction."""


STAGED_UPSERT_ROWS = 64
"""From this many rows on, :func:`upsert` stages them with COPY and merges in one statement."""


def upsert(
    cur: psycopg.Cursor[Any], table: str, key: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert or replace whole rows (the batch computed their new state).

    A few rows (a live batch) go in one ``executemany``; many rows (catch-up, rebuild) are
    copied into a temporary table and merged with one ``INSERT ... SELECT ... ON CONFLICT``,
    which costs one round trip instead of one statement per row. Same result either way: the
    keys of ``rows`` are distinct, so every row is inserted or replaces the stored one.
    """
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    if len(rows) < STAGED_UPSERT_ROWS:
        cur.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('%s' for _ in columns)}) {conflict}",
            [tuple(r[c] for c in columns) for r in rows],
        )
        return
    stage = f"_stage_{table}"
    # Column types only (no constraints, no defaults): the target checks the merged rows.
    cur.execute(
        f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {names} FROM {table} WITH NO DATA"
    )
    with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
    cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} {conflict}")
    cur.execute(f"DROP TABLE {stage}")


def copy_rows(
    cur: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Append rows with COPY: the fast path for insert-only tables."""
    if not rows:
        return
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def fetch_by(
    cur: psycopg.Cursor[Any], table: str, column: str, keys: set[Any]
) -> list[dict[str, Any]]:
    """Current rows for the keys a batch touches (one query per table per batch)."""
    if not keys:
        return []
    cur.execute(f"SELECT * FROM {table} WHERE {column} = ANY(%s)", (list(keys),))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
