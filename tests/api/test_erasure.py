"""Erasing a user's personal data (rules §7): refused while the wallet holds tokens or holds;
otherwise the account's email, username and password are gone, every session ends, and the
ledger's events are exactly what they were (``audit verify`` still passes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from api.cli import main as peerpush
from application.erasure import Remaining, WalletNotEmpty, check_erasable, remaining_in
from domain import ids
from domain.aggregate import Cause
from domain.errors import WalletClosed
from domain.wallet import Wallet
from tests.api.conftest import PASSWORD, Account, bearer
from tests.api.test_challenges import challenge_body, next_midnight

ERASE_ME = "/v1/auth/me"
CONFIRM = {"password": PASSWORD}


def erase_me(client: TestClient, account: Account, password: str = PASSWORD) -> httpx.Response:
    return client.request("DELETE", ERASE_ME, json={"password": password}, headers=account.headers)


def admin_erase(client: TestClient, user_id: UUID, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/v1/admin/users/{user_id}/erase", headers=headers)


def fund(services: Services, user_id: UUID, cents: int = 1_000) -> int:
    """A card deposit credited through the ledger; the wallet's available tokens after it."""
    services.ledger.credit_deposit(
        user_id, f"pi_erase_{uuid4().hex}", cents, Cause.stripe(f"evt_{uuid4().hex}")
    )
    return int(services.ledger.wallet_of(user_id).available)


def stream(services: Services, upto: int | None = None) -> tuple[int, str]:
    """The ledger's head and a digest of every stored event's bytes (up to ``upto``)."""
    db = services.db
    upto = services.ledger.head() if upto is None else upto
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        row = conn.execute(
            "SELECT count(*), md5(string_agg(notification_id::text || ':' || "
            "originator_id::text || ':' || originator_version::text || ':' || topic || ':' || "
            "encode(state, 'hex'), ',' ORDER BY notification_id)) FROM ledger_events "
            "WHERE notification_id <= %s",
            (upto,),
        ).fetchone()
    assert row is not None
    return upto, f"{row[0]}:{row[1]}"


def assert_only_closed(
    services: Services, before: tuple[int, str], account: Account, actor: str
) -> None:
    """Every event before the erasure is unchanged; the erasure added only the wallet's
    ``Wallet.Closed`` (after ``Wallet.Opened`` if the user never had a wallet), which names
    no personal data."""
    assert stream(services, before[0]) == before
    db = services.db
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        rows = conn.execute(
            "SELECT originator_id, topic, convert_from(state, 'UTF8') FROM ledger_events "
            "WHERE notification_id > %s ORDER BY notification_id",
            (before[0],),
        ).fetchall()
    assert rows and rows[-1][1] == Wallet.Closed.TOPIC
    assert [topic for _, topic, _ in rows[:-1]] in ([], [Wallet.Opened.TOPIC])
    assert {originator for originator, _, _ in rows} == {ids.wallet_id(account.id)}
    closed = rows[-1][2]
    assert actor in closed
    assert account.email not in closed and account.username not in closed


def audit_verify(services: Services, monkeypatch: pytest.MonkeyPatch) -> int:
    """``peerpush audit verify`` on this module's schema; its exit code."""
    services.projector.catch_up()
    monkeypatch.setenv("DATABASE_URL", services.db.url)
    monkeypatch.setenv("DB_SCHEMA", services.db.schema)
    return peerpush(["audit", "verify"])


def live_refresh_tokens(services: Services, user_id: UUID) -> int:
    with services.users.transaction() as cur:
        row = cur.execute(
            "SELECT count(*) AS n FROM refresh_tokens WHERE user_id = %s AND revoked_at IS NULL",
            (user_id,),
        ).fetchone()
    assert row is not None
    return int(row["n"])


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    return body


def assert_intact(client: TestClient, services: Services, account: Account) -> None:
    record = services.users.get(account.id)
    assert record is not None and not record.erased
    assert (record.email, record.username) == (account.email, account.username)
    assert client.get("/v1/auth/me", headers=account.headers).status_code == 200


def assert_erased(client: TestClient, services: Services, account: Account) -> None:
    """Personal data gone, every session ended, no way back in."""
    record = services.users.get(account.id)
    assert record is not None and record.erased_at is not None
    assert (record.email, record.username, record.password_hash) == (None, None, None)
    assert services.users.by_email(account.email) is None
    assert live_refresh_tokens(services, account.id) == 0
    me = client.get("/v1/auth/me", headers=account.headers)
    assert_problem(me, 401, "invalid_token")
    assert me.headers["www-authenticate"] == "Bearer"
    refresh = client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refresh, 401, "invalid_token")
    login = client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(login, 401, "invalid_credentials")


# -- refused while the wallet holds something ------------------------------------------------


def test_refused_while_the_wallet_holds_tokens(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
) -> None:
    account = register_user()
    tokens = fund(api_services, account.id)
    before = stream(api_services)

    body = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert {k: body[k] for k in ("available", "frozen", "staked", "penalties", "pending")} == {
        "available": tokens,
        "frozen": 0,
        "staked": 0,
        "penalties": 0,
        "pending": 0,
    }
    assert f"{tokens} available" in body["detail"]
    by_admin = admin_erase(api_client, account.id, bearer(admin_token))
    assert assert_problem(by_admin, 409, "wallet_not_empty")["available"] == tokens

    assert_intact(api_client, api_services, account)
    assert live_refresh_tokens(api_services, account.id) == 1
    assert stream(api_services) == before


def test_refused_while_a_stake_is_locked(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    """A published challenge's stake: nothing available, but the tokens are still the user's."""
    account = register_user()
    tokens = fund(
        api_services, account.id, cents=100 * api_services.ledger.settings.token_price_usd_cents
    )
    body = challenge_body(next_midnight(api_services.clock.now()), entry_stake=tokens)
    created = api_client.post("/v1/challenges", json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    published = api_client.post(
        f"/v1/challenges/{created.json()['id']}/publish", headers=account.headers
    )
    assert published.status_code == 200, published.text

    refused = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert (refused["available"], refused["staked"]) == (0, tokens)
    assert_intact(api_client, api_services, account)


def test_refused_while_a_withdrawal_is_in_flight_then_allowed_once_refunded(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deposited, then withdrew everything: held until every lot's refund is recorded."""
    ledger = api_services.ledger
    account = register_user()
    fund(api_services, account.id)
    tokens = fund(api_services, account.id, cents=700)  # two lots, both refundable
    withdrawal_id = uuid4()
    held = ledger.request_withdrawal(
        account.id, withdrawal_id, tokens, Cause.user(account.id, "req-withdraw-all")
    )
    assert len(held.lots) == 2

    refused = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert (refused["available"], refused["pending"]) == (0, tokens)

    first, second = held.lots
    ledger.record_refund(account.id, withdrawal_id, first[0], "re_1", Cause.stripe("evt_re_1"))
    refused = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert refused["pending"] == second[1]

    ledger.record_refund(account.id, withdrawal_id, second[0], "re_2", Cause.stripe("evt_re_2"))
    wallet = ledger.wallet_of(account.id)
    assert wallet.refunded == wallet.deposited == tokens and not wallet.holds_in_flight

    before = stream(api_services)
    erased = erase_me(api_client, account)
    assert erased.status_code == 204, erased.text
    assert erased.content == b""
    assert_erased(api_client, api_services, account)
    assert_only_closed(api_services, before, account, f"user:{account.id}")
    assert audit_verify(api_services, monkeypatch) == 0
    # The ledger still answers for the wallet, by id.
    assert ledger.wallet_of(account.id).refunded == tokens


# -- allowed when empty ----------------------------------------------------------------------


def test_a_user_who_never_deposited_erases_themselves(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    before = stream(api_services)
    r = erase_me(api_client, account)
    assert r.status_code == 204, r.text
    assert_erased(api_client, api_services, account)
    assert_only_closed(api_services, before, account, f"user:{account.id}")
    assert audit_verify(api_services, monkeypatch) == 0
    # The email and username are free again: a new account, under a new id.
    again = api_client.post(
        "/v1/auth/register",
        json={"email": account.email, "username": account.username, "password": PASSWORD},
    )
    assert again.status_code == 201, again.text
    assert UUID(again.json()["id"]) != account.id


def test_every_session_of_the_user_ends(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    other_sessions = [
        api_client.post(
            "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
        ).json()
        for _ in range(2)
    ]
    assert live_refresh_tokens(api_services, account.id) == 3
    assert erase_me(api_client, account).status_code == 204
    assert live_refresh_tokens(api_services, account.id) == 0
    for pair in other_sessions:
        me = api_client.get("/v1/auth/me", headers=bearer(pair["access_token"]))
        assert_problem(me, 401, "invalid_token")
        r = api_client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_problem(r, 401, "invalid_token")
    # Erasing again with the dead token is refused as unauthenticated.
    assert_problem(erase_me(api_client, account), 401, "invalid_token")


# -- confirming, and who may erase whom ------------------------------------------------------


def test_the_current_password_is_required(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    assert_problem(erase_me(api_client, account, "not my password"), 403, "wrong_password")
    missing = api_client.request("DELETE", ERASE_ME, json={}, headers=account.headers)
    assert_problem(missing, 422, "invalid_request")
    no_body = api_client.request("DELETE", ERASE_ME, headers=account.headers)
    assert_problem(no_body, 422, "invalid_request")
    anonymous = api_client.request("DELETE", ERASE_ME, json=CONFIRM)
    assert_problem(anonymous, 401, "unauthorized")
    assert_intact(api_client, api_services, account)


def test_password_confirmations_are_rate_limited_per_account(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    rate_limits_on: None,
) -> None:
    account = register_user()
    for _ in range(5):
        assert_problem(erase_me(api_client, account, "guess"), 403, "wrong_password")
    limited = erase_me(api_client, account)  # even the right password, until the window ends
    assert_problem(limited, 429, "rate_limited")
    assert "Retry-After" in limited.headers
    assert_intact(api_client, api_services, account)


def test_an_admin_erases_a_user(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = register_user()
    before = stream(api_services)
    r = admin_erase(api_client, account.id, bearer(admin_token))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == str(account.id)
    erased_at = datetime.fromisoformat(r.json()["erased_at"])
    assert abs(erased_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert_erased(api_client, api_services, account)
    # Again: the same answer, nothing changed.
    again = admin_erase(api_client, account.id, bearer(admin_token))
    assert again.status_code == 200 and again.json() == r.json()
    assert_only_closed(api_services, before, account, "admin:")
    assert audit_verify(api_services, monkeypatch) == 0


def test_an_unknown_user_is_not_found(api_client: TestClient, admin_token: str) -> None:
    r = admin_erase(api_client, uuid.uuid4(), bearer(admin_token))
    assert_problem(r, 404, "not_found")


def test_a_user_cannot_erase_someone_else(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    """Only an admin may name another user; ``DELETE /auth/me`` names no one but the caller."""
    mallory, victim = register_user(), register_user()
    assert_problem(admin_erase(api_client, victim.id, mallory.headers), 403, "admin_only")
    assert_problem(admin_erase(api_client, victim.id, {}), 401, "unauthorized")
    # Mallory's own password confirms only Mallory's erasure.
    r = api_client.request(
        "DELETE", ERASE_ME, json={"password": victim.password}, headers=mallory.headers
    )
    assert r.status_code == 204, r.text
    assert_intact(api_client, api_services, victim)
    assert_erased(api_client, api_services, mallory)


# -- the rule itself, over the wallet aggregate ---------------------------------------------

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CAUSE = Cause.stripe("evt_unit")


def funded_wallet(tokens: int = 100) -> Wallet:
    wallet = Wallet.open(uuid4(), CAUSE, T0)
    wallet.credit_deposit("pi_unit", tokens, 1, timedelta(days=14), CAUSE, T0)
    return wallet


def test_no_wallet_or_an_empty_one_may_be_erased() -> None:
    check_erasable(None)
    check_erasable(Wallet.open(uuid4(), CAUSE, T0))
    assert remaining_in(None) == Remaining() and Remaining().empty


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda w: None, Remaining(available=100)),
        (lambda w: w.lock_stake(uuid4(), 100, CAUSE, T0), Remaining(staked=100)),
        (
            lambda w: w.charge_penalty(uuid4(), uuid4(), 100, CAUSE, T0),
            Remaining(penalties=100),
        ),
        (lambda w: w.open_dispute("pi_unit", "dp_1", CAUSE, T0), Remaining(frozen=100)),
        (lambda w: w.request_withdrawal(uuid4(), 100, CAUSE, T0), Remaining(pending=100)),
    ],
    ids=["available", "staked", "penalty", "frozen", "withdrawal"],
)
def test_any_token_or_hold_refuses_erasure(
    change: Callable[[Wallet], object], expected: Remaining
) -> None:
    wallet = funded_wallet()
    change(wallet)
    assert remaining_in(wallet) == expected
    with pytest.raises(WalletNotEmpty) as refused:
        check_erasable(wallet)
    assert refused.value.remaining == expected and refused.value.code == "wallet_not_empty"


def test_refused_while_taking_part_in_an_open_challenge_even_without_a_stake(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    """A free challenge holds no token, but a payout could still reach the participant."""
    account = register_user()
    body = challenge_body(next_midnight(api_services.clock.now()), entry_stake=0)
    created = api_client.post("/v1/challenges", json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    published = api_client.post(
        f"/v1/challenges/{created.json()['id']}/publish", headers=account.headers
    )
    assert published.status_code == 200, published.text

    refused = assert_problem(erase_me(api_client, account), 409, "wallet_not_empty")
    assert (refused["staked"], refused["challenges"]) == (0, 1)
    assert_intact(api_client, api_services, account)


def test_an_erased_users_wallet_is_closed_to_its_owners_commands(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Account]
) -> None:
    """Tokens reaching the wallet after the erasure are not the user's to stake or withdraw."""
    account = register_user()
    assert erase_me(api_client, account).status_code == 204
    fund(api_services, account.id)  # a late payment
    ledger = api_services.ledger
    with pytest.raises(WalletClosed):
        ledger.request_withdrawal(account.id, uuid4(), 1, Cause.user(account.id))
    assert ledger.wallet_of(account.id).closed
