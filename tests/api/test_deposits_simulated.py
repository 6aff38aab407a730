"""Simulated Stripe, the embedded default (issue 4): the checkout URL is a local page whose
"pay" delivers properly signed webhooks to our own webhook handling; never in production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.payments import build_payment_gateway
from adapters.settings import ServiceSettings
from api.bootstrap import Services, worker_tasks
from tests.api.conftest import Account

Register = Callable[..., Account]
# Return URLs are on the public origin (the default base URL, http://127.0.0.1:8000).
URLS = {
    "success_url": "http://127.0.0.1:8000/paid",
    "cancel_url": "http://127.0.0.1:8000/cancelled",
}


def checkout(client: TestClient, account: Account, tokens: int) -> dict[str, Any]:
    response = client.post(
        "/v1/wallet/deposits", json={"tokens": tokens, **URLS}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def local_path(url: str) -> str:
    return "/v1/" + url.split("/v1/", 1)[1]


def balances(client: TestClient, services: Services, account: Account) -> dict[str, Any]:
    services.projector.catch_up()
    body: dict[str, Any] = client.get("/v1/wallet", headers=account.headers).json()
    return body


def test_paying_on_the_simulated_checkout_page_credits_the_tokens_once(
    api_client: TestClient, api_services: Services, register_user: Register
) -> None:
    account = register_user()
    opened = checkout(api_client, account, 1500)
    page = local_path(opened["checkout_url"])
    assert page == f"/v1/simulated-stripe/checkout/{opened['session_id']}"

    shown = api_client.get(page)
    assert shown.status_code == 200 and "text/html" in shown.headers["content-type"]
    assert f"{page}/pay" in shown.text

    paid = api_client.post(f"{page}/pay", follow_redirects=False)
    assert paid.status_code == 303 and paid.headers["location"] == URLS["success_url"]
    again = api_client.post(f"{page}/pay", follow_redirects=False)
    assert again.status_code == 303

    wallet = balances(api_client, api_services, account)
    assert wallet["available"] == wallet["deposited"] == 1500
    [lot] = api_client.get("/v1/wallet/lots", headers=account.headers).json()
    assert lot["source"] == "deposit" and lot["payment_intent_id"].startswith("pi_sim_")


def test_declining_credits_nothing_and_the_session_cannot_be_paid_afterwards(
    api_client: TestClient, api_services: Services, register_user: Register
) -> None:
    account = register_user()
    page = local_path(checkout(api_client, account, 400)["checkout_url"])

    declined = api_client.post(f"{page}/decline", follow_redirects=False)
    late = api_client.post(f"{page}/pay", follow_redirects=False)

    assert declined.status_code == 303 and declined.headers["location"] == URLS["cancel_url"]
    assert late.status_code == 409
    assert balances(api_client, api_services, account)["deposited"] == 0


def test_the_webhook_still_requires_a_valid_signature(api_client: TestClient) -> None:
    body = b'{"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    forged = api_client.post(
        "/v1/stripe/webhook", content=body, headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_signature"


def test_an_unknown_session_page_is_404(api_client: TestClient) -> None:
    assert api_client.get("/v1/simulated-stripe/checkout/cs_sim_nope").status_code == 404


def test_the_embedded_withdrawal_worker_makes_simulated_refunds_that_succeed_at_once(
    api_client: TestClient, api_services: Services, register_user: Register
) -> None:
    account = register_user()
    page = local_path(checkout(api_client, account, 800)["checkout_url"])
    api_client.post(f"{page}/pay", follow_redirects=False)
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 300}, headers=account.headers
    ).json()
    [(name, worker_pass)] = worker_tasks(api_services, ["withdrawals"])  # what the server runs

    worker_pass()

    hold = api_services.ledger.wallet_of(account.id).withdrawals[requested["withdrawal_id"]]
    assert name == "withdrawals" and hold.settled
    assert all(refund.startswith("re_sim_") for refund in hold.refund_ids.values())
    wallet = balances(api_client, api_services, account)
    assert (wallet["available"], wallet["refunded"]) == (500, 300)


def test_simulated_stripe_does_not_exist_in_production(
    api_client: TestClient, api_services: Services, register_user: Register
) -> None:
    account = register_user()
    page = local_path(checkout(api_client, account, 100)["checkout_url"])
    development = api_services.config
    api_services.config = development.model_copy(update={"env": "production"})
    try:
        assert api_client.get(page).status_code == 404
        assert api_client.post(f"{page}/pay").status_code == 404
    finally:
        api_services.config = development

    # Built around the checks of `from_env`, to show the gateway refuses on its own too.
    production = ServiceSettings.model_construct(
        env="production", stripe_mode="simulated", jwt_secret="x" * 40
    )
    with pytest.raises(RuntimeError):
        build_payment_gateway(production)
