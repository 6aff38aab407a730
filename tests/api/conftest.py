"""The HTTP API through the full stack: one migrated schema and one app per test module.

Fixtures for every API test (other modules under ``tests/api`` use them as they are):

- ``api_services``: the `Services` behind the app (rate limits off, workers off);
- ``api_client``: a ``TestClient`` on ``create_app(api_services, start_workers=False)``;
- ``register_user(email=None, ...)`` → `Account` (id, email, username, password, tokens,
  ``headers``) registered and logged in over HTTP;
- ``register_and_login(email=None)`` → an access token;
- ``admin_token``: an access token of a fresh admin;
- ``rate_limits_on``: the limiter switched on, with no counts, for one test;
- ``lenient_client``: a client that answers a server error with its 500;
- ``failing_response_writes``: storing any ``Idempotency-Key`` response fails, for one test.

``bearer(token)`` builds the ``Authorization`` header. Emails and usernames are unique per call,
so tests in one module never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from adapters.settings import ServiceSettings
from api.app import create_app
from api.bootstrap import Services, build_services

TEST_JWT_SECRET = "tests-only-signing-key-0123456789abcdef"
PASSWORD = "correct horse battery"


def api_config(storage_dir: Path, **overrides: Any) -> ServiceSettings:
    """The settings API tests run with: a fixed signing key, no rate limits, no workers."""
    settings: dict[str, Any] = {
        "jwt_secret": TEST_JWT_SECRET,
        "rate_limits": False,
        "run_workers": False,
        "stripe_mode": "simulated",
        "storage": "local",
        "storage_dir": storage_dir,
        **overrides,
    }
    return ServiceSettings(**settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Account:
    id: UUID
    email: str
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


@pytest.fixture(scope="module")
def api_db(database_url: str) -> Iterator[DatabaseSettings]:
    """A schema of this module's own, dropped afterwards (``build_services`` migrates it)."""
    schema = f"api_{uuid.uuid4().hex[:12]}"
    ensure_schema(database_url, schema)
    try:
        yield DatabaseSettings.from_url(database_url, schema=schema)
    finally:
        drop_schema(database_url, schema)


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    services = build_services(api_config(tmp_path_factory.mktemp("proofs")), db=api_db)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def api_client(api_services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(api_services, start_workers=False)) as client:
        yield client


@pytest.fixture
def register_user(api_client: TestClient) -> Callable[..., Account]:
    def register(
        email: str | None = None, *, username: str | None = None, password: str = PASSWORD
    ) -> Account:
        tag = uuid.uuid4().hex[:12]
        email = email or f"user_{tag}@example.com"
        username = username or f"u_{tag}"
        created = api_client.post(
            "/v1/auth/register", json={"email": email, "username": username, "password": password}
        )
        assert created.status_code == 201, created.text
        tokens = api_client.post("/v1/auth/login", json={"email": email, "password": password})
        assert tokens.status_code == 200, tokens.text
        pair = tokens.json()
        return Account(
            id=UUID(created.json()["id"]),
            email=email,
            username=username,
            password=password,
            access_token=pair["access_token"],
            refresh_token=pair["refresh_token"],
        )

    return register


@pytest.fixture
def register_and_login(register_user: Callable[..., Account]) -> Callable[..., str]:
    def register_and_login(email: str | None = None) -> str:
        return register_user(email).access_token

    return register_and_login


@pytest.fixture
def admin_token(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> str:
    account = register_user()
    assert api_services.users.set_role(account.email, "admin") is not None
    return account.access_token  # the role is read from the users table on every request


@pytest.fixture
def rate_limits_on(api_services: Services) -> Iterator[None]:
    limits = api_services.limits
    limits.reset()
    limits.enabled = True
    try:
        yield
    finally:
        limits.enabled = False
        limits.reset()


@pytest.fixture(scope="module")
def lenient_client(api_services: Services) -> Iterator[TestClient]:
    """A client that answers a server error with its 500, as a real client would see it."""
    app = create_app(api_services, start_workers=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def failing_response_writes(api_services: Services) -> Iterator[None]:
    """A trigger that refuses to store any response, as a full disk or a bug would."""
    schema = api_services.db.schema
    with psycopg.connect(api_services.db.url, autocommit=True) as conn:
        conn.execute(
            f"""CREATE FUNCTION "{schema}".refuse_responses() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'response store unavailable'; END $$ LANGUAGE plpgsql"""
        )
        conn.execute(
            f"""CREATE TRIGGER refuse_responses BEFORE UPDATE ON "{schema}".idempotency_keys
            FOR EACH ROW WHEN (NEW.state = 'done')
            EXECUTE FUNCTION "{schema}".refuse_responses()"""
        )
    try:
        yield
    finally:
        with psycopg.connect(api_services.db.url, autocommit=True) as conn:
            conn.execute(f'DROP TRIGGER refuse_responses ON "{schema}".idempotency_keys')
            conn.execute(f'DROP FUNCTION "{schema}".refuse_responses()')
