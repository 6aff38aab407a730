"""The development test clock: one business time for every process of a schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings
from adapters.test_clock import PgTestClock
from application.ports import MovableClock


def test_an_advance_through_one_clock_is_the_time_of_every_other(
    pg_settings: DatabaseSettings,
) -> None:
    upgrade(pg_settings)
    api, worker = PgTestClock(pg_settings), PgTestClock(pg_settings)
    try:
        before = worker.now()
        moved = api.advance(timedelta(days=2))

        seen = worker.now()
        assert seen >= moved >= before + timedelta(days=2)
        assert seen - before < timedelta(days=2, minutes=5)
        assert isinstance(api, MovableClock)
    finally:
        api.close()
        worker.close()


def test_the_shared_clock_only_moves_forward(pg_settings: DatabaseSettings) -> None:
    upgrade(pg_settings)
    clock = PgTestClock(pg_settings)
    try:
        with pytest.raises(ValueError, match="forward"):
            clock.advance(timedelta(seconds=-1))
    finally:
        clock.close()


def test_the_clock_reconnects_after_the_server_drops_its_connection(
    pg_settings: DatabaseSettings,
) -> None:
    upgrade(pg_settings)
    clock = PgTestClock(pg_settings)
    try:
        clock.advance(timedelta(hours=1))
        assert clock._conn is not None
        backend = clock._conn.info.backend_pid
        with psycopg.connect(pg_settings.url, autocommit=True) as admin:  # a server restart
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

        wall = datetime.now(UTC)
        assert clock.now() >= wall + timedelta(hours=1)
        assert clock._conn is not None and clock._conn.info.backend_pid != backend
    finally:
        clock.close()
