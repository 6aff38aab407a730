"""The payment gateway's contract, run against both implementations: the real Stripe gateway
(talking to a local server speaking Stripe's API) and the simulated Stripe."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest

from adapters.simulated_stripe import SimulatedStripe
from adapters.stripe_gateway import StripeGateway
from application.ports import InvalidWebhook, PaymentGateway, Refund
from tests.fakes.stripe_server import API_KEY, WEBHOOK_SECRET, FakeStripe


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["stripe", "simulated"])
def gateway(request: pytest.FixtureRequest, fake: FakeStripe) -> PaymentGateway:
    if request.param == "stripe":
        return StripeGateway(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=fake.url)
    return SimulatedStripe(base_url="http://127.0.0.1:8000", webhook_secret=WEBHOOK_SECRET)


def signed(payload: str, *, secret: str = WEBHOOK_SECRET, age: int = 0) -> str:
    t = int(time.time()) - age
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_the_same_idempotency_key_opens_the_same_checkout(gateway: PaymentGateway) -> None:
    def open_checkout(key: str) -> tuple[str, str]:
        return gateway.create_checkout(
            user_id="7b0c2e0a-2a41-4a55-9d53-31c7e0f2b7a1",
            tokens=500,
            cents=500,
            success_url="https://app.test/ok",
            cancel_url="https://app.test/no",
            idempotency_key=key,
            metadata={"deposit_id": key},
        )

    first = open_checkout("checkout:a")

    assert open_checkout("checkout:a") == first
    assert open_checkout("checkout:b")[0] != first[0]
    assert first[1].startswith("http")


def test_a_webhook_is_accepted_only_with_a_fresh_signature_by_our_secret(
    gateway: PaymentGateway,
) -> None:
    payload = json.dumps({"id": "evt_1", "type": "ping", "data": {"object": {"id": "x"}}})

    assert gateway.verify_webhook(payload.encode(), signed(payload))["id"] == "evt_1"
    for bad in (
        signed(payload, secret="whsec_other"),
        signed(payload, age=301),
        signed(payload + " "),
        "",
    ):
        with pytest.raises(InvalidWebhook):
            gateway.verify_webhook(payload.encode(), bad)


def test_the_same_idempotency_key_makes_one_refund(
    gateway: PaymentGateway, fake: FakeStripe
) -> None:
    intent = fake.payment_intent(1000)
    ours = {"withdrawal_id": "w1", "lot_id": "l1"}

    def refund() -> Refund:
        return gateway.refund(
            payment_intent_id=intent, cents=400, idempotency_key="w1:l1", metadata=ours
        )

    first = refund()

    assert refund() == first
    assert first.made and first.cents == 400
    found = gateway.find_refund(payment_intent_id=intent, metadata=ours)
    assert found is None or found == first
