"""Whose address a request counts against (rules §7 rate limits): the TCP peer, unless that peer
is a proxy the operator listed in ``TRUSTED_PROXIES``; then the right-most address in
``X-Forwarded-For`` that is not one of those proxies. A client cannot pick its own bucket."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.client_address import client_address
from adapters.persistence import DatabaseSettings
from adapters.settings import parse_trusted_proxies
from api import cli
from api.app import create_app
from api.bootstrap import Services, build_services
from tests.api.conftest import Account, api_config

PROXY = "10.1.2.3"  # inside TRUSTED_PROXIES below
CLIENT = "198.51.100.7"


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    config = api_config(
        tmp_path_factory.mktemp("proofs"), trusted_proxies=("10.0.0.0/8", "fd00::/8")
    )
    services = build_services(config, db=api_db)
    try:
        yield services
    finally:
        services.close()


@contextmanager
def client_from(app: Any, peer: str) -> Iterator[TestClient]:
    with TestClient(app, client=(peer, 40000)) as client:
        yield client


def wrong_login(client: TestClient, email: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"email": email, "password": "not the password"}
    return client.post("/v1/auth/login", json=body, headers=headers).status_code


def spoofed() -> str:
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


@pytest.mark.usefixtures("rate_limits_on")
def test_a_forwarded_for_from_an_untrusted_peer_does_not_change_the_bucket(
    api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    with client_from(create_app(api_services, start_workers=False), "192.0.2.50") as client:
        assert [wrong_login(client, account.email, spoofed()) for _ in range(5)] == [401] * 5
        assert wrong_login(client, account.email, spoofed()) == 429


@pytest.mark.usefixtures("rate_limits_on")
def test_a_trusted_proxy_names_the_client_and_spoofed_hops_before_it_are_ignored(
    api_services: Services, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    with client_from(create_app(api_services, start_workers=False), PROXY) as client:
        # The client prepends lies; the proxy appends the address it really saw.
        statuses = [wrong_login(client, account.email, f"{spoofed()}, {CLIENT}") for _ in range(5)]
        assert statuses == [401] * 5
        assert wrong_login(client, account.email, f"{spoofed()}, {CLIENT}, 10.9.9.9") == 429
        assert wrong_login(client, account.email, "198.51.100.8") == 401  # another client


@pytest.mark.usefixtures("rate_limits_on")
def test_the_served_app_does_not_trust_forwarded_for_from_a_local_peer(
    api_services: Services,
    register_user: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``peerpush serve``'s uvicorn must not rewrite the client from X-Forwarded-For itself
    (its default trusts any 127.0.0.1 peer): only TRUSTED_PROXIES decide."""
    import uvicorn

    served: dict[str, Any] = {}
    app = create_app(api_services, start_workers=False)
    monkeypatch.setattr("api.app.create_app", lambda *a, **k: app)
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.update(app=a, **kw))
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    cli.main(["serve"])
    config = uvicorn.Config(**served)
    config.load()
    account = register_user()
    with client_from(config.loaded_app, "127.0.0.1") as client:
        assert [wrong_login(client, account.email, spoofed()) for _ in range(5)] == [401] * 5
        assert wrong_login(client, account.email, spoofed()) == 429


def test_the_client_is_the_right_most_untrusted_hop() -> None:
    trusted = parse_trusted_proxies("10.0.0.0/8, 192.168.1.1 ,fd00::/8")
    assert client_address("192.0.2.1", "1.2.3.4", trusted) == "192.0.2.1"  # peer untrusted
    assert client_address("10.0.0.1", "", trusted) == "10.0.0.1"  # no header: the proxy
    assert client_address("10.0.0.1", "1.2.3.4, 5.6.7.8", trusted) == "5.6.7.8"
    assert client_address("10.0.0.1", "1.2.3.4, 5.6.7.8, 192.168.1.1", trusted) == "5.6.7.8"
    assert client_address("fd00::1", "2001:db8::1, fd00::2", trusted) == "2001:db8::1"
    assert client_address("10.0.0.1", "10.0.0.2, 10.0.0.3", trusted) == "10.0.0.2"
    # Garbage is never a bucket: the hop that passed it on is.
    assert client_address("10.0.0.1", "1.2.3.4, junk", trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", "junk, 10.0.0.7", trusted) == "10.0.0.7"
    assert client_address(None, "1.2.3.4", trusted) == "unknown"
    assert client_address("testclient", "1.2.3.4", trusted) == "testclient"
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies("127.0.0.1") == (ipaddress.ip_network("127.0.0.1/32"),)
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        parse_trusted_proxies("10.0.0.0/8, not-an-address")


def test_trusted_proxies_are_read_and_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.settings import ServiceSettings

    monkeypatch.setenv("DATA_DIR", "/tmp")
    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    assert ServiceSettings.from_env().trusted_proxies == ()
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert ServiceSettings.from_env().trusted_proxies == ("10.0.0.0/8", "192.168.1.1/32")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        ServiceSettings.from_env()
