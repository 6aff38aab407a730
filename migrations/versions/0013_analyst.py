"""The analysts' read-only role: SELECT on the read models, nothing else (rules §8).

``analyst`` is a cluster-wide role (NOLOGIN): it is created once, by whichever schema's
migration runs first, and every schema's migration grants it SELECT on that schema's read-model
tables and views. It is given no event table, no users (nor their payout accounts), refresh
tokens, rate-limit addresses, idempotency responses, checkout sessions or simulated Stripe
objects, and not the invite codes of ``challenge_summaries`` (a private challenge's key).
People log in as roles of their own that are members of it
(``CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE analyst``; see docs/read-models.md).

Where the migrating user may not create roles, a DBA creates ``analyst`` first (the statement
below); the migration then only grants. Without the role it warns and grants nothing.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROLE = "analyst"

# The read models (docs/read-models.md), whole. Anything not named here stays closed to analysts.
READ_MODELS = (
    "projection_positions",
    "wallet_balances",
    "wallet_lots",
    "wallet_transactions",
    "challenge_participants",
    "revenue_entries",
    "revenue_daily",
    "revenue_by_challenge",
    "journal_entries",
    "journal_postings",
    "journal_wallet_owners",
    "journal_balances",
    "chain_head",
    "chain_checkpoints",
    "position_times",
)
# Granted column by column: every column but these.
PARTLY = {"challenge_summaries": ("invite_code",)}

# Two schemas migrating at once may both find the role missing: the loser's CREATE fails on the
# catalogue's unique index and is ignored. A user without CREATEROLE gets a warning instead.
CREATE_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
    BEGIN
      CREATE ROLE {ROLE} NOLOGIN;
      ALTER ROLE {ROLE} SET default_transaction_read_only = on;
      ALTER ROLE {ROLE} SET statement_timeout = '60s';
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN NULL;
      WHEN insufficient_privilege THEN
        RAISE WARNING 'role {ROLE} not created (no CREATEROLE): ask a DBA to run '
          '"CREATE ROLE {ROLE} NOLOGIN" and migrate again from 0012';
    END;
  END IF;
END $$;
"""


def _grants(grant: bool) -> str:
    verb, word = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    whole = ", ".join(f"'{t}'" for t in READ_MODELS)
    blocks = [
        f"EXECUTE format('{verb} USAGE ON SCHEMA %I {word} {ROLE}', current_schema());",
        f"FOREACH t IN ARRAY ARRAY[{whole}] LOOP "
        f"EXECUTE format('{verb} SELECT ON %I.%I {word} {ROLE}', current_schema(), t); "
        "END LOOP;",
    ]
    for table, hidden in PARTLY.items():
        hide = ", ".join(f"'{c}'" for c in hidden)
        if grant:
            blocks.append(
                "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) "
                "INTO cols FROM information_schema.columns "
                f"WHERE table_schema = current_schema() AND table_name = '{table}' "
                f"AND column_name NOT IN ({hide}); "
                f"EXECUTE format('GRANT SELECT (%s) ON %I.%I TO {ROLE}', cols, "
                f"current_schema(), '{table}');"
            )
        else:
            blocks.append(
                f"EXECUTE format('REVOKE SELECT ON %I.%I FROM {ROLE}', current_schema(), "
                f"'{table}');"
            )
    body = "\n    ".join(blocks)
    return f"""
DO $$
DECLARE t text; cols text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
    {body}
  ELSE
    RAISE WARNING 'role {ROLE} does not exist: no grants made';
  END IF;
END $$;
"""


def upgrade() -> None:
    op.execute(CREATE_ROLE)
    op.execute(_grants(grant=True))


def downgrade() -> None:
    # The role is the cluster's, shared by every schema and database: only this schema's
    # grants are taken back.
    op.execute(_grants(grant=False))
