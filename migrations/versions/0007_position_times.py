"""The (position, event time) index that answers "as of a time" (rules §8), kept by
``projections/position_times.py``.

One row per stream position: the event's own time, and ``floor_time``, the earliest event time
at or after that position. ``floor_time`` never decreases along the positions, so "the last
position whose event time is at most T" is the last row whose ``floor_time`` is at most T: one
descent of the ``(floor_time, position)`` index, whatever the order of business times in the
stream. A new event earlier than some floors lowers them (only the rows at the stream's end, as
far back as the clocks disagree).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE position_times (
        position bigint PRIMARY KEY CHECK (position > 0),
        event_time timestamptz NOT NULL,
        floor_time timestamptz NOT NULL,
        CHECK (floor_time <= event_time)
    )""",
    "CREATE INDEX position_times_floor_idx ON position_times (floor_time, position)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS position_times")
    op.execute("DELETE FROM projection_positions WHERE name = 'position_times'")
