"""Stripe Checkout Sessions opened for deposits (rules §2, §6).

The daily deposit limit counts still-open sessions next to credited deposits, and every API
process must see the same sessions, so they live here rather than in a process's memory. The
ledger's truth about money stays in the event stream: a row here never credits anything.

``created_at`` is business time (the application clock), like the rolling 24 h it is counted
in. ``deposit_id`` is our id for the checkout, also in the PaymentIntent's metadata, so either
webhook (session completed, PaymentIntent succeeded) can close the session.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE checkout_sessions (
        session_id text PRIMARY KEY,
        deposit_id uuid NOT NULL UNIQUE,
        user_id uuid NOT NULL,
        tokens bigint NOT NULL CHECK (tokens > 0),
        cents bigint NOT NULL CHECK (cents > 0),
        status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'expired')),
        checkout_url text NOT NULL,
        success_url text NOT NULL,
        cancel_url text NOT NULL,
        payment_intent_id text,
        created_at timestamptz NOT NULL,
        finished_at timestamptz
    )""",
    "CREATE INDEX checkout_sessions_user_idx ON checkout_sessions (user_id, created_at)",
    "CREATE INDEX checkout_sessions_payment_intent_idx ON checkout_sessions (payment_intent_id)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS checkout_sessions")
