"""The persistence adapter: eventsourcing on PostgreSQL, schemas, URLs, the embedded server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

from adapters.persistence import (
    TRUST_PASSWORD_PLACEHOLDER,
    DatabaseSettings,
    drop_schema,
    embedded_database_url,
    ensure_schema,
    stop_embedded_database,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Note(Aggregate):
    """A trivial aggregate: some text that can be edited."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


class Notebook(Application[UUID]):
    def write(self, text: str) -> UUID:
        note = Note(text)
        self.save(note)
        return note.id

    def edit(self, note_id: UUID, text: str) -> None:
        note: Note = self.repository.get(note_id)
        note.edit(text)
        self.save(note)

    def read(self, note_id: UUID) -> str:
        note: Note = self.repository.get(note_id)
        return note.text


def tables_in(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def stored_versions(url: str, schema: str, note_id: UUID) -> list[int]:
    query = psycopg.sql.SQL(
        "SELECT originator_version FROM {}.notebook_events WHERE originator_id = %s "
        "ORDER BY originator_version"
    ).format(psycopg.sql.Identifier(schema))
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(query, (note_id,)).fetchall()]


def test_an_application_saves_and_reloads_an_aggregate_in_its_schema(
    database_url: str, pg_settings: DatabaseSettings, pg_env: dict[str, str]
) -> None:
    app = Notebook(env=pg_env)
    try:
        note_id = app.write("hello")
        app.edit(note_id, "hello, world")
    finally:
        app.close()

    reopened = Notebook(env=pg_env)
    try:
        assert reopened.read(note_id) == "hello, world"
    finally:
        reopened.close()

    assert "notebook_events" in tables_in(database_url, pg_settings.schema)
    assert stored_versions(database_url, pg_settings.schema, note_id) == [1, 2]


def test_two_schemas_do_not_see_each_others_events(
    database_url: str, pg_settings: DatabaseSettings, pg_env: dict[str, str]
) -> None:
    other_schema = pg_settings.schema + "_b"
    ensure_schema(database_url, other_schema)
    try:
        other = DatabaseSettings.from_url(database_url, schema=other_schema)
        other_env = other.eventsourcing_env(create_table=True)
        first, second = Notebook(env=pg_env), Notebook(env=other_env)
        try:
            note_id = first.write("only in the first schema")

            with pytest.raises(AggregateNotFoundError):
                second.repository.get(note_id)
            assert second.recorder.max_notification_id() is None
            assert first.recorder.max_notification_id() == 1
        finally:
            first.close()
            second.close()
        assert stored_versions(database_url, other_schema, note_id) == []
    finally:
        drop_schema(database_url, other_schema)


def test_ensure_schema_is_idempotent(database_url: str, pg_settings: DatabaseSettings) -> None:
    ensure_schema(database_url, pg_settings.schema)
    ensure_schema(database_url, pg_settings.schema)
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (pg_settings.schema,),
        ).fetchone()
    assert found == (1,)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            DatabaseSettings("127.0.0.1", 5432, "postgres", "", "test", "ledger"),
        ),
        (
            "postgresql://ledger:s%40cret@db.internal/peerpush",
            DatabaseSettings("db.internal", 5432, "ledger", "s@cret", "peerpush", "ledger"),
        ),
        (
            "postgresql://postgres:@/postgres?host=/srv/app/.data/pg",
            DatabaseSettings("/srv/app/.data/pg", 5432, "postgres", "", "postgres", "ledger"),
        ),
        (
            "postgresql+psycopg://app@[::1]:6543/ledger",
            DatabaseSettings("::1", 6543, "app", "", "ledger", "ledger"),
        ),
    ],
)
def test_settings_are_parsed_from_tcp_password_and_unix_socket_urls(
    url: str, expected: DatabaseSettings
) -> None:
    settings = DatabaseSettings.from_url(url, schema="ledger")

    assert settings == expected
    assert DatabaseSettings.from_url(settings.url, schema="ledger") == settings


def test_the_eventsourcing_environment_always_carries_a_password() -> None:
    trusting = DatabaseSettings.from_url("postgresql://postgres@127.0.0.1:5432/test", schema="s1")
    with_password = DatabaseSettings.from_url("postgresql://u:pw@h/d")

    env = trusting.eventsourcing_env(create_table=False, pool_size=2, max_overflow=3)

    assert env == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "test",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": TRUST_PASSWORD_PLACEHOLDER,
        "POSTGRES_SCHEMA": "s1",
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "3",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "CREATE_TABLE": "n",
        "AGGREGATE_REPOSITORY_TOPIC": "adapters.aggregate_cache:SerialisedRepository",
    }
    assert with_password.eventsourcing_env(create_table=True)["POSTGRES_PASSWORD"] == "pw"
    assert with_password.eventsourcing_env(create_table=True)["CREATE_TABLE"] == "y"
    assert "pw" not in repr(with_password)


@pytest.mark.parametrize("url", ["mysql://u@h/d", "127.0.0.1:5432", "postgresql://u@a,b/d"])
def test_urls_that_are_not_a_single_postgresql_server_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        DatabaseSettings.from_url(url)


@pytest.mark.parametrize("schema", ["", "Ledger", "a-b", "x; DROP TABLE y", "1abc"])
def test_schema_names_must_be_plain_lower_case_identifiers(schema: str) -> None:
    with pytest.raises(ValueError):
        DatabaseSettings.from_url("postgresql://u@h/d", schema=schema)


def postmaster_start_time(url: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def accepts_connections(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_the_embedded_server_starts_once_and_is_reused(tmp_path: Path) -> None:
    try:
        url = embedded_database_url(tmp_path)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT version()").fetchone()
        assert row is not None
        assert "PostgreSQL" in row[0]
        started = postmaster_start_time(url)

        assert embedded_database_url(tmp_path) == url
        assert postmaster_start_time(url) == started
        assert (tmp_path / "pg" / "PG_VERSION").exists()
    finally:
        stop_embedded_database(tmp_path)

    assert not accepts_connections(url)


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import psycopg

    from adapters.persistence import embedded_database_url

    url = embedded_database_url(Path(sys.argv[1]))
    with psycopg.connect(url) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    print(url, started.isoformat(), sep="|", flush=True)
    sys.stdin.read()  # hold the handle until the parent lets go
    """
)


def test_processes_starting_the_embedded_server_together_share_one(tmp_path: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        reports = {child.stdout.readline().strip() for child in children if child.stdout}
        assert len(reports) == 1, reports
        url = next(iter(reports)).split("|")[0]
        assert accepts_connections(url)
    finally:
        for child in children:
            if child.stdin:
                child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    assert [child.returncode for child in children] == [0, 0, 0, 0]
    # The last process to let go stopped the server.
    assert not accepts_connections(url)
