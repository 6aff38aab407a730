"""Emails are normalised (NFKC, trimmed, lower-cased) and refuse invisible characters (rules §7):
a look-alike spelling is the same account, never a second one."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from adapters.users import UserStore, email_key
from tests.api.conftest import PASSWORD, Account

FORBIDDEN = ["\u202e", "\u202d", "\u200f", "\u200e", "\u2066", "\u2069", "\u200b", "\x00",
             "\x01", "\x1f", "\x7f", "\x85"]  # fmt: skip


def fullwidth(text: str) -> str:
    """``ada`` → ``ａｄａ``: the full-width forms NFKC folds back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def test_a_full_width_spelling_is_the_same_account(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    ascii_email = f"ada_{tag()}@example.com"
    account = register_user(ascii_email)
    again = api_client.post(
        "/v1/auth/register",
        json={"email": fullwidth(ascii_email), "username": f"x_{tag()}", "password": PASSWORD},
    )
    assert again.status_code == 409, again.text
    assert again.json()["field"] == "email"
    login = api_client.post(
        "/v1/auth/login", json={"email": fullwidth(ascii_email.upper()), "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    me = api_client.get(
        "/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["id"] == str(account.id)


def test_an_account_registered_full_width_logs_in_with_plain_ascii(
    api_client: TestClient,
) -> None:
    ascii_email = f"ada_{tag()}@example.com"
    created = api_client.post(
        "/v1/auth/register",
        json={
            "email": f"  {fullwidth(ascii_email)} ",
            "username": f"a_{tag()}",
            "password": PASSWORD,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["email"] == ascii_email  # stored in its NFKC form, trimmed
    login = api_client.post("/v1/auth/login", json={"email": ascii_email, "password": PASSWORD})
    assert login.status_code == 200, login.text


@pytest.mark.parametrize("char", FORBIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_an_email_with_a_control_or_bidi_character_is_refused(
    api_client: TestClient, char: str
) -> None:
    email = f"ada{char}_{tag()}@example.com"
    for route, body in [
        ("/v1/auth/register", {"email": email, "username": f"c_{tag()}", "password": PASSWORD}),
        ("/v1/auth/login", {"email": email, "password": PASSWORD}),
    ]:
        refused = api_client.post(route, json=body)
        assert refused.status_code == 422, (route, refused.text)
        assert refused.json()["code"] == "invalid_request"


def test_the_user_store_applies_the_same_rule_to_every_caller(api_services: object) -> None:
    users: UserStore = api_services.users  # type: ignore[attr-defined]
    ascii_email = f"bo_{tag()}@example.com"
    made = users.register(fullwidth(ascii_email), f"s_{tag()}", PASSWORD)
    assert made.email == ascii_email
    assert users.by_email(fullwidth(ascii_email.upper())) == made
    assert users.authenticate(f" {ascii_email.upper()}", PASSWORD) == made
    with pytest.raises(ValueError, match="control or bidirectional"):
        users.register(f"e\u202egnp.{tag()}@example.com", f"t_{tag()}", PASSWORD)
    assert email_key(" ＡＤＡ@Example.COM ") == "ada@example.com"
