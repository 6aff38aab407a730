"""Closed wallets and unclaimed tokens in the wallet read model (rules §7, §8).

A wallet is closed when its owner is erased; tokens that reach it later and that no refund
returns move to the platform's ``unclaimed`` account. ``wallet_balances`` shows both, so the
read models' conservation sums match the event stream's.

Wallet snapshots taken before (class version 1) lack what a wallet now remembers of its
write-offs (to reverse an external refund that fails later); they are a cache, so every
Wallet snapshot is dropped and the next load replays the wallet's events.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE wallet_balances "
        "ADD COLUMN unclaimed bigint NOT NULL DEFAULT 0 CHECK (unclaimed >= 0), "
        "ADD COLUMN closed boolean NOT NULL DEFAULT false"
    )
    op.execute(
        "DELETE FROM ledger_snapshots WHERE topic IN ('peerpush:Wallet', 'domain.wallet:Wallet')"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE wallet_balances DROP COLUMN unclaimed, DROP COLUMN closed")
