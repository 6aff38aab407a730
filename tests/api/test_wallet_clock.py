"""`GET /v1/wallet` in development reads the shared test clock inside its one statement: what
it shows as refundable follows an advance at once, as it did when the clock was a query of its
own (its own module: advancing the clock moves business time for the whole schema)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

from fastapi.testclient import TestClient

from adapters.test_clock import PgTestClock
from api.bootstrap import Services
from domain.aggregate import Cause
from tests.api.conftest import Account


def test_refundable_follows_an_advance_of_the_development_clock(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    api_services.ledger.credit_deposit(
        account.id, f"pi_clock_{uuid4().hex}", 700, Cause.stripe(f"evt_{uuid4().hex}")
    )
    api_services.projector.catch_up()
    clock = api_services.clock
    assert isinstance(clock, PgTestClock)  # development's clock, shared through PostgreSQL

    before = api_client.get("/v1/wallet", headers=account.headers).json()
    assert (before["available"], before["refundable"]) == (700, 700)

    clock.advance(api_services.ledger.settings.refund_window + timedelta(days=1))
    after = api_client.get("/v1/wallet", headers=account.headers).json()
    assert (after["available"], after["refundable"]) == (700, 0)  # the window has closed
    assert after["position"] == before["position"]
