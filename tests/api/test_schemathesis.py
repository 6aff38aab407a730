"""Schemathesis against the app's own OpenAPI: no 500s anywhere, and every answer conforms.

Each operation of ``/openapi.json`` (served by the app itself, loaded over ASGI) gets
property-based requests, valid ones and invalid ones, and each is sent twice: anonymously and
with a registered user's bearer token. Every response must

- not be a server error (5xx other than a documented 503);
- have a documented status code (errors are documented on every route by ``api.errors``);
- have a documented content type (errors are ``application/problem+json``);
- match the documented schema of that status and content type.

Rate limits are off (``api_config``) and workers off; read-your-writes waits are cut short so
a generated ``min_position`` answers 503 at once. Examples per operation: ``MAX_EXAMPLES``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config._checks import NotAServerErrorConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.persistence import DatabaseSettings
from api.app import create_app
from api.bootstrap import Services, build_services
from tests.api.conftest import PASSWORD, api_config, bearer

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


@pytest.fixture(scope="module")
def access_token(api_client: TestClient) -> str:
    tag = uuid.uuid4().hex[:12]
    email = f"fuzz_{tag}@example.com"
    body = {"email": email, "username": f"fuzz_{tag}", "password": PASSWORD}
    assert api_client.post("/v1/auth/register", json=body).status_code == 201
    tokens = api_client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return str(tokens.json()["access_token"])


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


def _strategy(operation: Any) -> Any:
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


@pytest.mark.parametrize(
    ("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS]
)
def test_the_operation_never_fails_and_answers_as_documented(
    api_schema: Any, access_token: str, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)
        case.call_and_validate(headers=bearer(access_token), checks=CHECKS)

    run()
