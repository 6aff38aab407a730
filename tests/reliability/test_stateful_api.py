"""Schemathesis, statefully: sequences of calls over the whole OpenAPI, each call fed with what
earlier answers returned (ids of challenges, submissions, withdrawals, cash-outs, checkouts),
through the links schemathesis infers from the documented responses and path parameters.

Every call is made with a funded user's token; every answer must not be a server error and
must conform to the documented status, content type and schema. ``RELIABILITY_EXAMPLES``
scales the number of scenarios. The single-operation fuzzing is in
``tests/api/test_schemathesis.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
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
from tests.reliability.conftest import knob
from tests.reliability.recorder import Recorder

AREA = "hostile input"
SCENARIOS = knob("RELIABILITY_EXAMPLES")
CHUNK = 40
RESTARTS = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    config = api_config(tmp_path_factory.mktemp("proofs"), read_wait_seconds=0.01)
    services = build_services(config, db=api_db)
    try:
        yield services
    finally:
        services.close()


def test_sequences_of_calls_never_fail_and_answer_as_documented(
    api_client: TestClient, api_services: Services, reliability: Recorder
) -> None:
    tag = uuid.uuid4().hex[:12]
    body = {"email": f"st_{tag}@example.com", "username": f"st_{tag}", "password": PASSWORD}
    created = api_client.post("/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    token = api_client.post("/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
    headers = bearer(token.json()["access_token"])
    api_services.ledger.credit_deposit(
        uuid.UUID(created.json()["id"]), f"pi_{tag}", 50_000, Cause.stripe(f"evt_{tag}")
    )

    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(api_services, start_workers=False)
    )
    schema.config.generation.update(with_security_parameters=False)
    schema.config.checks.not_a_server_error = NotAServerErrorConfig(
        expected_statuses=["1XX", "2XX", "3XX", "4XX", "503"]
    )
    calls = [0]
    links = [0]

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            links[0] = max(links[0], len(self.bundles))

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            calls[0] += 1
            case.validate_response(response, checks=CHECKS)

    # In rounds of at most CHUNK scenarios, each a fresh machine over the current database.
    # The database keeps what earlier scenarios did, so the links a machine can follow drift
    # from what hypothesis recorded earlier in the same run, and hypothesis may stop a round on
    # FlakyStrategyDefinition: its own generator's inconsistency, never an answer of ours. Such
    # a round is run again (at most RESTARTS times in all). Shrinking is off, so a real failure
    # is raised as it happened instead of being replayed against a database that moved on.
    restarts = 0
    for first in range(0, SCENARIOS, CHUNK):
        while True:
            try:
                Machine.run(
                    settings=settings(
                        max_examples=min(CHUNK, SCENARIOS - first),
                        stateful_step_count=8,
                        deadline=None,
                        database=None,
                        phases=[Phase.explicit, Phase.generate],
                        suppress_health_check=list(HealthCheck),
                    )
                )
                break
            except FlakyStrategyDefinition:
                restarts += 1
                assert restarts <= RESTARTS, "hypothesis's generator kept drifting"
    assert calls[0] >= SCENARIOS, calls
    reliability.add(AREA, requests=calls[0], inputs=calls[0])
