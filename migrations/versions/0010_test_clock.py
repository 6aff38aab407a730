"""The test clock's offset, shared by every process of a development deployment (rules §9).

Business time on a test clock is the wall clock plus this offset. Kept in PostgreSQL (not in
each process's memory) so an advance made through one API process is the time of every other
API process and of every worker. One row; production never reads it (its clock is the wall
clock).

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE test_clock ("
        "only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
        "offset_us bigint NOT NULL DEFAULT 0 CHECK (offset_us >= 0))"
    )
    op.execute("INSERT INTO test_clock (only_row, offset_us) VALUES (true, 0)")


def downgrade() -> None:
    op.execute("DROP TABLE test_clock")
