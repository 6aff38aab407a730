"""Deposits through Stripe over HTTP (rules §2, §6), against a local server speaking Stripe's
API: the real ``stripe`` library opens checkouts there, and the webhooks it would send are
signed as Stripe signs them and posted to ``/v1/stripe/webhook``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.payments import PgLocks
from adapters.persistence import DatabaseSettings
from api.bootstrap import Services, build_services
from application.ports import MovableClock
from application.withdrawals import WithdrawalWorker
from tests.api.conftest import Account, api_config
from tests.fakes.stripe_server import API_KEY, FakeStripe
from tests.invariants import check_wallet

Register = Callable[..., Account]
# Return URLs are on the public origin (the default base URL, http://127.0.0.1:8000).
URLS = {
    "success_url": "http://127.0.0.1:8000/paid",
    "cancel_url": "http://127.0.0.1:8000/cancelled",
}


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe
) -> Iterator[Services]:
    """The app's services on the real Stripe gateway, pointed at the fake server."""
    config = api_config(
        tmp_path_factory.mktemp("proofs"),
        stripe_mode="stripe",
        stripe_api_key=API_KEY,
        stripe_webhook_secret=fake_stripe.webhook_secret,
        stripe_api_base=fake_stripe.url,
    )
    services = build_services(config, db=api_db)
    try:
        yield services
    finally:
        services.close()


def deposit(client: TestClient, account: Account, tokens: int, **headers: str) -> Any:
    return client.post(
        "/v1/wallet/deposits",
        json={"tokens": tokens, **URLS},
        headers={**account.headers, **headers},
    )


def deliver(client: TestClient, fake: FakeStripe, event: dict[str, Any], **signing: Any) -> Any:
    body, headers = fake.webhook(event, **signing)
    return client.post("/v1/stripe/webhook", content=body, headers=headers)


def wallet(client: TestClient, services: Services, account: Account) -> dict[str, Any]:
    services.projector.catch_up()
    response = client.get("/v1/wallet", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def paid_deposit(
    client: TestClient, fake: FakeStripe, account: Account, tokens: int
) -> tuple[str, list[dict[str, Any]]]:
    """Open a checkout and pay it at Stripe; returns the PaymentIntent and Stripe's events."""
    opened = deposit(client, account, tokens)
    assert opened.status_code == 201, opened.text
    events = fake.pay(opened.json()["session_id"])
    return events[1]["data"]["object"]["id"], events


def test_a_checkout_is_a_stripe_payment_session_naming_the_user_and_tokens(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents

    response = deposit(api_client, account, 2500)

    assert response.status_code == 201, response.text
    body = response.json()
    session = fake_stripe.sessions[body["session_id"]]
    assert body["checkout_url"] == session["url"]
    assert body["tokens"] == 2500 and body["amount_cents"] == 2500 * price
    assert session["mode"] == "payment" and session["currency"] == "usd"
    assert session["amount_total"] == 2500 * price
    assert session["client_reference_id"] == str(account.id)
    intent_metadata = session["_intent_metadata"]
    assert intent_metadata["user_id"] == str(account.id)
    assert intent_metadata["tokens"] == "2500"
    call = next(r for r in fake_stripe.requests if r.path == "/v1/checkout/sessions")
    assert call.idempotency_key


@pytest.mark.parametrize(
    "order",
    [
        ("completed", "succeeded"),
        ("succeeded", "completed"),
        ("completed", "completed", "succeeded", "succeeded", "completed"),
        ("succeeded", "succeeded"),
        ("completed",),
    ],
)
def test_a_paid_checkout_is_credited_once_whatever_the_order_and_repeats_of_its_events(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    order: tuple[str, ...],
) -> None:
    account = register_user()
    _, (completed, succeeded) = paid_deposit(api_client, fake_stripe, account, 1200)
    events = {"completed": completed, "succeeded": succeeded}

    outcomes = []
    for name in order:
        response = deliver(api_client, fake_stripe, events[name])
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["outcome"])

    assert outcomes[0] == "credited"
    balances = wallet(api_client, api_services, account)
    assert balances["available"] == balances["deposited"] == 1200


def test_concurrent_deliveries_of_both_events_credit_once(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    _, events = paid_deposit(api_client, fake_stripe, account, 700)
    statuses: list[int] = []

    def send(event: dict[str, Any]) -> None:
        statuses.append(deliver(api_client, fake_stripe, event).status_code)

    threads = [threading.Thread(target=send, args=(e,)) for e in events * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [200] * 8
    assert wallet(api_client, api_services, account)["available"] == 700


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "changed_body", "too_old", "no_header", "garbage_header"],
)
def test_a_webhook_without_a_valid_signature_is_refused_and_credits_nothing(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    tamper: str,
) -> None:
    account = register_user()
    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, 900)
    body, headers = fake_stripe.webhook(completed)
    if tamper == "wrong_secret":
        body, headers = fake_stripe.webhook(completed, secret="whsec_someone_else")
    elif tamper == "changed_body":
        body = body.replace(b'"amount_total": 900', b'"amount_total": 90000')
    elif tamper == "too_old":
        body, headers = fake_stripe.webhook(completed, timestamp=int(time.time()) - 301)
    elif tamper == "no_header":
        del headers["Stripe-Signature"]
    else:
        headers["Stripe-Signature"] = "t=abc,v1=zz"

    response = api_client.post("/v1/stripe/webhook", content=body, headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_signature"
    assert wallet(api_client, api_services, account)["deposited"] == 0


def test_a_payment_intent_without_our_metadata_is_acknowledged_and_ignored(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe
) -> None:
    head = api_services.ledger.head()

    response = deliver(api_client, fake_stripe, fake_stripe.foreign_payment())

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert api_services.ledger.head() == head


def test_an_unknown_event_type_is_acknowledged_and_ignored(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe
) -> None:
    head = api_services.ledger.head()
    event = fake_stripe.event("customer.created", {"id": "cus_1", "object": "customer"})

    response = deliver(api_client, fake_stripe, event)

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert api_services.ledger.head() == head


def test_the_daily_limit_counts_credited_deposits_and_open_checkouts_over_a_rolling_day(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    limit = api_services.ledger.settings.max_deposit_tokens_day

    too_big = deposit(api_client, account, limit + 1)
    assert too_big.status_code == 422

    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, limit // 2)
    assert deliver(api_client, fake_stripe, completed).json()["outcome"] == "credited"
    still_open = deposit(api_client, account, limit // 4)
    assert still_open.status_code == 201

    refused = deposit(api_client, account, limit // 4 + 1)
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "deposit_limit_exceeded"
    assert problem["remaining"] == limit // 4 and problem["limit"] == limit
    assert deposit(api_client, account, limit // 4).status_code == 201

    clock = api_services.clock
    assert isinstance(clock, MovableClock)
    clock.advance(timedelta(hours=24, seconds=1))
    assert deposit(api_client, account, limit).status_code == 201


def test_an_expired_checkout_no_longer_counts_against_the_limit(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    limit = api_services.ledger.settings.max_deposit_tokens_day
    opened = deposit(api_client, account, limit).json()
    assert deposit(api_client, account, 1).status_code == 409
    session = dict(fake_stripe.sessions[opened["session_id"]], status="expired")
    session.pop("_intent_metadata")

    event = fake_stripe.event("checkout.session.expired", session)

    expired = deliver(api_client, fake_stripe, event)

    assert expired.json()["outcome"] == "expired"
    assert deposit(api_client, account, 1).status_code == 201


def test_the_same_idempotency_key_opens_one_checkout(
    api_client: TestClient, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    first = deposit(api_client, account, 300, **{"Idempotency-Key": "buy-300"})
    again = deposit(api_client, account, 300, **{"Idempotency-Key": "buy-300"})

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()


def test_deposit_checkouts_are_limited_to_ten_an_hour(
    api_client: TestClient, register_user: Register, rate_limits_on: None
) -> None:
    account = register_user()
    statuses = [deposit(api_client, account, 10).status_code for _ in range(10)]

    refused = deposit(api_client, account, 10)

    assert statuses == [201] * 10
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0


def test_a_dispute_freezes_the_lot_and_a_lost_one_writes_it_off(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    intent, (completed, _) = paid_deposit(api_client, fake_stripe, account, 1000)
    deliver(api_client, fake_stripe, completed)

    created = fake_stripe.dispute(intent)
    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "dispute_opened"
    frozen = wallet(api_client, api_services, account)
    assert (frozen["available"], frozen["frozen"]) == (0, 1000)

    closed = fake_stripe.close_dispute(created["data"]["object"]["id"], "lost")
    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "dispute_lost"
    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "duplicate"
    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "duplicate"
    after = wallet(api_client, api_services, account)
    assert (after["available"], after["frozen"], after["written_off"]) == (0, 0, 1000)


def test_a_won_dispute_unfreezes_the_lot(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    intent, (_, succeeded) = paid_deposit(api_client, fake_stripe, account, 800)
    deliver(api_client, fake_stripe, succeeded)
    created = fake_stripe.dispute(intent)
    closed = fake_stripe.close_dispute(created["data"]["object"]["id"], "won")

    # Stripe promises no order: the closing event may come first.
    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "dispute_won"
    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "duplicate"

    after = wallet(api_client, api_services, account)
    assert (after["available"], after["frozen"], after["written_off"]) == (800, 0, 0)


def test_a_dispute_on_a_payment_our_sessions_do_not_know_finds_its_user_at_stripe(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    intent = fake_stripe.payment_intent(600, {"user_id": str(account.id), "tokens": "600"})
    succeeded = fake_stripe.event("payment_intent.succeeded", fake_stripe.intents[intent])
    assert deliver(api_client, fake_stripe, succeeded).json()["outcome"] == "credited"

    created = fake_stripe.dispute(intent)

    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "dispute_opened"
    assert wallet(api_client, api_services, account)["frozen"] == 600


def test_a_dispute_lost_before_its_deposit_is_credited_writes_the_deposit_off_at_the_credit(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    intent = fake_stripe.payment_intent(900, {"user_id": str(account.id), "tokens": "900"})
    succeeded = fake_stripe.event("payment_intent.succeeded", dict(fake_stripe.intents[intent]))
    created = fake_stripe.dispute(intent)
    closed = fake_stripe.close_dispute(created["data"]["object"]["id"], "lost")

    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "dispute_lost"
    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "duplicate"
    assert deliver(api_client, fake_stripe, succeeded).json()["outcome"] == "credited"

    after = wallet(api_client, api_services, account)
    assert (after["deposited"], after["available"], after["written_off"]) == (900, 0, 900)


def test_a_refund_made_outside_our_flow_is_written_off_once(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents
    intent, (completed, _) = paid_deposit(api_client, fake_stripe, account, 1000)
    deliver(api_client, fake_stripe, completed)

    refunded = fake_stripe.refund_outside(intent, 300 * price)
    assert deliver(api_client, fake_stripe, refunded).json()["outcome"] == "written_off"
    assert deliver(api_client, fake_stripe, refunded).json()["outcome"] == "ours"

    after = wallet(api_client, api_services, account)
    assert (after["available"], after["written_off"]) == (700, 300)


def test_a_withdrawal_is_refunded_by_the_worker_and_a_later_failure_returns_its_tokens(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents
    for tokens in (400, 600):
        _, (completed, _) = paid_deposit(api_client, fake_stripe, account, tokens)
        deliver(api_client, fake_stripe, completed)
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 700}, headers=account.headers
    )
    assert requested.status_code == 202, requested.text
    withdrawal_id = requested.json()["withdrawal_id"]
    worker = WithdrawalWorker(api_services.ledger, api_services.payments, PgLocks(api_services.db))

    early = fake_stripe.refunds_for({"withdrawal_id": withdrawal_id})
    assert early == []  # nothing is refunded before the worker runs
    done = worker.run_pass()
    worker.run_pass()

    refunds = fake_stripe.refunds_for({"withdrawal_id": withdrawal_id})
    assert sorted(r["amount"] for r in refunds) == [300 * price, 400 * price]
    api_services.projector.catch_up()
    shown = api_client.get(f"/v1/wallet/withdrawals/{withdrawal_id}", headers=account.headers)
    assert shown.json()["status"] == "settled"
    assert {lot["status"] for lot in shown.json()["lots"]} == {"refunded"}
    assert len(done.refunded) == 2
    assert wallet(api_client, api_services, account)["refunded"] == 700

    intents = {r["payment_intent"] for r in refunds}
    charge = {"id": "ch_x", "object": "charge", "payment_intent": intents.pop(), "refunded": True}
    ours = deliver(api_client, fake_stripe, fake_stripe.event("charge.refunded", charge))
    assert ours.json()["outcome"] == "ours"  # the worker's refunds are not written off

    failed = fake_stripe.fail_refund(next(r["id"] for r in refunds if r["amount"] == 300 * price))
    assert deliver(api_client, fake_stripe, failed).json()["outcome"] == "refund_failed"
    assert deliver(api_client, fake_stripe, failed).json()["outcome"] == "duplicate"
    after = wallet(api_client, api_services, account)
    assert (after["available"], after["refunded"]) == (600, 400)


def test_a_refund_failure_arriving_before_the_refund_is_recorded_is_asked_again(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, 500)
    deliver(api_client, fake_stripe, completed)
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 500}, headers=account.headers
    ).json()
    lot_id = requested["lots"][0]["lot_id"]
    failure = fake_stripe.event(
        "refund.updated",
        {
            "id": "re_not_recorded",
            "object": "refund",
            "status": "failed",
            "metadata": {
                "withdrawal_id": requested["withdrawal_id"],
                "lot_id": lot_id,
                "user_id": str(account.id),
            },
        },
    )

    response = deliver(api_client, fake_stripe, failure)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert wallet(api_client, api_services, account)["withdrawal_pending"] == 500


def test_event_ids_are_kept_as_the_cause_of_every_ledger_event(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, 100)
    deliver(api_client, fake_stripe, completed)

    credit = next(
        e
        for e in api_services.ledger.events.get(api_services.ledger.wallet_of(account.id).id)
        if type(e).__name__ == "DepositCredited"
    )

    assert (credit.actor, credit.request_id) == ("stripe", completed["id"])


def _dispute_losses(client: TestClient, services: Services, admin_token: str) -> int:
    services.projector.catch_up()
    got = client.get("/v1/platform/revenue", headers={"Authorization": f"Bearer {admin_token}"})
    assert got.status_code == 200, got.text
    return sum(int(row["dispute_losses"]) for row in got.json()["items"])


def test_a_lost_dispute_on_a_lot_refunded_outside_our_flow_is_a_platform_loss(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    admin_token: str,
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents
    intent, (completed, _) = paid_deposit(api_client, fake_stripe, account, 700)
    deliver(api_client, fake_stripe, completed)
    refunded = fake_stripe.refund_outside(intent, 700 * price)
    assert deliver(api_client, fake_stripe, refunded).json()["outcome"] == "written_off"
    losses_before = _dispute_losses(api_client, api_services, admin_token)

    created = fake_stripe.dispute(intent)
    assert deliver(api_client, fake_stripe, created).json()["outcome"] == "dispute_opened"
    closed = fake_stripe.close_dispute(created["data"]["object"]["id"], "lost")
    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "dispute_lost"
    assert deliver(api_client, fake_stripe, closed).json()["outcome"] == "duplicate"

    after = wallet(api_client, api_services, account)
    assert (after["available"], after["frozen"], after["written_off"]) == (0, 0, 1400)
    lot = next(iter(api_services.ledger.wallet_of(account.id).lots.values()))
    assert lot.loss == 700
    check_wallet(api_services.ledger.wallet_of(account.id))
    assert _dispute_losses(api_client, api_services, admin_token) == losses_before + 700
