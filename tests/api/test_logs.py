"""Structured logs (LOG_FORMAT=json): one JSON object per line for every request, command,
worker pass and exception, carrying the request id, and never a person's data.

The JSON lines are read back as an operator's log shipper would, and every field checked.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.logs import configure_logging, log_command
from adapters.metrics import PROMETHEUS
from adapters.settings import ConfigError, ProcessSettings
from api.bootstrap import Services
from application.ledger import Ledger
from application.receipts import Swept
from application.settings import LedgerSettings
from application.workers import run_every
from domain.aggregate import Cause
from domain.errors import ConcurrencyConflict
from tests.api.conftest import Account
from tests.api.test_deposits_simulated import checkout, local_path

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs() -> Iterator[tuple[Lines, io.StringIO]]:
    """The process's logs as JSON lines, in a buffer, for one test."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", "INFO", stream=stream)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    try:
        yield lines, stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def of(lines: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [line for line in lines if all(line.get(k) == v for k, v in match.items())]


def test_every_request_logs_one_line_with_its_id_user_route_status_and_duration(
    api_client: TestClient,
    register_user: Callable[..., Account],
    json_logs: tuple[Lines, io.StringIO],
) -> None:
    lines, _ = json_logs
    account = register_user()
    request_id = f"req-{uuid.uuid4().hex[:8]}"

    answer = api_client.get("/v1/wallet", headers={**account.headers, "X-Request-Id": request_id})

    assert answer.status_code == 200
    [line] = of(lines(), message="request", request_id=request_id)
    assert line["user_id"] == str(account.id)
    assert line["route"] == "/v1/wallet"  # the template, never the raw path
    assert line["method"] == "GET" and line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["logger"] == "peerpush.http" and line["time"]


def test_a_route_with_an_id_logs_its_template_and_an_anonymous_request_no_user(
    api_client: TestClient, json_logs: tuple[Lines, io.StringIO]
) -> None:
    lines, _ = json_logs
    missing = uuid.uuid4()

    api_client.get(f"/v1/challenges/{missing}")
    api_client.get("/v1/health")

    by_route = {line["route"]: line for line in of(lines(), message="request")}
    assert str(missing) not in json.dumps(list(by_route))
    assert by_route["/v1/challenges/{challenge_id}"]["status"] == 401
    assert by_route["/v1/health"]["user_id"] is None
    # The server's own id when the client sent none, echoed in the header.
    assert uuid.UUID(by_route["/v1/health"]["request_id"])


def test_a_command_logs_its_outcome_and_position_under_the_requests_id(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    json_logs: tuple[Lines, io.StringIO],
) -> None:
    lines, _ = json_logs
    account = register_user()
    opened = checkout(api_client, account, 700)
    api_client.post(local_path(opened["checkout_url"]) + "/pay", follow_redirects=False)

    refused = api_client.post(
        "/v1/wallet/withdrawals",
        json={"tokens": 5_000},
        headers={**account.headers, "X-Request-Id": "too-much-1"},
    )

    assert refused.status_code in (402, 409)
    # Stripe's two events about the payment each credit it: the second finds it done.
    credited = of(lines(), message="command", command="credit_deposit")
    assert credited and all(c["outcome"] == "done" and c["retries"] == 0 for c in credited)
    assert all(0 < c["position"] <= api_services.ledger.head() for c in credited)
    [withdrawal] = of(lines(), message="command", command="request_withdrawal")
    assert withdrawal["request_id"] == "too-much-1"
    assert withdrawal["outcome"] == "refused"
    assert withdrawal["code"] == refused.json()["code"]
    assert withdrawal["position"] is None


def test_an_exception_is_one_event_with_the_request_id(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    json_logs: tuple[Lines, io.StringIO],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines, _ = json_logs
    account = register_user()

    def broken(*_: Any) -> None:
        raise RuntimeError("the read models are on fire")

    monkeypatch.setattr(api_services.reads, "wallet_now", broken)
    answer = lenient_client.get("/v1/wallet", headers={**account.headers, "X-Request-Id": "boom-1"})

    assert answer.status_code == 500
    events = [line for line in of(lines(), request_id="boom-1") if "exc_info" in line]
    assert len(events) == 1
    [event] = events
    assert event["level"] == "ERROR" and event["route"] == "/v1/wallet"
    assert "the read models are on fire" in event["exc_info"]
    assert of(lines(), message="request", request_id="boom-1")[0]["status"] == 500


def test_no_log_line_holds_an_email_name_password_or_token(
    api_client: TestClient,
    register_user: Callable[..., Account],
    json_logs: tuple[Lines, io.StringIO],
) -> None:
    _, stream = json_logs
    account = register_user()
    api_client.post(
        "/v1/auth/login", json={"email": account.email, "password": "a wrong password here"}
    )
    api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    opened = checkout(api_client, account, 300)
    api_client.post(local_path(opened["checkout_url"]) + "/pay", follow_redirects=False)

    text = stream.getvalue()
    assert text.count('"message": "request"') >= 6
    for secret in (
        account.email,
        account.email.split("@")[0],
        account.username,
        account.password,
        "a wrong password here",
        account.access_token,
        account.refresh_token,
        "424242424242",  # a test card number (4242 alone turns up in random request ids)
    ):
        assert secret not in text, secret


def test_a_worker_pass_logs_what_it_did(json_logs: tuple[Lines, io.StringIO]) -> None:
    lines, _ = json_logs
    stop = threading.Event()
    settled = (uuid.uuid4(), uuid.uuid4())

    def one_pass() -> Swept:
        stop.set()
        return Swept(42, settled, (), (), due=3)

    run_every("settlement", one_pass, 0.0, stop, PROMETHEUS)

    [line] = of(lines(), message="worker pass", worker="settlement")
    assert line["settled"] == 2 and line["cancelled"] == 0 and line["due"] == 3
    assert line["position"] == 42


def test_a_failed_worker_pass_is_one_event_naming_the_worker(
    json_logs: tuple[Lines, io.StringIO],
) -> None:
    lines, _ = json_logs
    stop = threading.Event()

    def failing() -> None:
        stop.set()
        raise RuntimeError("stripe is down")

    run_every("cashouts", failing, 0.0, stop, PROMETHEUS)

    [event] = [line for line in lines() if line.get("worker") == "cashouts"]
    assert event["level"] == "ERROR" and "stripe is down" in event["exc_info"]


class _Conflicting(Ledger):
    """A ledger whose saves conflict the first ``conflicts`` times."""

    conflicts = 0

    def _save(self, *args: Any, **kwargs: Any) -> Any:
        # Every command's save passes here, batched (group commit) or not.
        from eventsourcing.persistence import IntegrityError

        if self.conflicts:
            self.conflicts -= 1
            raise IntegrityError("version taken")
        return super()._save(*args, **kwargs)


def test_a_command_retried_after_conflicts_logs_how_many_and_one_that_gives_up_says_so(
    json_logs: tuple[Lines, io.StringIO],
) -> None:
    lines, _ = json_logs
    ledger = _Conflicting(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        settings=LedgerSettings.defaults().model_copy(update={"command_retries": 3}),
    )
    ledger.observers.append(log_command)  # as the composition root adds it
    ledger.conflicts = 2
    ledger.open_wallet(uuid.uuid4(), Cause.worker("test", "retry"))
    ledger.conflicts = 10
    with pytest.raises(ConcurrencyConflict):
        ledger.open_wallet(uuid.uuid4(), Cause.worker("test", "give-up"))

    done, gave_up = of(lines(), message="command", command="open_wallet")
    assert (done["outcome"], done["retries"], done["position"]) == ("done", 2, 1)
    assert (gave_up["outcome"], gave_up["code"], gave_up["retries"]) == (
        "conflict",
        "version_conflict",
        3,
    )
    assert gave_up["level"] == "WARNING"


def test_production_logs_json_and_development_text_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production = ProcessSettings(env="production", database_url="postgresql://db/ledger")
    assert production.log_format == "json"
    assert ProcessSettings(env="development").log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/ledger")
    assert ProcessSettings.from_env().log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        ProcessSettings.from_env()


def test_the_text_format_is_one_readable_line_with_the_request_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("text", "INFO", stream=stream)
    try:
        logging.getLogger("peerpush.test").info(
            "command", extra={"request_id": "r-1", "outcome": "done"}
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    [line] = stream.getvalue().splitlines()
    assert "INFO peerpush.test [r-1] command outcome=done" in line
