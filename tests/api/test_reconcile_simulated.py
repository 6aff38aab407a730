"""``peerpush reconcile`` in the embedded default (rules §6): it reconciles against the
simulated Stripe, which keeps the charges, refunds and transfers it made in PostgreSQL, so a
deposit paid on the simulated checkout page, a withdrawal refunded and a cash-out transferred
by the workers all match, and a planted difference is reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.simulated_stripe import SimulatedStripe
from api import cli
from api.bootstrap import Services, worker_tasks
from tests.api.conftest import Account
from tests.api.test_cashouts import credited, onboarded
from tests.api.test_deposits_simulated import checkout, local_path

SINCE = "2026-01-01"


def reconcile(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    """``peerpush reconcile --since SINCE --json`` as the embedded default runs it."""
    for name, value in {
        "ENV": "development",
        "STRIPE_MODE": "simulated",
        "DATABASE_URL": services.db.url,
        "DB_SCHEMA": services.db.schema,
    }.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["reconcile", "--since", SINCE, "--json"])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, report


def test_reconcile_matches_what_the_simulated_stripe_moved_and_reports_a_planted_difference(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway = api_services.payments
    assert isinstance(gateway, SimulatedStripe)
    # A deposit paid on the simulated checkout page (paid twice: one charge), then a
    # withdrawal the worker refunds.
    depositor = register_user()
    opened = checkout(api_client, depositor, 800)
    page = local_path(opened["checkout_url"])
    for _ in range(2):
        assert api_client.post(f"{page}/pay", follow_redirects=False).status_code == 303
    requested = api_client.post(
        "/v1/wallet/withdrawals", json={"tokens": 300}, headers=depositor.headers
    )
    assert requested.status_code == 202, requested.text
    [(_, withdrawals_pass)] = worker_tasks(api_services, ["withdrawals"])
    withdrawals_pass()
    wallet = api_services.ledger.wallet_of(depositor.id)
    hold = wallet.withdrawals[requested.json()["withdrawal_id"]]
    assert hold.settled
    # A cash-out the worker transfers.
    cashier = register_user()
    onboarded(api_client, cashier)
    credited(api_client, admin_token, cashier, 5_000)
    asked = api_client.post("/v1/wallet/cashouts", headers=cashier.headers, json={"tokens": 2_000})
    assert asked.status_code == 202, asked.text
    [(_, cashouts_pass)] = worker_tasks(api_services, ["cashouts"])
    cashouts_pass()
    cashout = api_client.get(
        f"/v1/wallet/cashouts/{asked.json()['cashout_id']}", headers=cashier.headers
    ).json()
    assert cashout["status"] == "settled"

    code, report = reconcile(api_services, monkeypatch, capsys)

    assert (code, report["ok"], report["mismatches"]) == (0, True, [])
    assert report["matched"] == {
        "charges": {"count": 1, "cents": opened["amount_cents"]},
        "refunds": {"count": 1, "cents": opened["amount_cents"] * 300 // 800},
        "transfers": {"count": 1, "cents": asked.json()["cents"]},
        "disputes": {"count": 0, "cents": 0},
    }

    # Planted: the simulated Stripe loses the refund and the transfer moved less.
    [refund_id] = hold.refund_ids.values()
    with psycopg.connect(api_services.db.url, autocommit=True) as conn:
        conn.execute(f"SET search_path = {api_services.db.schema}")
        conn.execute("DELETE FROM simulated_stripe_objects WHERE stripe_id = %s", (refund_id,))
        conn.execute(
            "UPDATE simulated_stripe_objects SET cents = cents - 1 WHERE stripe_id = %s",
            (cashout["transfer_id"],),
        )

    code, report = reconcile(api_services, monkeypatch, capsys)

    assert code == 1 and not report["ok"]
    assert {(m["kind"], m["stripe_id"], m["problem"]) for m in report["mismatches"]} == {
        ("refunds", refund_id, "missing_at_stripe"),
        ("transfers", cashout["transfer_id"], "amount_differs"),
    }


def test_a_repeated_refund_or_transfer_is_the_same_one_recorded_once_and_found(
    api_services: Services,
) -> None:
    gateway = api_services.payments
    assert isinstance(gateway, SimulatedStripe)
    ours = {"withdrawal_id": "w-1", "lot_id": "l-1"}
    refunds = [
        gateway.refund(
            payment_intent_id="pi_sim_x", cents=cents, idempotency_key="rk-1", metadata=ours
        )
        for cents in (300, 300)
    ]
    transfers = [
        gateway.transfer(
            account_id="acct_sim_x",
            cents=2_000,
            transfer_group="co-1",
            idempotency_key="tk-1",
            metadata={"cashout_id": "co-1"},
        )
        for _ in range(2)
    ]

    assert refunds[0] == refunds[1] and refunds[0].made and refunds[0].cents == 300
    assert transfers[0] == transfers[1] and transfers[0].cents == 2_000
    assert gateway.find_refund(payment_intent_id="pi_sim_x", metadata=ours) == refunds[0]
    assert gateway.find_refund(payment_intent_id="pi_sim_x", metadata={"lot_id": "l-2"}) is None
    assert gateway.find_transfer(transfer_group="co-1") == transfers[0]
    assert gateway.find_transfer(transfer_group="co-2") is None
    listed = [
        (o.kind, o.stripe_id, o.cents)
        for o in gateway.money_objects(datetime(2026, 1, 1, tzinfo=UTC))
        if o.stripe_id in (refunds[0].refund_id, transfers[0].transfer_id)
    ]
    assert sorted(listed) == [
        ("refunds", refunds[0].refund_id, 300),
        ("transfers", transfers[0].transfer_id, 2_000),
    ]
