"""Accounts and sessions over HTTP: register, login, refresh rotation with reuse detection,
logout, and every way a token can be refused (rules §7)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from fastapi.testclient import TestClient

from api.bootstrap import Services
from tests.api.conftest import PASSWORD, TEST_JWT_SECRET, Account, bearer

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code:
        assert body["code"] == code
    return body


def unique() -> str:
    return uuid.uuid4().hex[:12]


# -- register ---------------------------------------------------------------------------------


def test_registering_returns_the_new_user_without_secrets(api_client: TestClient) -> None:
    tag = unique()
    response = api_client.post(
        "/v1/auth/register",
        json={"email": f"Ann_{tag}@Example.com", "username": f"ann_{tag}", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "email", "username", "role", "created_at"}
    assert user["email"] == f"Ann_{tag}@Example.com"
    assert user["username"] == f"ann_{tag}"
    assert user["role"] == "user"
    uuid.UUID(user["id"])


def test_an_email_registers_once_whatever_its_case(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    again = api_client.post(
        "/v1/auth/register",
        json={"email": account.email.upper(), "username": f"x_{unique()}", "password": PASSWORD},
    )
    assert assert_problem(again, 409, "user_exists")["field"] == "email"


def test_a_username_registers_once(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    body = {"email": f"{unique()}@example.com", "username": account.username, "password": PASSWORD}
    again = api_client.post("/v1/auth/register", json=body)
    assert assert_problem(again, 409, "user_exists")["field"] == "username"


def test_registration_fields_are_validated(api_client: TestClient) -> None:
    good = {"email": f"{unique()}@example.com", "username": f"u_{unique()}", "password": PASSWORD}
    for field, value in [
        ("username", "Ann"),
        ("username", "ab"),
        ("username", "a" * 21),
        ("username", "ann-b"),
        ("password", "short"),
        ("password", "x" * 129),
        ("email", "not-an-email"),
    ]:
        response = api_client.post("/v1/auth/register", json={**good, field: value})
        assert_problem(response, 422, "invalid_request")


# -- login ------------------------------------------------------------------------------------


def test_logging_in_returns_a_bearer_pair(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    response = api_client.post(
        "/v1/auth/login", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    me = api_client.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == str(account.id)
    assert me.json()["email"] == account.email


def test_a_wrong_password_and_an_unknown_email_are_refused_alike(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    wrong = api_client.post(
        "/v1/auth/login", json={"email": account.email, "password": "wrong password"}
    )
    unknown = api_client.post(
        "/v1/auth/login", json={"email": f"{unique()}@example.com", "password": PASSWORD}
    )
    assert assert_problem(wrong, 401, "invalid_credentials") == assert_problem(
        unknown, 401, "invalid_credentials"
    )


# -- refresh and logout -----------------------------------------------------------------------


def test_refreshing_rotates_the_pair(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    response = api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["refresh_token"] != account.refresh_token
    assert api_client.get("/v1/auth/me", headers=bearer(pair["access_token"])).status_code == 200
    following = api_client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert following.status_code == 200


def test_reusing_a_refresh_token_revokes_its_whole_family(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    rotated = api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    newest = rotated.json()

    reuse = api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(reuse, 401, "invalid_token")
    assert reuse.headers["WWW-Authenticate"] == "Bearer"

    # Whoever held the newest pair is logged out too: access and refresh tokens alike.
    after = api_client.post("/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]})
    assert_problem(after, 401, "invalid_token")
    for token in (newest["access_token"], account.access_token):
        assert_problem(api_client.get("/v1/auth/me", headers=bearer(token)), 401, "invalid_token")


def test_reuse_ends_only_that_session(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    other_session = api_client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    ).json()
    api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    me = api_client.get("/v1/auth/me", headers=bearer(other_session["access_token"]))
    assert me.status_code == 200


def test_logging_out_ends_the_session(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    response = api_client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    assert response.content == b""
    refused = api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refused, 401, "invalid_token")
    assert_problem(api_client.get("/v1/auth/me", headers=account.headers), 401, "invalid_token")
    # Logging out twice is fine.
    again = api_client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert again.status_code == 204


def test_logging_out_needs_a_genuine_refresh_token(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    response = api_client.post("/v1/auth/logout", json={"refresh_token": account.access_token})
    assert_problem(response, 401, "invalid_token")
    assert api_client.get("/v1/auth/me", headers=account.headers).status_code == 200


# -- refused tokens ---------------------------------------------------------------------------


def forge(account: Account, secret: str = TEST_JWT_SECRET, **changes: Any) -> str:
    """A token like the account's access token, with some claims changed, signed with ``secret``."""
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, "HS256")


def test_me_needs_a_bearer_token(api_client: TestClient) -> None:
    response = api_client.get("/v1/auth/me")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    basic = api_client.get("/v1/auth/me", headers={"Authorization": "Basic YTpi"})
    assert_problem(basic, 401)


def test_an_expired_access_token_is_refused(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    past = datetime.now(UTC) - timedelta(minutes=20)
    token = forge(account, iat=past, exp=past + timedelta(minutes=15))
    body = assert_problem(api_client.get("/v1/auth/me", headers=bearer(token)), 401)
    assert body["code"] == "invalid_token"
    assert "expired" in body["detail"]


def test_a_tampered_token_is_refused(
    api_client: TestClient, register_user: Callable[..., Account], api_services: Services
) -> None:
    victim, attacker = register_user(), register_user()
    header, payload, signature = attacker.access_token.split(".")
    other_payload = victim.access_token.split(".")[1]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for token in (
        f"{header}.{other_payload}.{signature}",  # someone else's claims, my signature
        f"{header}.{payload}.{flipped}",
        forge(attacker, role="admin", secret="not-our-key-not-our-key-not-our-key"),
        forge(attacker, sub=str(victim.id), secret="not-our-key-not-our-key-not-our-key"),
        jwt.encode({"sub": str(victim.id), "typ": "access"}, None, algorithm="none"),
        "not.a.token",
        "garbage",
    ):
        response = api_client.get("/v1/auth/me", headers=bearer(token))
        assert_problem(response, 401, "invalid_token")


def test_a_refresh_token_is_not_an_access_token(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    response = api_client.get("/v1/auth/me", headers=bearer(account.refresh_token))
    assert_problem(response, 401, "invalid_token")
    wrong_typ = forge(account, typ="refresh")
    assert_problem(api_client.get("/v1/auth/me", headers=bearer(wrong_typ)), 401)
    as_refresh = api_client.post("/v1/auth/refresh", json={"refresh_token": account.access_token})
    assert_problem(as_refresh, 401, "invalid_token")


def test_a_token_missing_a_claim_is_refused(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    for claim in ("exp", "sub", "jti", "typ", "sid", "iss"):
        token = forge(account, **{claim: None})
        assert_problem(api_client.get("/v1/auth/me", headers=bearer(token)), 401, "invalid_token")


def test_an_erased_users_tokens_are_refused(
    api_client: TestClient, register_user: Callable[..., Account], api_services: Services
) -> None:
    account = register_user()
    api_services.users.erase(account.id)
    assert_problem(api_client.get("/v1/auth/me", headers=account.headers), 401, "invalid_token")
    refresh = api_client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refresh, 401, "invalid_token")
    login = api_client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(login, 401, "invalid_credentials")


# -- roles ------------------------------------------------------------------------------------


def test_admin_routes_refuse_users_and_admit_admins(
    api_client: TestClient, register_and_login: Callable[..., str], admin_token: str
) -> None:
    user_token = register_and_login()
    refused = api_client.get("/v1/audit/events?limit=1", headers=bearer(user_token))
    assert_problem(refused, 403, "admin_only")
    admitted = api_client.get("/v1/audit/events?limit=1", headers=bearer(admin_token))
    assert admitted.status_code == 200, admitted.text
    me = api_client.get("/v1/auth/me", headers=bearer(admin_token))
    assert me.json()["role"] == "admin"


def test_a_demotion_applies_to_tokens_already_issued(
    api_client: TestClient, register_user: Callable[..., Account], api_services: Services
) -> None:
    account = register_user()
    api_services.users.set_role(account.email, "admin")
    assert api_client.get("/v1/audit/events", headers=account.headers).status_code == 200
    api_services.users.set_role(account.email, "user")
    assert api_client.get("/v1/audit/events", headers=account.headers).status_code == 403
