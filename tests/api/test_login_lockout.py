"""Login is also limited per account (rules §7): 10 failures in 15 minutes per (email, client
address), and 100 per email from all addresses. The first stops guessing from one place
without letting a rival lock the owner out; the second stops guessing spread over many."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.rate_limits import Limit, RateLimiter, limits_from_env
from adapters.users import email_key
from api.app import create_app
from api.bootstrap import Services
from tests.api.conftest import Account


@pytest.fixture
def only_account_limits(rate_limits_on: None, api_services: Services) -> Iterator[None]:
    """The per-address login limit (5 a minute) off, so the per-account ones are seen alone."""
    overrides = api_services.limits.overrides
    saved = dict(overrides)
    overrides["login"] = None
    try:
        yield
    finally:
        overrides.clear()
        overrides.update(saved)


@contextmanager
def client_from(services: Services, peer: str) -> Iterator[TestClient]:
    with TestClient(create_app(services, start_workers=False), client=(peer, 40000)) as client:
        yield client


def login(client: TestClient, email: str, password: str) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def assert_locked(response: Any, bucket: str) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert response.json()["bucket"] == bucket
    assert 1 <= int(response.headers["Retry-After"]) <= 900


@pytest.mark.usefixtures("only_account_limits")
def test_ten_failures_lock_that_email_from_that_address_only(
    api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    with client_from(api_services, "192.0.2.10") as rival:
        assert [login(rival, account.email, "guess").status_code for _ in range(10)] == [401] * 10
        assert_locked(login(rival, account.email, account.password), "login_account")
        # Another spelling of the same email is the same account.
        assert_locked(login(rival, f" {account.email.upper()}", "guess"), "login_account")
    with client_from(api_services, "192.0.2.11") as owner:
        assert login(owner, account.email, account.password).status_code == 200


@pytest.mark.usefixtures("only_account_limits")
def test_a_hundred_failures_from_many_addresses_lock_the_email(
    api_services: Services, register_user: Callable[..., Account]
) -> None:
    account, other = register_user(), register_user()
    # 90 failures from nine addresses, counted as the login route counts them (wrong passwords
    # are slow to check on purpose), then ten more over HTTP from a tenth address.
    for n in range(9):
        for _ in range(10):
            api_services.limits.count_login_failure(email_key(account.email), f"198.51.100.{n}")
    with client_from(api_services, "198.51.100.99") as bot:
        assert [login(bot, account.email, "guess").status_code for _ in range(10)] == [401] * 10
    with client_from(api_services, "198.51.100.200") as fresh:
        assert_locked(login(fresh, account.email, account.password), "login_email")
        assert login(fresh, other.email, other.password).status_code == 200  # only that email


def test_the_account_limits_are_settings(api_services: Services) -> None:
    limits = api_services.limits
    assert limits.limit_for("login_account") == Limit(10, 900)
    assert limits.limit_for("login_email") == Limit(100, 900)
    relaxed = RateLimiter(
        limits.users,
        enabled=True,
        overrides=limits_from_env(
            {"RATE_LIMIT_LOGIN_ACCOUNT": "50/900", "RATE_LIMIT_LOGIN_EMAIL": "off"}
        ),
    )
    assert relaxed.limit_for("login_account") == Limit(50, 900)
    assert relaxed.limit_for("login_email") is None
