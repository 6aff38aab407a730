"""Rate limits (rules §7): login 5/min, register 2/min, refresh 10/min per client address,
deposit checkout 10/hour per user; counted in PostgreSQL and relaxed by setting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.rate_limits import limits_from_env
from adapters.users import Limit, RateLimited, RateLimiter, UserStore
from api.bootstrap import Services
from tests.api.conftest import PASSWORD, Account


def assert_limited(response: Any, bucket: str, period: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "rate_limited"
    assert response.json()["bucket"] == bucket
    assert 1 <= int(response.headers["Retry-After"]) <= period


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


@pytest.mark.usefixtures("rate_limits_on")
def test_the_sixth_login_in_a_minute_is_refused(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()  # one registration and the first login
    statuses = [login(api_client, account.email, "wrong password").status_code for _ in range(3)]
    assert statuses == [401] * 3
    assert login(api_client, account.email).status_code == 200  # failures and successes count
    assert_limited(login(api_client, account.email), "login", 60)


@pytest.mark.usefixtures("rate_limits_on")
def test_the_third_registration_in_a_minute_is_refused(api_client: TestClient) -> None:
    def register() -> Any:
        tag = uuid.uuid4().hex[:12]
        body = {"email": f"{tag}@example.com", "username": f"r_{tag}", "password": PASSWORD}
        return api_client.post("/v1/auth/register", json=body)

    assert [register().status_code for _ in range(2)] == [201, 201]
    assert_limited(register(), "register", 60)


@pytest.mark.usefixtures("rate_limits_on")
def test_the_eleventh_refresh_in_a_minute_is_refused(api_client: TestClient) -> None:
    for _ in range(10):
        refused = api_client.post("/v1/auth/refresh", json={"refresh_token": "not-a-token"})
        assert refused.status_code == 401
    assert_limited(
        api_client.post("/v1/auth/refresh", json={"refresh_token": "not-a-token"}), "refresh", 60
    )


def test_with_limits_off_nothing_is_refused(
    api_client: TestClient, register_user: Callable[..., Account], api_services: Services
) -> None:
    assert not api_services.limits.enabled
    account = register_user()
    assert {login(api_client, account.email).status_code for _ in range(8)} == {200}


@pytest.mark.usefixtures("rate_limits_on")
def test_deposit_checkouts_are_limited_per_user(api_services: Services) -> None:
    limits, ann, bob = api_services.limits, str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(10):
        limits.check("deposit_checkout", ann)
    with pytest.raises(RateLimited) as refused:
        limits.check("deposit_checkout", ann)
    assert refused.value.bucket == "deposit_checkout"
    assert 3590 <= refused.value.retry_after <= 3600
    limits.check("deposit_checkout", bob)  # another user's count is their own


@pytest.mark.usefixtures("rate_limits_on")
def test_a_window_ends_and_the_count_starts_again(api_services: Services) -> None:
    limits, key = api_services.limits, str(uuid.uuid4())
    assert limits.hit("test_window", key, 2, 1) is None
    assert limits.hit("test_window", key, 2, 1) is None
    assert limits.hit("test_window", key, 2, 1) == 1
    time.sleep(1.1)
    assert limits.hit("test_window", key, 2, 1) is None


@pytest.mark.usefixtures("rate_limits_on")
def test_every_api_process_shares_the_counts(api_services: Services) -> None:
    """A second process's limiter (its own pool) sees the first one's hits."""
    key = str(uuid.uuid4())
    other_users = UserStore(api_services.db)
    other = RateLimiter(other_users, enabled=True, overrides={})
    try:
        for _ in range(5):
            api_services.limits.check("login", key)
        assert other.hit("login", key) is not None
    finally:
        other_users.close()


@pytest.mark.usefixtures("rate_limits_on")
def test_an_operator_relaxes_or_turns_off_one_bucket(api_services: Services) -> None:
    key = str(uuid.uuid4())
    relaxed = RateLimiter(api_services.users, enabled=True, overrides={"login": Limit(7, 60)})
    assert [relaxed.hit("login", key) is None for _ in range(8)] == [True] * 7 + [False]
    off = RateLimiter(api_services.users, enabled=True, overrides={"login": None})
    assert all(off.hit("login", key) is None for _ in range(20))


def test_overrides_are_read_from_the_environment() -> None:
    env = {"RATE_LIMIT_LOGIN": "20/60", "RATE_LIMIT_REGISTER": "off", "RATE_LIMIT_REFRESH": "30"}
    assert limits_from_env({**env, "PATH": "/bin"}) == {
        "login": Limit(20, 60),
        "register": None,
        "refresh": Limit(30, 60),
    }
    with pytest.raises(ValueError, match="RATE_LIMIT_LOGIN"):
        limits_from_env({"RATE_LIMIT_LOGIN": "lots"})
    with pytest.raises(ValueError):
        limits_from_env({"RATE_LIMIT_LOGIN": "0/60"})


def test_an_unknown_bucket_needs_a_limit(api_services: Services) -> None:
    with pytest.raises(ValueError, match="no limit named"):
        api_services.limits.check("no_such_bucket", "k")
