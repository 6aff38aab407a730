"""The one composition root: settings, persistence and the ledger, for every entry point.

Nothing connects at import time; callers build what they need and close it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from adapters.persistence import DatabaseSettings, ensure_schema, resolve_database_url
from application.ledger import Ledger
from application.ports import Clock
from application.settings import LedgerSettings


def database_settings(schema: str | None = None) -> DatabaseSettings:
    """``DATABASE_URL`` if set, otherwise the embedded PostgreSQL under ``./.data``."""
    url = resolve_database_url()
    return DatabaseSettings.from_url(url, schema=schema or os.environ.get("DB_SCHEMA", "public"))


def ledger_env(db: DatabaseSettings, *, create_table: bool = True) -> dict[str, str]:
    env = db.eventsourcing_env(create_table=create_table)
    for key in ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW", "AGGREGATE_CACHE_MAXSIZE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def build_ledger(
    db: DatabaseSettings | None = None,
    *,
    clock: Clock | None = None,
    settings: LedgerSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Ledger:
    db = db or database_settings()
    ensure_schema(db.url, db.schema)
    env = {**ledger_env(db), **(extra_env or {})}
    return Ledger(env, clock=clock, settings=settings or LedgerSettings.from_env())
