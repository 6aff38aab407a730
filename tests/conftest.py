"""Shared fixtures: one PostgreSQL per test session, one fresh schema per test.

Tests run against ``DATABASE_URL`` when it is set (CI), otherwise against the embedded server
under ``./.data`` (a developer's machine). They never skip for want of a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema, resolve_database_url
from adapters.settings import StoreSettings

# The service refuses to start without ENV; tests (and the processes they spawn, which inherit
# this environment) are development, whatever the shell running them says.
os.environ["ENV"] = "development"


@pytest.fixture(scope="session")
def database_url() -> str:
    settings = StoreSettings.from_env()
    return resolve_database_url(settings.database_url, settings.data_dir)


@pytest.fixture
def pg_settings(database_url: str) -> Iterator[DatabaseSettings]:
    """Settings for a schema of this test's own, dropped (with its tables) afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    ensure_schema(database_url, schema)
    try:
        yield DatabaseSettings.from_url(database_url, schema=schema)
    finally:
        drop_schema(database_url, schema)


@pytest.fixture
def pg_env(pg_settings: DatabaseSettings) -> dict[str, str]:
    """An ``eventsourcing`` environment whose tables are created in this test's schema."""
    return pg_settings.eventsourcing_env(create_table=True)
