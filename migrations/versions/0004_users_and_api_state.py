"""Users and the HTTP API's shared state (rules §7): accounts, refresh-token families, rate-limit
windows and idempotency keys. Every API process reads and writes these, so none of it lives in
a process's memory.

Personal data (email, username, password hash) lives only in ``users``, never in events; erasing
a user nulls those columns and stamps ``erased_at``, leaving the id the ledger refers to.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE users (
        id uuid PRIMARY KEY,
        email text CHECK (length(email) BETWEEN 3 AND 254),
        username text CHECK (username ~ '^[a-z0-9_]{3,20}$'),
        password_hash text,
        role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
        created_at timestamptz NOT NULL DEFAULT now(),
        erased_at timestamptz,
        CHECK ((erased_at IS NULL) = (
            email IS NOT NULL AND username IS NOT NULL AND password_hash IS NOT NULL
        ))
    )""",
    # Case-insensitive: "Ann@X.io" and "ann@x.io" are one address.
    "CREATE UNIQUE INDEX users_email_key ON users (lower(email))",
    "CREATE UNIQUE INDEX users_username_key ON users (username)",
    """CREATE TABLE refresh_tokens (
        jti uuid PRIMARY KEY,
        family uuid NOT NULL,
        user_id uuid NOT NULL REFERENCES users (id),
        issued_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        revoked_at timestamptz
    )""",
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family)",
    "CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id)",
    "CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at)",
    # One fixed window per (bucket, key), starting at its first hit.
    """CREATE TABLE rate_limit_hits (
        bucket text NOT NULL,
        key text NOT NULL,
        window_start timestamptz NOT NULL,
        count integer NOT NULL CHECK (count > 0),
        PRIMARY KEY (bucket, key)
    )""",
    "CREATE INDEX rate_limit_hits_window ON rate_limit_hits (window_start)",
    """CREATE TABLE idempotency_keys (
        user_id uuid NOT NULL,
        route text NOT NULL,
        key text NOT NULL,
        request_hash text NOT NULL,
        state text NOT NULL CHECK (state IN ('running', 'done')),
        claim uuid NOT NULL,
        status integer,
        body jsonb,
        created_at timestamptz NOT NULL,
        claimed_at timestamptz NOT NULL,
        completed_at timestamptz,
        PRIMARY KEY (user_id, route, key),
        CHECK ((state = 'done') = (status IS NOT NULL AND completed_at IS NOT NULL))
    )""",
    "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
]

TABLES = ["idempotency_keys", "rate_limit_hits", "refresh_tokens", "users"]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
