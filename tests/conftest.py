"""Shared fixtures: one PostgreSQL per test session, one fresh schema per test.

Tests run against ``DATABASE_URL`` when it is set (CI), otherwise against the embedded server
under ``./.data`` (a developer's machine). They never skip for want of a database.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SESSION_STARTED = time.time()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt when missing (CI runs as root with apt
    reachable): the browser tests and the PDF report never skip for want of it."""
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, timeout=1500)
    assert CHROMIUM.exists(), "apt-get install chromium did not provide /usr/bin/chromium"
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave what a person may want to look at (screenshots, reports): gitignored."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the artifacts this run left (screenshots, the audit report and its PDF)."""
    if not ARTIFACTS.is_dir():
        return
    made = sorted(p for p in ARTIFACTS.iterdir() if p.stat().st_mtime >= SESSION_STARTED)
    if made:
        terminalreporter.write_sep("-", "artifacts")
        for path in made:
            terminalreporter.write_line(str(path))
