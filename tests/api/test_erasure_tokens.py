"""No token stranded in an erased user's wallet (rules §7), and refunds that end ``failed`` or
``canceled`` return what they took (rules §6) — through the webhook, the withdrawal worker and
the local server speaking Stripe's API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.payments import PgLocks
from api.bootstrap import Services
from application.withdrawals import WithdrawalWorker
from domain import ids
from domain.wallet import Wallet
from tests.api import test_deposits
from tests.api.conftest import Account
from tests.api.test_deposits import deliver, deposit, paid_deposit, wallet
from tests.api.test_erasure import assert_problem, audit_verify, erase_me
from tests.fakes.stripe_server import FakeStripe

Register = Callable[..., Account]

# The deposits tests' module fixtures: the app on the real Stripe gateway, pointed at the
# local server.
fake_stripe = test_deposits.fake_stripe
api_services = test_deposits.api_services


def worker(services: Services) -> WithdrawalWorker:
    return WithdrawalWorker(services.ledger, services.payments, PgLocks(services.db))


def expire(client: TestClient, fake: FakeStripe, session_id: str) -> None:
    session = {k: v for k, v in fake.sessions[session_id].items() if not k.startswith("_")}
    expired = fake.event("checkout.session.expired", {**session, "status": "expired"})
    assert deliver(client, fake, expired).json()["outcome"] == "expired"


def events_of(services: Services, account: Account) -> list[Any]:
    return list(services.ledger.events.get(ids.wallet_id(account.id)))


def test_erasure_is_refused_while_a_checkout_is_open(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    opened = deposit(api_client, account, 100)
    assert opened.status_code == 201, opened.text

    refused = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert refused["checkouts"] == 100

    expire(api_client, fake_stripe, opened.json()["session_id"])
    assert erase_me(api_client, account).status_code == 204


def test_a_checkout_paid_after_the_erasure_is_refunded_to_the_card_once(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents
    opened = deposit(api_client, account, 300).json()
    expire(api_client, fake_stripe, opened["session_id"])
    assert erase_me(api_client, account).status_code == 204

    completed, _ = fake_stripe.pay(opened["session_id"])  # the payment arrives late
    assert deliver(api_client, fake_stripe, completed).json()["outcome"] == "credited"
    done = worker(api_services).run_pass()

    refunds = fake_stripe.refunds_for({"user_id": str(account.id)})
    assert [r["amount"] for r in refunds] == [300 * price]
    assert len(done.refunded) == 1
    closed = api_services.ledger.wallet_of(account.id)
    assert (closed.available, closed.refunded, closed.unclaimed) == (0, 300, 0)
    requested = [
        e for e in events_of(api_services, account) if isinstance(e, Wallet.WithdrawalRequested)
    ]
    assert [e.actor for e in requested] == ["worker:erasure"]
    worker(api_services).run_pass()
    assert len(fake_stripe.refunds_for({"user_id": str(account.id)})) == 1  # once
    assert audit_verify(api_services, monkeypatch) == 0


def test_a_refund_failing_after_the_erasure_moves_its_tokens_to_unclaimed(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    opened = deposit(api_client, account, 200).json()
    expire(api_client, fake_stripe, opened["session_id"])
    assert erase_me(api_client, account).status_code == 204
    completed, _ = fake_stripe.pay(opened["session_id"])
    deliver(api_client, fake_stripe, completed)
    worker(api_services).run_pass()
    (refund,) = fake_stripe.refunds_for({"user_id": str(account.id)})

    failed = fake_stripe.fail_refund(refund["id"])
    assert deliver(api_client, fake_stripe, failed).json()["outcome"] == "refund_failed"
    done = worker(api_services).run_pass()

    assert len(fake_stripe.refunds_for({"user_id": str(account.id)})) == 1  # not again
    closed = api_services.ledger.wallet_of(account.id)
    assert (closed.available, closed.refunded, closed.unclaimed) == (0, 0, 200)
    assert done.unclaimed == [(ids.wallet_id(account.id), 200)]
    moved = [e for e in events_of(api_services, account) if isinstance(e, Wallet.TokensUnclaimed)]
    assert [(e.actor, e.tokens) for e in moved] == [("worker:erasure", 200)]
    assert audit_verify(api_services, monkeypatch) == 0


def test_a_refund_that_ends_canceled_returns_its_tokens(
    api_client: TestClient, api_services: Services, fake_stripe: FakeStripe, register_user: Register
) -> None:
    account = register_user()
    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, 500)
    deliver(api_client, fake_stripe, completed)
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 500}, headers=account.headers
    )
    assert requested.status_code == 202, requested.text
    worker(api_services).run_pass()
    (refund,) = fake_stripe.refunds_for({"withdrawal_id": requested.json()["withdrawal_id"]})
    assert wallet(api_client, api_services, account)["refunded"] == 500

    canceled = fake_stripe.fail_refund(refund["id"], status="canceled")
    assert deliver(api_client, fake_stripe, canceled).json()["outcome"] == "refund_failed"
    assert deliver(api_client, fake_stripe, canceled).json()["outcome"] == "duplicate"

    after = wallet(api_client, api_services, account)
    assert (after["available"], after["refunded"]) == (500, 0)


def test_an_external_refund_that_fails_later_gives_back_what_was_written_off(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    price = api_services.ledger.settings.token_price_usd_cents
    intent, (completed, _) = paid_deposit(api_client, fake_stripe, account, 1000)
    deliver(api_client, fake_stripe, completed)
    refunded = fake_stripe.refund_outside(intent, 300 * price)
    assert deliver(api_client, fake_stripe, refunded).json()["outcome"] == "written_off"
    (external,) = [r for r in fake_stripe.refunds.values() if r["payment_intent"] == intent]

    failed = fake_stripe.fail_refund(external["id"])
    assert deliver(api_client, fake_stripe, failed).json()["outcome"] == "write_off_reversed"
    assert deliver(api_client, fake_stripe, failed).json()["outcome"] == "duplicate"
    assert deliver(api_client, fake_stripe, refunded).json()["outcome"] == "ours"  # not again

    after = wallet(api_client, api_services, account)
    assert (after["available"], after["written_off"], after["refunded"]) == (1000, 0, 0)
    assert audit_verify(api_services, monkeypatch) == 0


@pytest.mark.parametrize("status", ["canceled", "failed"])
def test_a_refund_stripe_creates_already_ended_is_recorded_as_refused(
    api_client: TestClient,
    api_services: Services,
    fake_stripe: FakeStripe,
    register_user: Register,
    status: str,
) -> None:
    account = register_user()
    _, (completed, _) = paid_deposit(api_client, fake_stripe, account, 400)
    deliver(api_client, fake_stripe, completed)
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 400}, headers=account.headers
    )
    fake_stripe.refund_status = status
    try:
        done = worker(api_services).run_pass()
    finally:
        fake_stripe.refund_status = "succeeded"

    assert len(done.refused) == 1 and not done.refunded
    api_services.projector.catch_up()
    shown = api_client.get(
        f"/v1/wallet/withdrawals/{requested.json()['withdrawal_id']}", headers=account.headers
    )
    assert {lot["status"] for lot in shown.json()["lots"]} == {"refused"}
    after = wallet(api_client, api_services, account)
    assert (after["available"], after["refunded"]) == (400, 0)
