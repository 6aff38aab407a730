"""An ``Idempotency-Key``'s record names its operation (rules §7).

``operation_id`` is drawn at random when the key is first claimed and reused by every retry of
that key, so whatever happened to an earlier attempt (an error, a lost commit, a takeover), a
retry names the same withdrawal, adjustment, checkout or challenge. Rows stored before this
revision have none: the ones already done keep replaying their responses; a running one gets an
id when it is taken over.

A failed attempt no longer deletes the record: it becomes ``released`` (keeping its id), and
the next request with the key runs again with that id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN operation_id uuid")
    op.execute("ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_state_check")
    op.execute(
        "ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_state_check "
        "CHECK (state IN ('running', 'released', 'done'))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE state = 'released'")
    op.execute("ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_state_check")
    op.execute(
        "ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_state_check "
        "CHECK (state IN ('running', 'done'))"
    )
    op.execute("ALTER TABLE idempotency_keys DROP COLUMN operation_id")
