"""The simulated Stripe's money: what it charged, refunded and transferred (rules §6).

In the embedded default, ``peerpush reconcile`` reconciles against the simulated Stripe, so
the simulated Stripe keeps, like Stripe, the charges (by PaymentIntent), refunds and transfers
it made, shared by every process of the service. ``(kind, stripe_id)`` is the key: ids are
derived from idempotency keys, so the same key records one object. Nothing of the ledger
reads this table; it stands in for Stripe's own records and never exists in production.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE simulated_stripe_objects ("
        "kind text NOT NULL CHECK (kind IN ('charges', 'refunds', 'transfers')), "
        "stripe_id text NOT NULL, "
        "cents bigint NOT NULL, "
        "payment_intent_id text, "
        "destination text, "
        "transfer_group text, "
        "metadata jsonb NOT NULL DEFAULT '{}'::jsonb, "
        "created timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (kind, stripe_id))"
    )
    op.execute(
        "CREATE INDEX simulated_stripe_objects_created_idx ON simulated_stripe_objects (created)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE simulated_stripe_objects")
