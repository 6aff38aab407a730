"""``Idempotency-Key`` (rules §7): a repeat replays the first response, another body is 422, a
repeat while the first still runs is 409, keys are per user and route and kept 24 h, and a
failed command gives its key back."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import RootModel
from starlette.requests import Request

from adapters.users import IdempotencyStore, UserStore
from api.bootstrap import Services
from api.errors import problem_of
from api.idempotency import REPLAYED_HEADER, replayed_response, route_key
from application.idempotency import IdempotentCommand, Outcome, Replayed, request_hash
from domain.errors import DomainError, InsufficientFunds
from tests.api.conftest import Account, bearer

ROUTE = "POST /test/things"
USER = uuid.uuid4()


class Counting:
    """An action that counts its runs and answers 201 with the run number."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> tuple[int, dict[str, Any]]:
        self.runs += 1
        return 201, {"run": self.runs, "id": str(uuid.uuid4())}


Payload = RootModel[dict[str, Any]]


def run(
    services: Services,
    action: Callable[[], tuple[int, dict[str, Any]]],
    *,
    key: str | None,
    body: Any = None,
    user: UUID | None = None,
    route: str = ROUTE,
) -> JSONResponse:
    """``action`` run as a route runs its command: in an operation of the request's key."""
    request = IdempotentCommand(services.idempotency, user or USER, route, 200, key)
    try:
        with request.operation(Payload(body or {"tokens": 5})) as operation:
            status, answer = action()
            answered = operation.answer(Payload(answer), status=status)
            return JSONResponse(answered.model_dump(mode="json"), status_code=status)
    except Replayed as replay:
        return replayed_response(replay)


def payload(response: Any) -> Any:
    return json.loads(response.body)


def answered(refusal: DomainError) -> tuple[int, str]:
    """The status and code the API answers a refusal with."""
    problem = problem_of(refusal)
    return problem.status_code, payload(problem)["code"]


def backdate(services: Services, key: str, column: str, seconds: int) -> None:
    with psycopg.connect(services.db.url) as conn:
        conn.execute(
            f'UPDATE "{services.db.schema}".idempotency_keys '
            f"SET {column} = {column} - make_interval(secs => %s) WHERE key = %s",
            (seconds, key),
        )


def test_the_same_key_and_body_replay_the_first_response(api_services: Services) -> None:
    action, key = Counting(), str(uuid.uuid4())
    first = run(api_services, action, key=key)
    second = run(api_services, action, key=key, body={"tokens": 5})
    assert action.runs == 1
    assert second.status_code == first.status_code == 201
    assert payload(second) == payload(first)
    assert second.headers[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in first.headers


def test_the_body_hash_ignores_key_order() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})


def test_the_same_key_with_another_body_is_refused(api_services: Services) -> None:
    action, key = Counting(), str(uuid.uuid4())
    run(api_services, action, key=key, body={"tokens": 5})
    with pytest.raises(DomainError) as refused:
        run(api_services, action, key=key, body={"tokens": 6})
    assert answered(refused.value) == (422, "idempotency_key_reused")
    assert action.runs == 1


def test_the_same_key_while_the_first_still_runs_is_a_conflict(api_services: Services) -> None:
    key, started, finish = str(uuid.uuid4()), threading.Event(), threading.Event()
    responses: list[Any] = []

    def slow() -> tuple[int, dict[str, Any]]:
        started.set()
        assert finish.wait(10)
        return 202, {"done": True}

    first = threading.Thread(target=lambda: responses.append(run(api_services, slow, key=key)))
    first.start()
    try:
        assert started.wait(10)
        with pytest.raises(DomainError) as refused:
            run(api_services, Counting(), key=key)
        assert answered(refused.value) == (409, "idempotency_key_in_use")
        assert problem_of(refused.value).headers["Retry-After"] == "1"
    finally:
        finish.set()
        first.join(10)
    replay = run(api_services, Counting(), key=key)
    assert (replay.status_code, payload(replay)) == (202, {"done": True})
    assert responses[0].status_code == 202


def test_users_and_routes_have_keys_of_their_own(api_services: Services) -> None:
    action, key = Counting(), str(uuid.uuid4())
    run(api_services, action, key=key, user=uuid.uuid4())
    run(api_services, action, key=key, user=uuid.uuid4())
    run(api_services, action, key=key, user=USER, route="POST /test/other")
    assert action.runs == 3


def test_without_a_key_every_request_runs(api_services: Services) -> None:
    action = Counting()
    assert [payload(run(api_services, action, key=None))["run"] for _ in range(3)] == [1, 2, 3]


def test_a_refused_command_gives_its_key_back(api_services: Services) -> None:
    key = str(uuid.uuid4())

    def refused() -> tuple[int, dict[str, Any]]:
        raise InsufficientFunds(needed=5, available=0)

    with pytest.raises(InsufficientFunds):
        run(api_services, refused, key=key)
    action = Counting()
    assert run(api_services, action, key=key).status_code == 201  # e.g. after a deposit
    assert action.runs == 1


def test_an_abandoned_claim_is_taken_over(api_services: Services) -> None:
    key = str(uuid.uuid4())
    crashed = api_services.idempotency.begin(USER, ROUTE, key, request_hash({"tokens": 5}))
    assert crashed.outcome is Outcome.STARTED  # ...and its process died before completing
    with pytest.raises(DomainError):
        run(api_services, Counting(), key=key)  # too recent to tell from a slow request
    backdate(api_services, key, "claimed_at", 61)
    action = Counting()
    assert run(api_services, action, key=key).status_code == 201
    assert action.runs == 1
    # The dead request's claim can no longer overwrite the stored response.
    assert not api_services.idempotency.complete(crashed, 500, {"late": True})
    assert payload(run(api_services, Counting(), key=key))["run"] == 1


def test_a_key_older_than_a_day_starts_afresh(api_services: Services) -> None:
    action, key = Counting(), str(uuid.uuid4())
    run(api_services, action, key=key, body={"tokens": 5})
    backdate(api_services, key, "created_at", 24 * 3600 + 1)
    fresh = run(api_services, action, key=key, body={"tokens": 7})
    assert payload(fresh)["run"] == 2


def test_expired_keys_are_purged(api_services: Services) -> None:
    key = str(uuid.uuid4())
    run(api_services, Counting(), key=key)
    backdate(api_services, key, "created_at", 24 * 3600 + 1)
    assert api_services.idempotency.purge_expired() >= 1
    with psycopg.connect(api_services.db.url) as conn:
        left = conn.execute(
            f'SELECT count(*) FROM "{api_services.db.schema}".idempotency_keys WHERE key = %s',
            (key,),
        ).fetchone()
    assert left == (0,)


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\there"])
def test_a_malformed_key_is_refused(api_services: Services, key: str) -> None:
    with pytest.raises(DomainError) as refused:
        run(api_services, Counting(), key=key)
    assert answered(refused.value) == (422, "invalid_idempotency_key")


def test_concurrent_first_requests_run_the_command_once(api_services: Services) -> None:
    """Eight processes' stores race for one key: exactly one claims it."""
    key, request = str(uuid.uuid4()), request_hash({"tokens": 5})
    stores = [UserStore(api_services.db, pool_size=1) for _ in range(8)]
    barrier, outcomes = threading.Barrier(len(stores)), []

    def claim(users: UserStore) -> None:
        barrier.wait()
        outcomes.append(IdempotencyStore(users).begin(USER, ROUTE, key, request).outcome)

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    finally:
        for s in stores:
            s.close()
    assert sorted(o.value for o in outcomes) == ["running"] * 7 + ["started"]


def test_an_adjustment_retried_with_its_key_is_made_once(
    api_client: TestClient, admin_token: str, register_user: Callable[..., Account]
) -> None:
    """Over HTTP, through a real money command."""
    user = register_user()
    body = {"user_id": str(user.id), "direction": "credit", "tokens": 40, "reason": "goodwill"}
    headers = {**bearer(admin_token), "Idempotency-Key": "adjust-1"}
    first = api_client.post("/v1/admin/adjustments", json=body, headers=headers)
    again = api_client.post("/v1/admin/adjustments", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    assert again.headers[REPLAYED_HEADER] == "true"
    other = api_client.post("/v1/admin/adjustments", json={**body, "tokens": 41}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


OLD_FORMAT = [
    ("POST /wallet/withdrawals", "/v1/wallet/withdrawals", {"tokens": 7}),
    (
        "POST /wallet/deposits",
        "/v1/wallet/deposits",
        {
            "tokens": 700,
            "success_url": "http://127.0.0.1:8000/paid",
            "cancel_url": "http://127.0.0.1:8000/cancelled",
        },
    ),
]


@pytest.mark.parametrize(("route", "path", "body"), OLD_FORMAT, ids=[r for r, _, _ in OLD_FORMAT])
def test_a_key_stored_before_the_idempotency_dependency_still_replays(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    route: str,
    path: str,
    body: dict[str, Any],
) -> None:
    """Keys were stored under hand-typed route strings ("POST /wallet/withdrawals"); the
    dependency scopes them by the same strings, so a retry across the upgrade replays."""
    user = register_user()
    key = str(uuid.uuid4())
    stored = {"stored": "before the upgrade", "key": key}
    store = api_services.idempotency
    claim = store.begin(user.id, route, key, request_hash(body))
    assert claim.outcome is Outcome.STARTED
    assert store.complete(claim, 201, stored)
    replay = api_client.post(path, json=body, headers={**user.headers, "Idempotency-Key": key})
    assert replay.status_code == 201, replay.text
    assert replay.json() == stored
    assert replay.headers[REPLAYED_HEADER] == "true"


def test_a_key_is_scoped_to_the_route_with_its_path_parameters() -> None:
    """The route a key belongs to is the route's template with the request's path
    parameters: one key on two challenges is two keys, as when routes typed them in."""

    class Route:
        path = "/v1/challenges/{challenge_id}/publish"

    challenge = uuid.uuid4()
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "route": Route(),
            "path_params": {"challenge_id": challenge},
            "headers": [],
        }
    )
    assert route_key(request) == f"POST /challenges/{challenge}/publish"
