"""``GET /v1/wallet?as_of=`` and ``peerpush audit balance --as-of`` answer the same question the
same way: the whole stream up to the last position whose event time is at most T, even when a
later position carries an earlier time (rules §8)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from projections.audit.balance import balance
from tests.api.conftest import Account

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
LOT_FIELDS = ("lot_id", "seq", "source", "amount", "remaining", "frozen", "written_off")


@contextmanager
def clock_read_at(ledger: Ledger, at: datetime) -> Iterator[None]:
    """A command whose clock was read at ``at`` (a slow request commits after a faster one
    that read the clock later: a later position with an earlier time)."""
    clock = ledger.clock
    ledger.clock = AdjustableClock(at, frozen=True)
    try:
        yield
    finally:
        ledger.clock = clock


def refuse_stream_reads(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, any read of the notification log (a scan of the stream) fails."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the as-of path read the stream's notifications")

    monkeypatch.setattr(services.ledger.recorder, "select_notifications", refuse)


def deposits_out_of_clock_order(
    services: Services, ada: UUID, bo: UUID
) -> list[tuple[int, datetime, UUID, int]]:
    """``(position, time, user, tokens)`` of deposits whose clock readings jump back."""
    ledger, made = services.ledger, []
    for n, (user, minutes, tokens) in enumerate(
        [(ada, 0, 500), (ada, 10, 300), (ada, 5, 200), (ada, 20, 100), (bo, 3, 50), (bo, 15, 70)]
    ):
        at = T0 + minutes * MINUTE
        with clock_read_at(ledger, at):
            receipt = ledger.credit_deposit(user, f"pi_{user}_{n}", tokens, Cause.stripe(f"e{n}"))
        made.append((receipt.position, at, user, tokens))
    services.projector.catch_up()
    return made


def api_wallet(
    client: TestClient, account: Account, as_of: str
) -> tuple[dict[str, Any], list[Any]]:
    got = client.get("/v1/wallet", params={"as_of": as_of}, headers=account.headers)
    lots = client.get("/v1/wallet/lots", params={"as_of": as_of}, headers=account.headers)
    assert got.status_code == 200, got.text
    assert lots.status_code == 200, lots.text
    return got.json(), lots.json()


def test_the_api_and_the_audit_agree_with_the_definition_when_commit_order_is_not_clock_order(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ada, bo = register_user(), register_user()
    made = deposits_out_of_clock_order(api_services, ada.id, bo.id)
    refuse_stream_reads(api_services, monkeypatch)
    times = [at for _, at, _, _ in made]
    asked = sorted({*times, *(at + 30 * _SECOND for at in times), T0 - MINUTE})
    for t in asked:
        # The definition: the whole stream up to the last position whose time is at most t.
        last = max((p for p, at, _, _ in made if at <= t), default=0)
        for account in (ada, bo):
            expected = sum(n for p, _, user, n in made if user == account.id and p <= last)
            wallet, lots = api_wallet(api_client, account, t.isoformat())
            assert (wallet["available"], wallet["deposited"]) == (expected, expected), t
            if expected:
                report = balance(api_services.db, api_services.ledger, t, user_id=account.id)
                assert report["balances"] == {k: wallet[k] for k in report["balances"]}
                assert report["as_of"]["position"] == last
    for t in asked:
        last = max((p for p, at, _, _ in made if at <= t), default=0)
        for account in (ada, bo):
            wallet, lots = api_wallet(api_client, account, t.isoformat())
            assert wallet["position"] == last
            if not wallet["deposited"]:
                assert lots == []
                continue
            report = balance(api_services.db, api_services.ledger, t, user_id=account.id)
            assert [{k: lot[k] for k in LOT_FIELDS} for lot in report["lots"]] == [
                {k: lot[k] for k in LOT_FIELDS} for lot in lots
            ]
    # A position past the stream's end (even past what the store can number) is the stream now.
    now, now_lots = api_wallet(api_client, ada, "9" * 30)
    assert now["available"] == sum(n for _, _, user, n in made if user == ada.id)
    assert len(now_lots) == 4
    # The same question asked as a position gets the same answer.
    last = max(p for p, at, _, _ in made if at <= T0 + 4 * MINUTE)
    assert api_wallet(api_client, ada, str(last)) == api_wallet(
        api_client, ada, (T0 + 4 * MINUTE).isoformat()
    )


def test_as_of_a_time_the_position_index_has_not_reached_is_read_model_behind(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    ada = register_user()
    api_services.projector.catch_up()
    with clock_read_at(api_services.ledger, T0):
        api_services.ledger.credit_deposit(ada.id, "pi_unindexed", 100, Cause.stripe("e_late"))
    got = api_client.get(
        "/v1/wallet", params={"as_of": (T0 + MINUTE).isoformat()}, headers=ada.headers
    )
    assert got.status_code == 503, got.text
    assert got.json()["code"] == "read_model_behind"
    api_services.projector.catch_up()
    wallet, _ = api_wallet(api_client, ada, (T0 + MINUTE).isoformat())
    assert wallet["available"] == 100
