"""Stripe Connect payout accounts, and cash-outs in the wallet read models (rules §2, §6).

A user's link to their Connect Express account lives in ``users`` (personal data stays out of
the event stream: events name only the cash-out, never the account). ``payouts_enabled`` is
what Stripe's last ``account.updated`` said. ``wallet_transactions.cashout_id`` names the
cash-out a row belongs to, as ``withdrawal_id`` does for withdrawals.

Wallet snapshots of class version 2 lack the cash-outs; they are upcast on load, so nothing
is dropped here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users "
        "ADD COLUMN payout_account_id text UNIQUE, "
        "ADD COLUMN payouts_enabled boolean NOT NULL DEFAULT false, "
        "ADD COLUMN payout_account_updated_at timestamptz"
    )
    op.execute("ALTER TABLE wallet_transactions ADD COLUMN cashout_id uuid")
    op.execute(
        "CREATE INDEX wallet_transactions_cashout_idx ON wallet_transactions (user_id, cashout_id) "
        "WHERE cashout_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX wallet_transactions_cashout_idx")
    op.execute("ALTER TABLE wallet_transactions DROP COLUMN cashout_id")
    op.execute(
        "ALTER TABLE users DROP COLUMN payout_account_id, DROP COLUMN payouts_enabled, "
        "DROP COLUMN payout_account_updated_at"
    )
