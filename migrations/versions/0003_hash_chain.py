"""The tamper-evidence hash chain (rules §8): its running head and a checkpoint every 1,000
positions, kept by ``projections/chain.py``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE chain_head (
        id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        position bigint NOT NULL,
        events bigint NOT NULL,
        hash bytea NOT NULL CHECK (length(hash) = 32)
    )""",
    """CREATE TABLE chain_checkpoints (
        position bigint PRIMARY KEY CHECK (position > 0 AND position % 1000 = 0),
        last_event bigint NOT NULL CHECK (last_event <= position),
        events bigint NOT NULL,
        hash bytea NOT NULL CHECK (length(hash) = 32)
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chain_checkpoints")
    op.execute("DROP TABLE IF EXISTS chain_head")
    op.execute("DELETE FROM projection_positions WHERE name = 'chain'")
