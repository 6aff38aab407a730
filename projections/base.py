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
    """A decoded event and its position in the stream."""

    position: int
    event: Any

    @property
    def topic(self) -> str:
        return str(type(self.event).TOPIC)

    @property
    def originator_id(self) -> UUID:
        return self.event.originator_id  # type: ignore[no-any-return]

    @property
    def at(self) -> datetime:
        return self.event.timestamp  # type: ignore[no-any-return]


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        """Write what ``events`` change, in order; called inside the runner's transaction."""


def upsert(
    cur: psycopg.Cursor[Any], table: str, key: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert or replace whole rows (the batch computed their new state)."""
    if not rows:
        return
    columns = list(rows[0])
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('%s' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )
    cur.executemany(statement, [tuple(r[c] for c in columns) for r in rows])


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
