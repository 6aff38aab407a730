"""Each user's link to their Stripe Connect Express account, in the ``users`` table.

The link is account data, not ledger history: events name cash-outs, never the account
(rules §2). ``payouts_enabled`` is what Stripe's latest ``account.updated`` said.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from application.ports import PayoutAccount


class PgPayoutAccounts:
    """The payout-account columns of ``users`` (migration 0011), through the users' pool."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[dict[str, Any]]]) -> None:
        self.pool = pool

    def payout_account(self, user_id: str) -> PayoutAccount | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT payout_account_id, payouts_enabled FROM users WHERE id = %s",
                (UUID(str(user_id)),),
            ).fetchone()
        if row is None or row["payout_account_id"] is None:
            return None
        return PayoutAccount(str(row["payout_account_id"]), bool(row["payouts_enabled"]))

    def link_payout_account(self, user_id: str, account_id: str) -> None:
        """Link the account once: a user keeps the first account created for them."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE users SET payout_account_id = %s "
                "WHERE id = %s AND payout_account_id IS NULL",
                (account_id, UUID(str(user_id))),
            )

    def record_payouts_enabled(self, account_id: str, enabled: bool, at: datetime) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE users SET payouts_enabled = %s, payout_account_updated_at = %s "
                "WHERE payout_account_id = %s RETURNING id",
                (enabled, at, account_id),
            ).fetchone()
        return None if row is None else str(row["id"])
