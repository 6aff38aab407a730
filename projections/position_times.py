"""Which stream position "as of a time" means: the (position, event time) index (rules §8).

Events carry business time from the application clock, read before the save, so commit order
and clock order can differ: a later position may carry an earlier time. "As of T" is the
stream up to the last position whose event time is at most T, even when an earlier position
carries a time after T.

The index keeps one row per position with the event's time and ``floor_time``, the earliest
event time at or after that position. Floors never decrease along the positions, so the
positions whose floor is at most T are exactly the positions up to the answer: the last row
whose ``floor_time`` is at most T, found by one descent of the ``(floor_time, position)``
index. The API and the audit both ask :func:`position_at`; nothing scans the stream per
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from projections.base import Positioned, copy_rows

NAME = "position_times"
COLUMNS = ("position", "event_time", "floor_time")

POSITION_AT = """
SELECT
    (SELECT coalesce(max(position), 0) FROM projection_positions WHERE name = 'position_times'),
    (SELECT coalesce(max(notification_id), 0) FROM ledger_events),
    (SELECT position FROM position_times WHERE floor_time <= %(at)s
     ORDER BY floor_time DESC, position DESC LIMIT 1)
"""
"""The index's position, the stream's head and the answer, read in one statement (so one
snapshot: the index cannot move between the three)."""


class IndexBehind(Exception):
    """The index has not yet applied every event up to ``head``: an event it has not seen
    could carry a time at or before the one asked about, so it cannot answer yet."""

    def __init__(self, indexed: int, head: int) -> None:
        super().__init__(
            f"the position_times index is at position {indexed}, the stream at {head}: "
            "let the projection worker catch up (peerpush projections run) and ask again"
        )
        self.indexed = indexed
        self.head = head


def floors(events: Sequence[Positioned]) -> list[tuple[int, datetime, datetime]]:
    """``(position, event time, earliest time from it to the batch's end)`` for each event."""
    rows: list[tuple[int, datetime, datetime]] = []
    floor: datetime | None = None
    for p in reversed(events):
        floor = p.at if floor is None or p.at < floor else floor
        rows.append((p.position, p.at, floor))
    rows.reverse()
    return rows


class PositionTimesProjection:
    """Keeps ``position_times`` in step with the stream: every event, whatever its type."""

    name = NAME
    tables = ("position_times",)

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        if not events:
            return
        rows = floors(events)
        first, earliest = rows[0][0], rows[0][2]
        # Earlier positions whose floor is later than this batch's earliest time now have an
        # event at or after them that early. Only the stream's tail qualifies (as far back as
        # clocks disagree), and the floor index finds it without reading the rest.
        cur.execute(
            "UPDATE position_times SET floor_time = %s WHERE floor_time > %s AND position < %s",
            (earliest, earliest, first),
        )
        copy_rows(cur, "position_times", COLUMNS, rows)


def position_at(conn: psycopg.Connection[Any], at: datetime, *, covering: int | None = None) -> int:
    """The last stream position whose event time is at most ``at`` (0: none), from the index.

    The index must have applied the stream up to its head as this statement sees it, or up to
    ``covering`` when given (the head a caller already waited for, while newer events keep
    arriving); otherwise :class:`IndexBehind`. The answer then covers every event committed
    before the question, and possibly a few committed since.
    """
    if at.utcoffset() is None:
        raise ValueError("the time must be timezone-aware")
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(POSITION_AT, {"at": at})
        row = cur.fetchone()
    assert row is not None
    indexed, head, found = int(row[0]), int(row[1]), row[2]
    needed = head if covering is None else covering
    if indexed < needed:
        raise IndexBehind(indexed, needed)
    return int(found or 0)
