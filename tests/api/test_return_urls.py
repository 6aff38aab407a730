"""Checkout return URLs stay on the service's public origin (rules §7): a payer sent to Stripe
comes back to our own pages, never to a site an attacker named in the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.origins import same_origin
from tests.api.conftest import Account

ORIGIN = "http://127.0.0.1:8000"  # the default public base URL the API tests run with
GOOD = f"{ORIGIN}/wallet?deposit=done"

FOREIGN = [
    "https://evil.example/paid",
    "http://127.0.0.1:8000@evil.example/paid",
    "http://user:pw@127.0.0.1:8000/paid",
    "http://127.0.0.1:8000\\@evil.example/",
    "http://127.0.0.1:8000\\evil.example/",
    "//evil.example/paid",
    "javascript:alert(1)//127.0.0.1:8000/",
    "https://127.0.0.1:8000/paid",  # another scheme
    "http://127.0.0.1:8001/paid",  # another port
    "http://127.0.0.1/paid",  # the default port is another port
    "http://127.0.0.1.evil.example:8000/paid",
    "http://localhost:8000/paid",
    "http://127.0.0.1:8000%40evil.example/",
    "http://127.0.0.1:8000./paid",
    "http:///127.0.0.1:8000/paid",
    "/wallet",
]


def checkout(client: TestClient, account: Account, **urls: str) -> Any:
    body = {"tokens": 500, "success_url": GOOD, "cancel_url": GOOD, **urls}
    return client.post("/v1/wallet/deposits", json=body, headers=account.headers)


@pytest.mark.parametrize("url", FOREIGN)
def test_a_return_url_off_the_public_origin_is_refused(
    api_client: TestClient, register_user: Callable[..., Account], url: str
) -> None:
    account = register_user()
    for field in ("success_url", "cancel_url"):
        refused = checkout(api_client, account, **{field: url})
        assert refused.status_code == 422, (field, url, refused.text)
        assert refused.json()["code"] == "invalid_request"
        assert [e["loc"][-1] for e in refused.json()["errors"]] == [field]


def test_return_urls_on_the_public_origin_open_a_checkout(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    opened = checkout(
        api_client,
        account,
        success_url="HTTP://127.0.0.1:8000/paid?x=1#top",  # scheme and host case do not matter
        cancel_url=f"{ORIGIN}/cancelled",
    )
    assert opened.status_code == 201, opened.text


def test_an_origin_is_its_scheme_host_and_port() -> None:
    assert same_origin("https://app.example.com/x", "https://App.Example.com")
    assert same_origin("https://app.example.com:443/x", "https://app.example.com/")
    assert same_origin("http://[::1]:8000/x", "http://[::1]:8000")
    assert not same_origin("https://app.example.com/x", "https://app.example.com:8443")
    assert not same_origin("https://app.example.com.evil/x", "https://app.example.com")
    assert not same_origin("https://app.example.com:99999/x", "https://app.example.com")
    assert not same_origin("https://app.example.com\t/x", "https://app.example.com")
