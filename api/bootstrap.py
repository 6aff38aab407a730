"""The one composition root: settings, persistence and the ledger, for every entry point.

Nothing connects at import time; callers build what they need and close it. Migrations own
the tables, so the application runs with the library's table creation turned off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, resolve_database_url
from application.ledger import Ledger
from application.ports import Clock
from application.settings import LedgerSettings
from projections.runner import Projector


def database_settings(schema: str | None = None) -> DatabaseSettings:
    """``DATABASE_URL`` if set, otherwise the embedded PostgreSQL under ``./.data``."""
    url = resolve_database_url()
    return DatabaseSettings.from_url(url, schema=schema or os.environ.get("DB_SCHEMA", "public"))


def ledger_env(db: DatabaseSettings, *, create_table: bool = False) -> dict[str, str]:
    env = db.eventsourcing_env(create_table=create_table)
    for key in ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW", "AGGREGATE_CACHE_MAXSIZE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def migrate(db: DatabaseSettings) -> None:
    upgrade(db)


def build_ledger(
    db: DatabaseSettings | None = None,
    *,
    clock: Clock | None = None,
    settings: LedgerSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    run_migrations: bool = True,
) -> Ledger:
    db = db or database_settings()
    if run_migrations:
        migrate(db)
    env = {**ledger_env(db), **(extra_env or {})}
    return Ledger(env, clock=clock, settings=settings or LedgerSettings.from_env())


def build_projector(db: DatabaseSettings, ledger: Ledger) -> Projector:
    return Projector(db, ledger)
