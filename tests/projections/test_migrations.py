"""The migrations own the schema: applying them again changes nothing, and the event store
they create is the one ``eventsourcing`` would create itself."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg.rows import dict_row

from adapters.migrations import alembic_config, upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from application.ledger import Ledger

EVENT_STORE = ("ledger_events", "ledger_snapshots")


@pytest.fixture
def library_schema(database_url: str) -> Iterator[DatabaseSettings]:
    """A second schema, whose event store the library creates (CREATE_TABLE on)."""
    schema = f"lib_{uuid.uuid4().hex[:12]}"
    ensure_schema(database_url, schema)
    db = DatabaseSettings.from_url(database_url, schema=schema)
    try:
        Ledger(db.eventsourcing_env(create_table=True)).close()
        yield db
    finally:
        drop_schema(database_url, schema)


def describe(db: DatabaseSettings, tables: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The schema's catalogue: tables, columns, indexes, constraints, storage options, views,
    types and functions, with the schema's own name taken out so two schemas compare."""
    where = "" if tables is None else " AND c.relname = ANY(%(tables)s)"
    queries = {
        "columns": (
            "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
            "column_default FROM information_schema.columns WHERE table_schema = %(schema)s"
            + ("" if tables is None else " AND table_name = ANY(%(tables)s)")
        ),
        "indexes": (
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s"
            + ("" if tables is None else " AND tablename = ANY(%(tables)s)")
        ),
        "constraints": (
            "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) AS def "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s" + where
        ),
        "relations": (
            "SELECT c.relname, c.relkind, c.reloptions, c.relpersistence FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s" + where
        ),
        "types": (
            "SELECT t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type "
            "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "JOIN pg_class c ON c.oid = t.typrelid JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE n.nspname = %(schema)s AND c.relkind = 'c'"
        ),
        "functions": (
            "SELECT p.proname, pg_get_function_arguments(p.oid) AS args, "
            "pg_get_function_result(p.oid) AS result, p.prosrc FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(schema)s"
        ),
        "views": (
            "SELECT viewname, definition FROM pg_views WHERE schemaname = %(schema)s"
            + ("" if tables is None else " AND false")
        ),
    }
    params = {"schema": db.schema, "tables": list(tables or ())}
    with psycopg.connect(db.url, row_factory=dict_row) as conn:
        return {
            name: sorted(
                (_anonymous(row, db.schema) for row in conn.execute(query, params).fetchall()),
                key=repr,
            )
            for name, query in queries.items()
        }


def _anonymous(row: dict[str, Any], schema: str) -> tuple[Any, ...]:
    """The row with the schema's name (quoted or not) and layout whitespace taken out: the
    library writes SQL with other spacing and quoting than the migration."""

    def clean(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.replace(f'"{schema}"', "SCHEMA").replace(schema, "SCHEMA")
        value = re.sub(r'"(\w+)"', r"\1", value)  # quoted and bare identifiers alike
        value = re.sub(r"\s+", " ", value)
        return re.sub(r"\s*([(),;])\s*", r"\1", value).strip()

    return tuple(clean(v) for v in row.values())


def alembic_revision(db: DatabaseSettings) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.url) as conn:
        return conn.execute(f'SELECT version_num FROM "{db.schema}".alembic_version').fetchall()


def test_upgrading_twice_changes_nothing(pg_settings: DatabaseSettings) -> None:
    upgrade(pg_settings)
    once, revision = describe(pg_settings), alembic_revision(pg_settings)
    upgrade(pg_settings)
    assert describe(pg_settings) == once
    head = ScriptDirectory.from_config(alembic_config(pg_settings)).get_current_head()
    assert alembic_revision(pg_settings) == revision == [(head,)]
    tables = {row[0] for row in once["columns"]}
    assert {"ledger_events", "wallet_balances", "journal_postings"} <= tables


def test_the_migrated_event_store_is_the_one_the_library_creates(
    pg_settings: DatabaseSettings, library_schema: DatabaseSettings
) -> None:
    upgrade(pg_settings)
    migrated = describe(pg_settings, EVENT_STORE)
    created = describe(library_schema, EVENT_STORE)
    empty = [part for part, rows in created.items() if not rows and part != "views"]
    assert empty == [], "nothing to compare"
    for part in created:
        assert migrated[part] == created[part], f"{part} differ"
    # The ledger runs on the migrated tables with the library's table creation off.
    ledger = Ledger(pg_settings.eventsourcing_env(create_table=False))
    try:
        assert ledger.head() == 0
    finally:
        ledger.close()
