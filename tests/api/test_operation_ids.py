"""Ids of created things come from the ``Idempotency-Key``'s stored record (rules §7), the
stored response is written in the command's own transaction, and client request ids are
bounded before they reach the permanent stream."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from api.idempotency import REPLAYED_HEADER
from application.idempotency import PendingResponse, request_hash, responding
from domain.aggregate import Cause
from domain.errors import NotFound
from tests.api.conftest import Account, bearer
from tests.api.test_challenges import challenge_body, next_midnight

WITHDRAWALS = "/v1/wallet/withdrawals"
ADJUSTMENTS = "/v1/admin/adjustments"


def fund(services: Services, user_id: UUID, cents: int = 1_000) -> None:
    services.ledger.credit_deposit(
        user_id, f"pi_ids_{uuid.uuid4().hex}", cents, Cause.stripe(f"evt_{uuid.uuid4().hex}")
    )


def expire(services: Services, key: str) -> None:
    """Age the key's record past its 24 h retention."""
    with psycopg.connect(services.db.url) as conn:
        conn.execute(
            f'UPDATE "{services.db.schema}".idempotency_keys '
            "SET created_at = created_at - interval '24 hours 1 second' WHERE key = %s",
            (key,),
        )


def pending(services: Services, user_id: UUID) -> int:
    return int(services.ledger.wallet_of(user_id).withdrawal_pending)


def withdraw(client: TestClient, account: Account, tokens: int, **headers: str) -> Any:
    return client.post(WITHDRAWALS, json={"tokens": tokens}, headers={**account.headers, **headers})


# -- 1. ids from the key's record --------------------------------------------------------


def test_an_adjustment_key_reused_after_it_expired_is_a_new_adjustment(
    api_client: TestClient,
    api_services: Services,
    admin_token: str,
    register_user: Callable[..., Account],
) -> None:
    user = register_user()
    key = f"monthly-fix-{uuid.uuid4().hex[:8]}"
    headers = {**bearer(admin_token), "Idempotency-Key": key}
    body = {"user_id": str(user.id), "direction": "credit", "tokens": 50, "reason": "fix"}
    credit = api_client.post(ADJUSTMENTS, json=body, headers=headers)
    assert credit.status_code == 201, credit.text
    expire(api_services, key)
    debit = api_client.post(
        ADJUSTMENTS, json={**body, "direction": "debit", "tokens": 20}, headers=headers
    )
    assert debit.status_code == 201, debit.text
    assert debit.json()["adjustment_id"] != credit.json()["adjustment_id"]
    assert api_services.ledger.wallet_of(user.id).available == 30


def test_a_withdrawal_key_reused_after_it_expired_holds_again(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    fund(api_services, account.id)
    key = f"w-{uuid.uuid4().hex[:8]}"
    first = withdraw(api_client, account, 100, **{"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    expire(api_services, key)
    second = withdraw(api_client, account, 200, **{"Idempotency-Key": key})
    assert second.status_code == 202, second.text
    assert second.json()["withdrawal_id"] != first.json()["withdrawal_id"]
    assert pending(api_services, account.id) == 300


def test_two_withdrawals_sent_with_one_request_id_are_two_withdrawals(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    fund(api_services, account.id)
    first = withdraw(api_client, account, 100, **{"X-Request-Id": "same-request"})
    second = withdraw(api_client, account, 150, **{"X-Request-Id": "same-request"})
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["withdrawal_id"] != second.json()["withdrawal_id"]
    assert pending(api_services, account.id) == 250


def test_a_released_key_keeps_its_operation_id(api_services: Services) -> None:
    """A failed attempt (its commit's outcome perhaps lost) gives the key back for a retry,
    but the retry names the same operation: it cannot make a second one."""
    store, user, key = api_services.idempotency, uuid.uuid4(), str(uuid.uuid4())
    digest = request_hash({"tokens": 5})
    first = store.begin(user, "POST /test/ops", key, digest)
    assert first.operation_id is not None
    store.release(first)
    retry = store.begin(user, "POST /test/ops", key, digest)
    assert retry.outcome.value == "started"
    assert retry.operation_id == first.operation_id
    assert retry.token != first.token


def test_a_taken_over_claim_keeps_its_operation_id(api_services: Services) -> None:
    store, user, key = api_services.idempotency, uuid.uuid4(), str(uuid.uuid4())
    digest = request_hash({"tokens": 5})
    first = store.begin(user, "POST /test/ops", key, digest)
    with psycopg.connect(api_services.db.url) as conn:
        conn.execute(
            f'UPDATE "{api_services.db.schema}".idempotency_keys '
            "SET claimed_at = claimed_at - interval '61 seconds' WHERE key = %s",
            (key,),
        )
    taken = store.begin(user, "POST /test/ops", key, digest)
    assert taken.outcome.value == "started"
    assert taken.operation_id == first.operation_id


def test_a_retry_after_a_failed_withdrawal_names_the_same_withdrawal(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt's events commit but the command then fails (the commit's answer
    was lost): the key is given back, and the retry cannot hold the tokens a second time."""
    account = register_user()
    fund(api_services, account.id)
    ledger = api_services.ledger

    def lose_the_answer(*_: Any, **__: Any) -> None:
        # Called by every save once its events committed (alone or in a group commit).
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    key = f"w-{uuid.uuid4().hex[:8]}"
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "_notify", lose_the_answer)
        lost = withdraw(lenient_client, account, 100, **{"Idempotency-Key": key})
    assert lost.status_code == 503  # the database connection failed: try again
    retry = withdraw(lenient_client, account, 100, **{"Idempotency-Key": key})
    assert retry.status_code == 202, retry.text
    assert pending(api_services, account.id) == 100


def test_a_challenge_draft_key_reused_after_it_expired_drafts_a_new_challenge(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    key = f"draft-{uuid.uuid4().hex[:8]}"
    headers = {**account.headers, "Idempotency-Key": key}
    body = challenge_body(next_midnight(api_services.clock.now()))
    first = api_client.post("/v1/challenges", json=body, headers=headers)
    assert first.status_code == 201, first.text
    expire(api_services, key)
    second = api_client.post(
        "/v1/challenges", json={**body, "name": "Evening runs"}, headers=headers
    )
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert api_services.ledger.challenge(UUID(second.json()["id"])).terms.name == "Evening runs"


def test_a_checkout_key_reused_after_it_expired_opens_a_new_checkout(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    key = f"buy-{uuid.uuid4().hex[:8]}"
    urls = {
        "success_url": "http://127.0.0.1:8000/paid",
        "cancel_url": "http://127.0.0.1:8000/back",
    }
    headers = {**account.headers, "Idempotency-Key": key}
    first = api_client.post("/v1/wallet/deposits", json={"tokens": 100, **urls}, headers=headers)
    assert first.status_code == 201, first.text
    expire(api_services, key)
    second = api_client.post("/v1/wallet/deposits", json={"tokens": 300, **urls}, headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["deposit_id"] != first.json()["deposit_id"]
    assert second.json()["tokens"] == 300


def test_keys_stored_before_operation_ids_keep_replaying(api_services: Services) -> None:
    """A record written before this change has no operation id: its response still replays,
    and a running one that was abandoned gets an id when it is taken over."""
    user, digest = uuid.uuid4(), request_hash({"tokens": 5})
    done, running = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(api_services.db.url) as conn:
        table = f'"{api_services.db.schema}".idempotency_keys'
        conn.execute(
            f"INSERT INTO {table} (user_id, route, key, request_hash, state, claim, status, "
            "body, created_at, claimed_at, completed_at) VALUES "
            "(%s, 'POST /old', %s, %s, 'done', %s, 201, '{\"old\": true}', now(), now(), now()),"
            "(%s, 'POST /old', %s, %s, 'running', %s, NULL, NULL, now(), "
            "now() - interval '2 minutes', NULL)",
            (user, done, digest, uuid.uuid4(), user, running, digest, uuid.uuid4()),
        )
    replay = api_services.idempotency.begin(user, "POST /old", done, digest)
    assert (replay.outcome.value, replay.status, replay.body) == ("replay", 201, {"old": True})
    taken = api_services.idempotency.begin(user, "POST /old", running, digest)
    assert taken.outcome.value == "started" and taken.operation_id is not None


# -- 2. the stored response is written with the command's effect ----------------------------


def test_a_crash_after_the_commit_leaves_the_response_to_replay(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The events commit, then the process dies before it answers: the key's record already
    holds the response, so the client's retry gets it back."""
    account = register_user()
    fund(api_services, account.id)
    ledger = api_services.ledger

    class Died(Exception):
        pass

    def die(*_: Any, **__: Any) -> None:
        # Called by every save once its events committed (alone or in a group commit).
        raise Died

    key = f"w-{uuid.uuid4().hex[:8]}"
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "_notify", die)
        # Dying means nothing after the commit runs: not even giving the key back.
        patch.setattr(api_services.idempotency, "release", lambda claim: None)
        died = withdraw(lenient_client, account, 120, **{"Idempotency-Key": key})
    assert died.status_code == 500
    retry = withdraw(lenient_client, account, 120, **{"Idempotency-Key": key})
    assert retry.status_code == 202, retry.text
    assert retry.headers.get(REPLAYED_HEADER) == "true"
    assert retry.json()["tokens"] == 120 and retry.json()["status"] == "pending"
    assert pending(api_services, account.id) == 120


def test_a_failure_storing_the_response_rolls_the_withdrawal_back(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    failing_response_writes: None,
) -> None:
    account = register_user()
    fund(api_services, account.id)
    failed = withdraw(lenient_client, account, 100, **{"Idempotency-Key": "w-fails"})
    assert failed.status_code == 500
    assert pending(api_services, account.id) == 0


def test_a_failure_storing_an_adjustments_response_rolls_it_back(
    lenient_client: TestClient,
    api_services: Services,
    admin_token: str,
    register_user: Callable[..., Account],
    failing_response_writes: None,
) -> None:
    user = register_user()
    body = {"user_id": str(user.id), "direction": "credit", "tokens": 50, "reason": "fix"}
    headers = {**bearer(admin_token), "Idempotency-Key": "adj-fails"}
    assert lenient_client.post(ADJUSTMENTS, json=body, headers=headers).status_code == 500
    with pytest.raises(NotFound):  # the wallet the credit would have opened was not saved
        api_services.ledger.wallet_of(user.id)


def test_a_failure_storing_a_drafts_response_rolls_the_draft_back(
    lenient_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    failing_response_writes: None,
) -> None:
    account = register_user()
    key = f"draft-{uuid.uuid4().hex[:8]}"
    body = challenge_body(next_midnight(api_services.clock.now()))
    headers = {**account.headers, "Idempotency-Key": key}
    assert lenient_client.post("/v1/challenges", json=body, headers=headers).status_code == 500
    with psycopg.connect(api_services.db.url) as conn:
        row = conn.execute(
            f'SELECT operation_id FROM "{api_services.db.schema}".idempotency_keys WHERE key = %s',
            (key,),
        ).fetchone()
    assert row is not None and row[0] is not None  # kept, released, for the retry
    with pytest.raises(NotFound):
        api_services.ledger.challenge(row[0])


def test_an_error_building_the_response_rolls_the_events_back(api_services: Services) -> None:
    """Not only a failed SQL write: a responder's own error undoes the save too, and the
    ledger's connections stay usable."""
    user, key = uuid.uuid4(), str(uuid.uuid4())
    claim = api_services.idempotency.begin(user, "POST /test/ops", key, request_hash({}))
    assert claim.operation_id is not None

    class Broken(Exception):
        pass

    def respond(*_: Any) -> tuple[int, Any]:
        raise Broken

    cause = Cause.admin(uuid.uuid4(), "t")
    with responding(PendingResponse(claim, claim.operation_id, respond)), pytest.raises(Broken):
        api_services.ledger.adjust(user, "credit", 10, "x", claim.operation_id, cause)
    with pytest.raises(NotFound):
        api_services.ledger.wallet_of(user)
    api_services.ledger.adjust(user, "credit", 10, "x", claim.operation_id, cause)
    assert api_services.ledger.wallet_of(user).available == 10


# -- 3. request ids ------------------------------------------------------------------------


SERVER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@pytest.mark.parametrize("sent", ["x" * 65, "has space", "semi;colon", "a/b", "<script>"])
def test_an_unacceptable_request_id_is_replaced_by_the_servers(
    api_client: TestClient,
    api_services: Services,
    admin_token: str,
    register_user: Callable[..., Account],
    sent: str,
) -> None:
    user = register_user()
    body = {"user_id": str(user.id), "direction": "credit", "tokens": 5, "reason": "rid"}
    made = api_client.post(
        ADJUSTMENTS, json=body, headers={**bearer(admin_token), "X-Request-Id": sent}
    )
    assert made.status_code == 201, made.text
    echoed = made.headers["X-Request-Id"]
    assert echoed != sent and SERVER_ID.fullmatch(echoed)
    recorded = {e.request_id for e in _events_of(api_services, user.id)}
    assert echoed in recorded and sent not in recorded


def test_an_acceptable_request_id_is_kept(
    api_client: TestClient,
    api_services: Services,
    admin_token: str,
    register_user: Callable[..., Account],
) -> None:
    user = register_user()
    sent = f"req-{uuid.uuid4().hex[:8]}:A.b_c"
    body = {"user_id": str(user.id), "direction": "credit", "tokens": 5, "reason": "rid"}
    made = api_client.post(
        ADJUSTMENTS, json=body, headers={**bearer(admin_token), "X-Request-Id": sent}
    )
    assert made.status_code == 201
    assert made.headers["X-Request-Id"] == sent
    assert sent in {e.request_id for e in _events_of(api_services, user.id)}


def _events_of(services: Services, user_id: UUID) -> list[Any]:
    wallet = services.ledger.wallet_of(user_id)
    events = services.ledger.repository.event_store.get(wallet.id)
    return [e for e in events if hasattr(e, "request_id")]
