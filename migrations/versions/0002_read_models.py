"""Read models: balances, lots, transactions, challenges, revenue, journal, and the positions
their projectors have reached. Documented column by column in docs/read-models.md.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKENS = "bigint NOT NULL DEFAULT 0"

STATEMENTS = [
    """CREATE TABLE projection_positions (
        name text PRIMARY KEY,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    f"""CREATE TABLE wallet_balances (
        wallet_id uuid PRIMARY KEY,
        user_id uuid NOT NULL UNIQUE,
        available {TOKENS}, frozen {TOKENS}, staked {TOKENS},
        withdrawal_pending {TOKENS}, cashout_pending {TOKENS},
        deposited {TOKENS}, refunded {TOKENS}, cashed_out {TOKENS}, won {TOKENS},
        forfeited {TOKENS}, penalised {TOKENS}, written_off {TOKENS},
        adjusted_in {TOKENS}, adjusted_out {TOKENS},
        lot_count integer NOT NULL DEFAULT 0,
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        last_position bigint NOT NULL,
        CHECK (available >= 0 AND frozen >= 0 AND staked >= 0 AND withdrawal_pending >= 0)
    )""",
    """CREATE TABLE wallet_lots (
        lot_id uuid PRIMARY KEY,
        wallet_id uuid NOT NULL,
        user_id uuid NOT NULL,
        seq integer NOT NULL,
        source text NOT NULL CHECK (source IN ('deposit', 'payout', 'adjustment')),
        amount bigint NOT NULL,
        remaining bigint NOT NULL,
        created_at timestamptz NOT NULL,
        refundable_until timestamptz,
        payment_intent_id text,
        cents_paid bigint,
        token_price integer,
        frozen boolean NOT NULL DEFAULT false,
        written_off boolean NOT NULL DEFAULT false,
        dispute_loss bigint NOT NULL DEFAULT 0,
        last_position bigint NOT NULL,
        UNIQUE (wallet_id, seq),
        CHECK (remaining >= 0 AND remaining <= amount)
    )""",
    """CREATE TABLE wallet_transactions (
        position bigint PRIMARY KEY,
        wallet_id uuid NOT NULL,
        user_id uuid NOT NULL,
        type text NOT NULL,
        amount bigint NOT NULL,
        tokens bigint NOT NULL,
        available_after bigint NOT NULL,
        challenge_id uuid,
        withdrawal_id uuid,
        payment_intent_id text,
        adjustment_id uuid,
        lot_id uuid,
        reference text,
        actor text NOT NULL,
        request_id text NOT NULL,
        event_time timestamptz NOT NULL
    )""",
    "CREATE INDEX wallet_transactions_wallet_idx ON wallet_transactions (wallet_id, position DESC)",
    "CREATE INDEX wallet_transactions_time_idx ON wallet_transactions (wallet_id, event_time)",
    f"""CREATE TABLE challenge_summaries (
        challenge_id uuid PRIMARY KEY,
        owner_id uuid NOT NULL,
        name text NOT NULL,
        visibility text NOT NULL,
        invite_code text NOT NULL UNIQUE,
        status text NOT NULL CHECK (status IN ('draft', 'active', 'settled', 'cancelled')),
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        entry_stake bigint NOT NULL,
        max_participants integer NOT NULL,
        frequency text NOT NULL,
        timezone text NOT NULL,
        verification_mode text NOT NULL,
        penalty_tokens bigint NOT NULL,
        participants integer NOT NULL DEFAULT 0,
        stakes {TOKENS}, penalties {TOKENS}, pool {TOKENS},
        finishers integer NOT NULL DEFAULT 0,
        fee {TOKENS}, forfeited {TOKENS}, returned {TOKENS}, paid_out {TOKENS},
        outcome text CHECK (outcome IN ('paid_out', 'forfeited', 'cancelled')),
        created_at timestamptz NOT NULL,
        published_at timestamptz,
        closed_at timestamptz,
        last_position bigint NOT NULL
    )""",
    "CREATE INDEX challenge_summaries_owner_idx ON challenge_summaries (owner_id)",
    "CREATE INDEX challenge_summaries_status_idx ON challenge_summaries (status, ends_at)",
    f"""CREATE TABLE challenge_participants (
        challenge_id uuid NOT NULL,
        user_id uuid NOT NULL,
        timezone text NOT NULL,
        stake {TOKENS},
        penalties {TOKENS},
        joined_at timestamptz NOT NULL,
        expected integer,
        accepted integer,
        finished boolean,
        share bigint,
        PRIMARY KEY (challenge_id, user_id)
    )""",
    "CREATE INDEX challenge_participants_user_idx ON challenge_participants (user_id)",
    """CREATE TABLE revenue_entries (
        position bigint NOT NULL,
        line integer NOT NULL,
        kind text NOT NULL
            CHECK (kind IN ('fee', 'forfeit', 'dispute_loss', 'dispute_recovery')),
        challenge_id uuid,
        tokens bigint NOT NULL,
        day date NOT NULL,
        event_time timestamptz NOT NULL,
        PRIMARY KEY (position, line)
    )""",
    "CREATE INDEX revenue_entries_day_idx ON revenue_entries (day)",
    """CREATE VIEW revenue_daily AS
        SELECT day,
               coalesce(sum(tokens) FILTER (WHERE kind = 'forfeit'), 0) AS forfeits,
               coalesce(sum(tokens) FILTER (WHERE kind = 'fee'), 0) AS fees,
               coalesce(-sum(tokens) FILTER (WHERE kind IN ('dispute_loss', 'dispute_recovery')), 0)
                   AS dispute_losses,
               count(*) FILTER (WHERE kind = 'forfeit') AS failed_challenges,
               coalesce(sum(tokens) FILTER (WHERE kind = 'forfeit'), 0)
                   / nullif(count(*) FILTER (WHERE kind = 'forfeit'), 0) AS average_forfeit,
               sum(tokens) AS net
        FROM revenue_entries GROUP BY day""",
    """CREATE VIEW revenue_by_challenge AS
        SELECT challenge_id, min(day) AS day,
               coalesce(sum(tokens) FILTER (WHERE kind = 'forfeit'), 0) AS forfeits,
               coalesce(sum(tokens) FILTER (WHERE kind = 'fee'), 0) AS fees,
               bool_or(kind = 'forfeit') AS failed,
               sum(tokens) AS net
        FROM revenue_entries WHERE challenge_id IS NOT NULL GROUP BY challenge_id""",
    """CREATE TABLE journal_entries (
        position bigint PRIMARY KEY,
        event_type text NOT NULL,
        originator_id uuid NOT NULL,
        actor text NOT NULL,
        request_id text NOT NULL,
        event_time timestamptz NOT NULL
    )""",
    """CREATE TABLE journal_postings (
        position bigint NOT NULL,
        account text NOT NULL,
        amount bigint NOT NULL,
        PRIMARY KEY (position, account)
    )""",
    "CREATE INDEX journal_postings_account_idx ON journal_postings (account)",
    """CREATE TABLE journal_wallet_owners (
        wallet_id uuid PRIMARY KEY,
        user_id uuid NOT NULL
    )""",
    """CREATE VIEW journal_balances AS
        SELECT account, sum(amount) AS balance FROM journal_postings GROUP BY account""",
]

TABLES = [
    "journal_wallet_owners",
    "journal_postings",
    "journal_entries",
    "revenue_entries",
    "challenge_participants",
    "challenge_summaries",
    "wallet_transactions",
    "wallet_lots",
    "wallet_balances",
    "projection_positions",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for view in ("journal_balances", "revenue_by_challenge", "revenue_daily"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
