"""Where the ledger's events are: ``DATABASE_URL`` or the embedded PostgreSQL, and the
``eventsourcing`` environment over it (pool and cache sizes, the recorder that stores an
idempotent response with its events)."""

from __future__ import annotations

from adapters.atomic_responses import RECORDER_TOPIC
from adapters.persistence import DatabaseSettings, resolve_database_url
from adapters.settings import StoreSettings


def database_settings(settings: StoreSettings | None = None) -> DatabaseSettings:
    """``DATABASE_URL`` if set, otherwise the embedded PostgreSQL under ``DATA_DIR``.

    Without ``settings`` (the read-only auditor commands, tools) the environment is read here,
    without requiring ``ENV``.
    """
    settings = settings or StoreSettings.from_env()
    url = resolve_database_url(settings.database_url, settings.data_dir)
    return DatabaseSettings.from_url(url, schema=settings.db_schema)


def ledger_env(
    db: DatabaseSettings, settings: StoreSettings | None = None, *, create_table: bool = False
) -> dict[str, str]:
    """The ``eventsourcing`` environment of the ledger: the database, pool and cache sizes."""
    settings = settings or StoreSettings.from_env()
    env = db.eventsourcing_env(
        create_table=create_table,
        pool_size=settings.postgres_pool_size,
        max_overflow=settings.postgres_max_overflow,
    )
    # Idempotent responses are stored in the events' own transaction (rules §7).
    env["APPLICATION_RECORDER_TOPIC"] = RECORDER_TOPIC
    env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_maxsize)
    return env
