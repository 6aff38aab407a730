"""A process trusts a session it has checked for ``AUTH_CACHE_SECONDS`` (docs/settings.md):
what ends a session ends it at once in the process that did it, and within that bound in
every other process. Time is a fake monotonic clock here: nothing waits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings
from adapters.settings import ServiceSettings
from adapters.users import InvalidToken, TokenService, UserStore

PASSWORD = "correct horse battery"
SECRET = "integration-tests-signing-key-0123456789"
BOUND = 2.0


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(pg_settings: DatabaseSettings) -> DatabaseSettings:
    upgrade(pg_settings)
    return pg_settings


@pytest.fixture
def stores(db: DatabaseSettings) -> Iterator[tuple[UserStore, UserStore]]:
    """Two processes' user stores over one database."""
    here, there = UserStore(db), UserStore(db)
    try:
        yield here, there
    finally:
        here.close()
        there.close()


def service(users: UserStore, clock: Clock, seconds: float = BOUND) -> TokenService:
    config = ServiceSettings(jwt_secret=SECRET, auth_cache_seconds=seconds)
    return TokenService(config, users, monotonic=clock)


def test_a_logout_ends_the_session_at_once_in_the_process_that_served_it(
    stores: tuple[UserStore, UserStore],
) -> None:
    users, _ = stores
    tokens = service(users, Clock())
    user = users.register("ann@example.com", "ann", PASSWORD)
    pair = tokens.issue(user.id, user.role)
    assert tokens.verify_access(pair.access_token).id == user.id  # now remembered
    tokens.revoke(pair.refresh_token)
    with pytest.raises(InvalidToken):
        tokens.verify_access(pair.access_token)


def test_a_logout_through_another_process_is_seen_there_once_the_bound_has_passed(
    stores: tuple[UserStore, UserStore],
) -> None:
    here_users, there_users = stores
    clock = Clock()
    here, there = service(here_users, clock), service(there_users, clock)
    user = here_users.register("ann@example.com", "ann", PASSWORD)
    pair = here.issue(user.id, user.role)
    here.verify_access(pair.access_token)
    there.revoke(pair.refresh_token)
    with pytest.raises(InvalidToken):
        there.verify_access(pair.access_token)
    here.verify_access(pair.access_token)  # still trusted: the documented bound
    clock.now += BOUND
    with pytest.raises(InvalidToken):
        here.verify_access(pair.access_token)


def test_with_the_cache_off_another_process_s_logout_is_seen_at_once(
    stores: tuple[UserStore, UserStore],
) -> None:
    here_users, there_users = stores
    clock = Clock()
    here, there = service(here_users, clock, seconds=0), service(there_users, clock)
    user = here_users.register("ann@example.com", "ann", PASSWORD)
    pair = here.issue(user.id, user.role)
    here.verify_access(pair.access_token)
    there.revoke(pair.refresh_token)
    with pytest.raises(InvalidToken):
        here.verify_access(pair.access_token)


def test_a_reused_refresh_token_ends_a_remembered_session_at_once(
    stores: tuple[UserStore, UserStore],
) -> None:
    users, _ = stores
    tokens = service(users, Clock())
    user = users.register("ann@example.com", "ann", PASSWORD)
    pair = tokens.issue(user.id, user.role)
    rotated = tokens.refresh(pair.refresh_token)
    tokens.verify_access(rotated.access_token)
    with pytest.raises(InvalidToken):
        tokens.refresh(pair.refresh_token)  # the old one again: the family is revoked
    with pytest.raises(InvalidToken):
        tokens.verify_access(rotated.access_token)


def test_an_erasure_or_a_role_change_applies_at_once_to_remembered_sessions(
    stores: tuple[UserStore, UserStore],
) -> None:
    users, _ = stores
    tokens = service(users, Clock())
    ann = users.register("ann@example.com", "ann", PASSWORD)
    bo = users.register("bo@example.com", "bo_", PASSWORD)
    ann_pair, bo_pair = tokens.issue(ann.id, ann.role), tokens.issue(bo.id, bo.role)
    assert not tokens.verify_access(ann_pair.access_token).is_admin
    tokens.verify_access(bo_pair.access_token)
    users.set_role("ann@example.com", "admin")
    assert tokens.verify_access(ann_pair.access_token).is_admin
    users.erase(bo.id)
    with pytest.raises(InvalidToken):
        tokens.verify_access(bo_pair.access_token)


def test_a_remembered_access_token_is_refused_once_it_expires(
    stores: tuple[UserStore, UserStore],
) -> None:
    """A process remembers the tokens it verified (no HMAC per request), until their expiry."""
    users, _ = stores
    wall = Clock()
    wall.now = time.time()
    config = ServiceSettings(jwt_secret=SECRET, auth_cache_seconds=BOUND)
    tokens = TokenService(config, users, monotonic=Clock(), wall=wall)
    user = users.register("ann@example.com", "ann", PASSWORD)
    pair = tokens.issue(user.id, user.role)
    assert tokens.verify_access(pair.access_token).id == user.id  # verified, remembered
    assert tokens.trusted_access(pair.access_token) is not None
    wall.now += config.access_token_minutes * 60 + 1  # past its exp; the session still live
    with pytest.raises(InvalidToken, match="expired"):
        tokens.trusted_access(pair.access_token)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify_access(pair.access_token)
