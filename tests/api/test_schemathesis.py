"""Schemathesis against the app's own OpenAPI: no 500s anywhere, and every answer conforms.

Each operation of ``/openapi.json`` (served by the app itself, loaded over ASGI) gets
property-based requests: valid ones, invalid ones, and valid ones whose path names resources
that exist (a running challenge the fuzzing user takes part in, a pending submission to
review, a withdrawal, a checkout), so that success bodies are checked too. Each request is sent
three times: anonymously, with a registered user's bearer token and with an admin's. Every
response must

- not be a server error (5xx other than a documented 503);
- have a documented status code (errors are documented on every route by ``api.errors``);
- have a documented content type (errors are ``application/problem+json``);
- match the documented schema of that status and content type.

Rate limits are off (``api_config``) and workers off; read-your-writes waits are cut short so
a generated ``min_position`` answers 503 at once. ``SCHEMATHESIS_MAX_EXAMPLES`` (default 15)
sets the examples per operation; a longer run is a good hunt before a release.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import NotAServerErrorConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.persistence import DatabaseSettings
from api.app import create_app
from api.bootstrap import Services, build_services
from domain.aggregate import Cause
from tests.api.conftest import PASSWORD, api_config, bearer
from tests.api.test_challenges import challenge_body, next_midnight

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Every operation, as (METHOD, path); listed without a database, so pytest can name each test.
OPERATIONS = [
    (method.upper(), path)
    for path, operations in create_app().openapi()["paths"].items()
    for method in operations
]


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """This module's services: rate limits and workers off, no waiting for read models."""
    config = api_config(tmp_path_factory.mktemp("proofs"), read_wait_seconds=0.01)
    services = build_services(config, db=api_db)
    try:
        yield services
    finally:
        services.close()


def _member(client: TestClient, services: Services, *, admin: bool = False) -> dict[str, Any]:
    """A registered, signed-in user with 10 000 tokens: ``id``, ``email``, ``headers``."""
    tag = uuid.uuid4().hex[:12]
    email = f"fuzz_{tag}@example.com"
    body = {"email": email, "username": f"fuzz_{tag}", "password": PASSWORD}
    created = client.post("/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    if admin:
        assert services.users.set_role(email, "admin") is not None
    tokens = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    user_id = uuid.UUID(created.json()["id"])
    services.ledger.credit_deposit(
        user_id, f"pi_fuzz_{uuid.uuid4().hex}", 10_000, Cause.stripe("evt_fuzz")
    )
    return {"id": user_id, "email": email, "headers": bearer(tokens.json()["access_token"])}


@pytest.fixture(scope="module")
def callers(api_client: TestClient, api_services: Services) -> dict[str, dict[str, str]]:
    """The headers each request is sent with: none, a user's token, an admin's."""
    user = _member(api_client, api_services)
    admin = _member(api_client, api_services, admin=True)
    return {"anonymous": {}, "user": user["headers"], "admin": admin["headers"]}


@pytest.fixture(scope="module")
def known_ids(
    api_client: TestClient, api_services: Services, callers: dict[str, dict[str, str]]
) -> dict[str, str]:
    """Path parameters naming things that exist, seen from ``user``'s side."""
    user = callers["user"]
    # A cash-out of ``user``'s: an enabled payout account, and winnings past their hold.
    account_id = api_client.post("/v1/payout-account", headers=user).json()["account_id"]
    onboarded = api_client.post(
        f"/v1/simulated-stripe/connect/{account_id}/complete", follow_redirects=False
    )
    assert onboarded.status_code == 303, onboarded.text
    user_id = uuid.UUID(api_client.get("/v1/auth/me", headers=user).json()["id"])
    api_services.ledger.adjust(
        user_id, "credit", 2_000, "fuzz prize", uuid.uuid4(), Cause.admin("fuzz")
    )
    week = {"seconds": 8 * 24 * 3600}
    assert api_client.post("/v1/test-clock/advance", json=week, headers=user).is_success
    cashout = api_client.post("/v1/wallet/cashouts", json={"tokens": 1_000}, headers=user)
    assert cashout.status_code == 202, cashout.text
    owner_member = _member(api_client, api_services)
    owner = owner_member["headers"]
    starts_at = next_midnight(api_services.clock.now())
    rules = {"time_window": {"scope": "challenge_tz"}, "verification": {"mode": "quorum"}}
    body = challenge_body(starts_at, rules=rules)
    body["ends_at"] = (starts_at + timedelta(days=30)).isoformat()
    created = api_client.post("/v1/challenges", json=body, headers=owner).json()
    challenge_id = created["id"]
    assert api_client.post(f"/v1/challenges/{challenge_id}/publish", headers=owner).is_success
    join = {"invite_code": created["invite_code"], "timezone": "UTC"}
    assert api_client.post("/v1/challenges/join", json=join, headers=user).status_code == 201
    seconds = int((starts_at - api_services.clock.now()).total_seconds()) + 3600
    advance = {"seconds": seconds}
    assert api_client.post("/v1/test-clock/advance", json=advance, headers=owner).is_success
    proof = {"proof_type": "text", "text": "ran 5 km"}
    submitted = api_client.post(
        f"/v1/challenges/{challenge_id}/submissions", data=proof, headers=owner
    )
    assert submitted.status_code == 201, submitted.text
    withdrawal = api_client.post("/v1/wallet/withdrawals", json={"tokens": 5}, headers=user)
    assert withdrawal.status_code == 202, withdrawal.text
    urls = {"success_url": "http://127.0.0.1:8000/ok", "cancel_url": "http://127.0.0.1:8000/no"}
    checkout = api_client.post("/v1/wallet/deposits", json={"tokens": 100, **urls}, headers=user)
    assert checkout.status_code == 201, checkout.text
    api_services.projector.catch_up()
    return {
        "challenge_id": challenge_id,
        "submission_id": submitted.json()["id"],
        "withdrawal_id": withdrawal.json()["withdrawal_id"],
        "session_id": checkout.json()["session_id"],
        "cashout_id": cashout.json()["cashout_id"],
        "account_id": account_id,
        "user_id": str(owner_member["id"]),  # holds tokens: an admin's erasure is refused
    }


@pytest.fixture(scope="module")
def api_schema(api_services: Services) -> Iterator[Any]:
    app = create_app(api_services, start_workers=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The bearer token is added by the test (or not): no generated Authorization headers.
    schema.config.generation.update(with_security_parameters=False)
    # A documented 503 (read models behind a given ``min_position``) is not a server error.
    schema.config.checks.not_a_server_error = NotAServerErrorConfig(
        expected_statuses=["1XX", "2XX", "3XX", "4XX", "503"]
    )
    yield schema


def _strategy(operation: Any, path: str, known_ids: dict[str, str]) -> Any:
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    names = re.findall(r"{(\w+)}", path)
    if names:
        fixed = {name: known_ids[name] for name in names}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
    return st.one_of(*strategies)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_operation_never_fails_and_answers_as_documented(
    api_schema: Any,
    callers: dict[str, dict[str, str]],
    known_ids: dict[str, str],
    method: str,
    path: str,
) -> None:
    operation = api_schema[path][method]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, path, known_ids))
    def run(case: Any) -> None:
        for headers in callers.values():
            case.call_and_validate(headers=headers or None, checks=CHECKS)

    run()


def test_text_with_nul_is_refused_before_it_reaches_the_database(
    api_client: TestClient, api_services: Services, callers: dict[str, dict[str, str]]
) -> None:
    """Found by this suite: PostgreSQL text cannot hold NUL. In a query it was a 500; in a
    challenge's name it was recorded, then stopped the read models for everyone."""
    user = callers["user"]
    body = challenge_body(next_midnight(api_services.clock.now()), name="Runs\u0000")
    r = api_client.post("/v1/challenges", json=body, headers=user)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "name"]
    login = {"email": "a\u0000@example.com", "password": PASSWORD}
    assert api_client.post("/v1/auth/login", json=login).status_code == 422
    for path in ("/v1/wallet/transactions?type=x%00", "/v1/challenges?cursor=%00"):
        r = api_client.get(path, headers=user)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", path
    api_services.projector.catch_up()  # nothing poisoned the stream


def test_withdrawing_without_a_wallet_is_not_refundable_not_missing(
    api_client: TestClient,
) -> None:
    """Found by this suite: one's own wallet is never a 404 (it answered "no wallet")."""
    tag = uuid.uuid4().hex[:12]
    body = {"email": f"new_{tag}@example.com", "username": f"new_{tag}", "password": PASSWORD}
    assert api_client.post("/v1/auth/register", json=body).status_code == 201
    login = {"email": body["email"], "password": PASSWORD}
    token = api_client.post("/v1/auth/login", json=login).json()["access_token"]
    r = api_client.post("/v1/wallet/withdrawals", json={"tokens": 5}, headers=bearer(token))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "not_refundable" and r.json()["refundable"] == 0
