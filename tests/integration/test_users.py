"""The users store, refresh-token families, rate-limit counts and the ``create-admin`` command
on PostgreSQL, including races between API processes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings
from adapters.settings import ServiceSettings
from adapters.users import (
    DuplicateUser,
    InvalidToken,
    RateLimiter,
    TokenService,
    UserStore,
)
from api import cli

PASSWORD = "correct horse battery"
CONFIG = ServiceSettings(jwt_secret="integration-tests-signing-key-0123456789")


@pytest.fixture
def users(pg_settings: DatabaseSettings) -> Iterator[UserStore]:
    upgrade(pg_settings)
    store = UserStore(pg_settings)
    try:
        yield store
    finally:
        store.close()


def race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or raised errors."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_a_user_is_stored_without_the_password(users: UserStore) -> None:
    user = users.register("Ann@Example.com", "ann", PASSWORD)
    assert (user.email, user.username, user.role) == ("Ann@Example.com", "ann", "user")
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert PASSWORD not in repr(user)
    assert users.by_email("ann@example.COM") == user
    assert users.get(user.id) == user


def test_authentication_needs_the_right_password(users: UserStore) -> None:
    user = users.register("ann@example.com", "ann", PASSWORD)
    assert users.authenticate("ANN@example.com", PASSWORD) == user
    assert users.authenticate("ann@example.com", "wrong password") is None
    assert users.authenticate("bob@example.com", PASSWORD) is None


def test_only_one_of_racing_registrations_of_an_email_wins(users: UserStore) -> None:
    emails = ["ann@example.com", "ANN@example.com", "Ann@Example.com"] * 2
    results = race(6, lambda i: users.register(emails[i], f"ann{i}", PASSWORD))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    losers = [r for r in results if r not in winners]
    assert all(isinstance(r, DuplicateUser) and r.field == "email" for r in losers)


def test_the_database_refuses_a_malformed_username(
    users: UserStore, pg_settings: DatabaseSettings
) -> None:
    with pytest.raises(ValueError):
        users.register("ann@example.com", "Ann!", PASSWORD)
    with psycopg.connect(pg_settings.url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            f'INSERT INTO "{pg_settings.schema}".users (id, email, username, password_hash) '
            "VALUES (%s, 'x@example.com', 'Bad Name', 'h')",
            (uuid.uuid4(),),
        )


def test_erasing_forgets_personal_data_and_keeps_the_id(users: UserStore) -> None:
    user = users.register("ann@example.com", "ann", PASSWORD)
    tokens = TokenService(CONFIG, users)
    pair = tokens.issue(user.id, user.role)
    erased = users.erase(user.id)
    assert erased is not None and erased.id == user.id and erased.erased
    assert (erased.email, erased.username, erased.password_hash) == (None, None, None)
    assert users.authenticate("ann@example.com", PASSWORD) is None
    with pytest.raises(InvalidToken):
        tokens.verify_access(pair.access_token)
    # The email and username are free again.
    assert users.register("ann@example.com", "ann", PASSWORD).id != user.id


def test_racing_refreshes_of_one_token_end_the_session(users: UserStore) -> None:
    """A stolen refresh token used alongside its owner: one wins, then reuse revokes all."""
    user = users.register("ann@example.com", "ann", PASSWORD)
    tokens = TokenService(CONFIG, users)
    pair = tokens.issue(user.id, user.role)
    results = race(4, lambda _: tokens.refresh(pair.refresh_token))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidToken) for r in results if r not in winners)
    with pytest.raises(InvalidToken):
        tokens.refresh(winners[0].refresh_token)
    with pytest.raises(InvalidToken):
        tokens.verify_access(winners[0].access_token)


def test_tokens_signed_by_another_deployment_are_refused(users: UserStore) -> None:
    user = users.register("ann@example.com", "ann", PASSWORD)
    ours = TokenService(CONFIG, users)
    theirs = TokenService(ServiceSettings(jwt_secret="another-deployments-key-0123456789"), users)
    with pytest.raises(InvalidToken):
        ours.verify_access(theirs.issue(user.id, "admin").access_token)


def test_a_token_service_needs_a_signing_key(users: UserStore) -> None:
    with pytest.raises(ValueError, match="JWT_SECRET"):
        TokenService(ServiceSettings(jwt_secret=""), users)


def test_racing_hits_never_exceed_the_limit(users: UserStore) -> None:
    limiter = RateLimiter(users, enabled=True, overrides={})
    results = race(5, lambda _: [limiter.hit("login", "10.0.0.1") for _ in range(4)])
    allowed = sum(r is None for hits in results for r in hits)
    assert allowed == 5


def test_create_admin_promotes_a_registered_user(
    users: UserStore,
    pg_settings: DatabaseSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = users.register("ann@example.com", "ann", PASSWORD)
    monkeypatch.setenv("DATABASE_URL", pg_settings.url)
    monkeypatch.setenv("DB_SCHEMA", pg_settings.schema)
    assert cli.main(["create-admin", "ANN@example.com"]) == 0
    assert "is now an admin" in capsys.readouterr().out
    promoted = users.get(user.id)
    assert promoted is not None and promoted.is_admin


def test_create_admin_explains_an_unknown_email(
    users: UserStore,
    pg_settings: DatabaseSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_settings.url)
    monkeypatch.setenv("DB_SCHEMA", pg_settings.schema)
    assert cli.main(["create-admin", "nobody@example.com"]) == 1
    assert "no user with email 'nobody@example.com'" in capsys.readouterr().err
