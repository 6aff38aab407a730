"""The quick half of the database-restart test (the whole one, with a real PostgreSQL stopped
under load, is ``test_load_and_crashes.py``): while the database cannot be reached a request
answers 503 with ``Retry-After``, and the projection worker waits instead of exiting."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi.testclient import TestClient

from api.bootstrap import Services
from tests.api.conftest import Account
from tests.api.test_challenges import challenge_body, next_midnight
from tests.reliability.recorder import Recorder

AREA = "crashes"


def lost(kind: str) -> BaseException:
    """What the database's clients raise when it has gone away, as each raises it."""
    if kind == "pool timeout":
        return psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")
    if kind == "admin shutdown":
        return psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    try:  # the event store wraps psycopg's error in its own
        raise psycopg.OperationalError("connection refused")
    except psycopg.OperationalError as e:
        wrapped = StoreOperationalError(str(e))
        wrapped.__cause__ = e
        return wrapped


@pytest.mark.parametrize("kind", ["pool timeout", "admin shutdown", "wrapped by the store"])
def test_a_command_meeting_a_lost_database_answers_503_with_retry_after(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Recorder,
    kind: str,
) -> None:
    account: Account = register_user()

    def down(*args: Any, **kwargs: Any) -> Any:
        raise lost(kind)

    monkeypatch.setattr(api_services.ledger, "_save", down)  # every save, batched or not
    monkeypatch.setattr(api_services.ledger, "head", down)
    body = challenge_body(next_midnight(api_services.clock.now()))
    answer = lenient_client.post("/v1/challenges", json=body, headers=account.headers)
    ready = lenient_client.get("/v1/ready")

    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json()["code"] == "database_unavailable"
    assert "psycopg" not in answer.text and "Traceback" not in answer.text
    assert ready.status_code == 503
    reliability.add(AREA, requests=2, checks=1)


def test_a_bug_is_still_a_500_not_a_503(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account: Account = register_user()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(api_services.ledger, "_save", broken)
    monkeypatch.setattr(api_services.ledger, "head", broken)
    body = challenge_body(next_midnight(api_services.clock.now()))
    answer = lenient_client.post("/v1/challenges", json=body, headers=account.headers)
    assert answer.status_code == 500, answer.text
    assert answer.json()["code"] == "internal_error"


def test_the_projection_worker_waits_out_a_lost_database_instead_of_exiting(
    api_services: Services, monkeypatch: pytest.MonkeyPatch, reliability: Recorder
) -> None:
    projector = api_services.projector
    real = projector.run_once
    calls: list[int] = []
    stop = threading.Event()

    def flaky(until: int | None = None) -> int:
        calls.append(1)
        if len(calls) <= 2:
            raise lost("admin shutdown")
        stop.set()
        return real(until)

    monkeypatch.setattr(projector, "run_once", flaky)
    projector.run_forever(stop, poll_seconds=0.01)

    assert len(calls) == 3  # two failures waited out, then a batch applied
    reliability.add(AREA, restarts=0, checks=1)
