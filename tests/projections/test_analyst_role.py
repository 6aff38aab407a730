"""The analysts' role reads the read models and nothing with events or personal data in it
(migration 0013, docs/read-models.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from adapters.migrations import downgrade, upgrade
from adapters.persistence import DatabaseSettings
from domain.aggregate import Cause
from tests.projections.support import Projected, connect

CLOSED = (
    "ledger_events",
    "ledger_snapshots",
    "users",
    "refresh_tokens",
    "rate_limit_hits",
    "idempotency_keys",
    "checkout_sessions",
    "simulated_stripe_objects",
    "test_clock",
    "alembic_version",
)


@pytest.fixture
def as_analyst(projected: Projected) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A connection of the test's superuser, switched to the analyst role for everything."""
    with psycopg.connect(projected.db.url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f'SET search_path TO "{projected.db.schema}"')
        conn.execute("SET ROLE analyst")
        yield conn


def denied(conn: psycopg.Connection[dict[str, Any]], sql: str) -> bool:
    try:
        conn.execute(sql).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_an_analyst_reads_balances_revenue_and_the_journal(
    projected: Projected, as_analyst: psycopg.Connection[dict[str, Any]]
) -> None:
    user = uuid4()
    projected.ledger.credit_deposit(user, "pi_analyst", 1_500, Cause.stripe("evt_1"))
    projected.projector.catch_up()

    row = as_analyst.execute("SELECT sum(deposited) AS deposited FROM wallet_balances").fetchone()
    assert row is not None and row["deposited"] == 1_500
    balances = as_analyst.execute("SELECT sum(balance) AS total FROM journal_balances").fetchone()
    assert balances is not None and balances["total"] == 0
    assert as_analyst.execute("SELECT * FROM revenue_daily").fetchall() == []
    summary = as_analyst.execute(
        "SELECT challenge_id, status, pool FROM challenge_summaries"
    ).fetchall()
    assert summary == []


def test_an_analyst_cannot_read_events_users_or_invite_codes(
    as_analyst: psycopg.Connection[dict[str, Any]],
) -> None:
    for table in CLOSED:
        assert denied(as_analyst, f"SELECT * FROM {table} LIMIT 1"), table
    assert denied(as_analyst, "SELECT invite_code FROM challenge_summaries")
    assert denied(as_analyst, "SELECT * FROM challenge_summaries")


def test_an_analyst_cannot_change_a_read_model(
    as_analyst: psycopg.Connection[dict[str, Any]],
) -> None:
    assert denied(as_analyst, "UPDATE projection_positions SET position = 0 RETURNING name")
    assert denied(as_analyst, "DELETE FROM wallet_balances RETURNING wallet_id")


def test_every_table_is_either_granted_or_deliberately_closed(projected: Projected) -> None:
    """A new table must be classified here: granted as a read model, or kept closed."""
    with connect(projected.db) as conn:
        rows = conn.execute(
            "SELECT table_name, "
            "has_table_privilege('analyst', format('%%I.%%I', table_schema, table_name), "
            "'SELECT') AS granted "
            "FROM information_schema.tables WHERE table_schema = %s",
            (projected.db.schema,),
        ).fetchall()
    closed = {r["table_name"] for r in rows if not r["granted"]}
    assert closed == {*CLOSED, "challenge_summaries"}


def test_the_role_survives_a_second_schema_and_a_downgrade(
    projected: Projected, database_url: str
) -> None:
    """The role is the cluster's: creating it again is a no-op, and a downgrade takes back
    only its own schema's grants."""
    other = DatabaseSettings.from_url(database_url, schema=projected.db.schema + "_b")
    with connect(projected.db) as conn:
        conn.execute(f'CREATE SCHEMA "{other.schema}"')
    try:
        upgrade(other)
        downgrade(other, "0012")
        with connect(projected.db) as conn:
            row = conn.execute(
                "SELECT has_table_privilege('analyst', %s, 'SELECT') AS here, "
                "has_table_privilege('analyst', %s, 'SELECT') AS there",
                (
                    f'"{projected.db.schema}".wallet_balances',
                    f'"{other.schema}".wallet_balances',
                ),
            ).fetchone()
        assert row == {"here": True, "there": False}
    finally:
        with connect(projected.db) as conn:
            conn.execute(f'DROP SCHEMA "{other.schema}" CASCADE')
