"""Cash-outs over HTTP (rules §2, §6): linking a payout account through the simulated Stripe
Connect onboarding, the Connect webhook, asking for a cash-out (202, idempotent), its limits,
and what the wallet then shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
import stripe
from fastapi.testclient import TestClient

from adapters.payments import PgLocks
from adapters.simulated_stripe import SimulatedStripe
from api.bootstrap import Services, worker_tasks
from application.cashouts import CashoutWorker
from tests.api.conftest import Account, bearer

WEEK_AND_A_DAY = 8 * 24 * 3600


def onboarded(client: TestClient, account: Account) -> str:
    """Link a payout account and finish the simulated onboarding; returns the account id."""
    linked = client.post("/v1/payout-account", headers=account.headers)
    assert linked.status_code == 200, linked.text
    body = linked.json()
    page = client.get(body["onboarding_url"].split("127.0.0.1:8000")[-1])
    assert page.status_code == 200 and "onboarding" in page.text
    done = client.post(
        f"/v1/simulated-stripe/connect/{body['account_id']}/complete", follow_redirects=False
    )
    assert done.status_code == 303
    return str(body["account_id"])


def credited(client: TestClient, admin: str, account: Account, tokens: int) -> None:
    """An admin's credit (an adjustment lot), then a week and a day of business time."""
    made = client.post(
        "/v1/admin/adjustments",
        headers=bearer(admin),
        json={
            "user_id": str(account.id),
            "direction": "credit",
            "tokens": tokens,
            "reason": "prize",
        },
    )
    assert made.status_code == 201, made.text
    moved = client.post(
        "/v1/test-clock/advance", headers=account.headers, json={"seconds": WEEK_AND_A_DAY}
    )
    assert moved.status_code == 200, moved.text


def worker(services: Services) -> CashoutWorker:
    return CashoutWorker(
        services.ledger, services.payouts, services.payout_accounts, PgLocks(services.db)
    )


def wallet(client: TestClient, account: Account, services: Services) -> dict[str, Any]:
    services.projector.catch_up()  # workers are off: bring the read models up to date
    got = client.get("/v1/wallet", headers=account.headers)
    assert got.status_code == 200
    return dict(got.json())


def test_a_payout_account_is_enabled_by_finishing_the_onboarding(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    assert api_client.get("/v1/payout-account", headers=account.headers).json() == {
        "linked": False,
        "account_id": None,
        "payouts_enabled": False,
        "onboarding_url": None,
    }
    linked = api_client.post("/v1/payout-account", headers=account.headers).json()
    assert linked["linked"] and not linked["payouts_enabled"]
    again = api_client.post("/v1/payout-account", headers=account.headers).json()
    assert again["account_id"] == linked["account_id"], "one account per user"

    onboarded(api_client, account)

    shown = api_client.get("/v1/payout-account", headers=account.headers).json()
    assert shown["payouts_enabled"] and shown["account_id"] == linked["account_id"]


def test_the_connect_webhook_checks_its_own_secret_and_the_mode(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    account_id = api_client.post("/v1/payout-account", headers=account.headers).json()["account_id"]
    gateway = api_services.payouts
    assert isinstance(gateway, SimulatedStripe)
    payload, signature = gateway.onboarded_webhook(account_id)
    wrong = gateway.signed("account.updated", {"id": account_id, "payouts_enabled": True})

    refused = api_client.post(
        "/v1/stripe/connect-webhook", content=wrong[0], headers={"Stripe-Signature": wrong[1]}
    )
    assert refused.status_code == 400
    live = payload.replace(b'"livemode":false', b'"livemode":true')
    live_signature = stripe.WebhookSignature.generate_signature_header(
        live.decode(), gateway.connect_webhook_secret
    )
    ignored = api_client.post(
        "/v1/stripe/connect-webhook", content=live, headers={"Stripe-Signature": live_signature}
    )
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored_livemode"
    assert not api_client.get("/v1/payout-account", headers=account.headers).json()[
        "payouts_enabled"
    ]
    applied = api_client.post(
        "/v1/stripe/connect-webhook", content=payload, headers={"Stripe-Signature": signature}
    )
    assert applied.json()["outcome"] == "payouts_enabled"


def test_no_cash_out_without_an_enabled_payout_account(
    api_client: TestClient, register_user: Callable[..., Account], admin_token: str
) -> None:
    account = register_user()
    credited(api_client, admin_token, account, 5_000)

    refused = api_client.post(
        "/v1/wallet/cashouts", headers=account.headers, json={"tokens": 1_000}
    )

    assert refused.status_code == 409
    assert refused.json()["code"] == "payout_account_not_enabled"


def test_a_cash_out_is_held_transferred_once_and_shown(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
) -> None:
    account = register_user()
    onboarded(api_client, account)
    credited(api_client, admin_token, account, 5_000)
    key = {"Idempotency-Key": f"co-{uuid4()}", **account.headers}

    asked = api_client.post("/v1/wallet/cashouts", headers=key, json={"tokens": 2_000})
    repeated = api_client.post("/v1/wallet/cashouts", headers=key, json={"tokens": 2_000})

    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert repeated.status_code == 202 and repeated.json() == body
    assert (body["status"], body["tokens"], body["cents"]) == ("pending", 2_000, 2_000)
    before = wallet(api_client, account, api_services)
    assert (before["available"], before["cashout_pending"], before["cashoutable"]) == (
        3_000,
        2_000,
        3_000,
    )

    assert worker(api_services).run_pass().settled == [UUID(body["cashout_id"])]
    shown = api_client.get(f"/v1/wallet/cashouts/{body['cashout_id']}", headers=account.headers)
    assert shown.json()["status"] == "settled" and shown.json()["transfer_id"].startswith("tr_")
    after = wallet(api_client, account, api_services)
    assert (after["cashout_pending"], after["cashed_out"]) == (0, 2_000)
    other = register_user()
    hidden = api_client.get(f"/v1/wallet/cashouts/{body['cashout_id']}", headers=other.headers)
    assert hidden.status_code == 404


def test_the_hold_the_minimum_and_the_daily_cap(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
) -> None:
    account = register_user()
    onboarded(api_client, account)
    credited(api_client, admin_token, account, 60_000)
    made = api_client.post(
        "/v1/admin/adjustments",
        headers=bearer(admin_token),
        json={"user_id": str(account.id), "direction": "credit", "tokens": 900, "reason": "new"},
    )
    assert made.status_code == 201

    small = api_client.post("/v1/wallet/cashouts", headers=account.headers, json={"tokens": 999})
    assert small.status_code == 422 and small.json()["code"] == "below_minimum_cashout"
    young = api_client.post("/v1/wallet/cashouts", headers=account.headers, json={"tokens": 60_900})
    assert young.status_code == 409
    assert young.json()["cashoutable"] == 50_000, "the fresh 900 are held, the cap applies"
    first = api_client.post("/v1/wallet/cashouts", headers=account.headers, json={"tokens": 49_500})
    assert first.status_code == 202
    over = api_client.post("/v1/wallet/cashouts", headers=account.headers, json={"tokens": 1_000})
    assert over.status_code == 409
    assert (over.json()["reason"], over.json()["cashoutable"]) == ("daily_cap", 500)
    assert wallet(api_client, account, api_services)["cashoutable"] == 500


def test_paused_payouts_are_shown_and_hold_the_embedded_workers(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    onboarded(api_client, account)
    credited(api_client, admin_token, account, 2_000)
    asked = api_client.post("/v1/wallet/cashouts", headers=account.headers, json={"tokens": 1_000})
    assert asked.status_code == 202
    monkeypatch.setattr(
        api_services, "config", api_services.config.model_copy(update={"payouts_paused": True})
    )

    assert api_client.get("/v1/ready").json()["payouts_paused"] is True
    assert "peerpush_payouts_paused 1.0" in api_client.get("/v1/metrics").text
    tasks = dict(worker_tasks(api_services))
    assert tasks["cashouts"]().paused and tasks["withdrawals"]().paused  # type: ignore[attr-defined]
    shown = api_client.get(
        f"/v1/wallet/cashouts/{asked.json()['cashout_id']}", headers=account.headers
    )
    assert shown.json()["status"] == "pending"

    monkeypatch.setattr(
        api_services, "config", api_services.config.model_copy(update={"payouts_paused": False})
    )
    assert api_client.get("/v1/ready").json()["payouts_paused"] is False
    dict(worker_tasks(api_services))["cashouts"]()
    shown = api_client.get(
        f"/v1/wallet/cashouts/{asked.json()['cashout_id']}", headers=account.headers
    )
    assert shown.json()["status"] == "settled"
