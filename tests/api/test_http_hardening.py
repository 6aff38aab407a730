"""What the public listener exposes: bounded metrics (and none in production), bounded request
bodies, and the headers that keep browsers from framing, sniffing or downgrading our pages."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from adapters.metrics import REGISTRY
from api.bootstrap import Services
from tests.api.conftest import Account

KiB = 1024
MiB = 1024 * KiB
PROJECT_ROOT = Path(__file__).resolve().parents[2]
URLS = {
    "success_url": "http://127.0.0.1:8000/ok",
    "cancel_url": "http://127.0.0.1:8000/cancel",
}


@pytest.fixture
def production(api_services: Services) -> Iterator[None]:
    """The same app, answering as it would with ENV=production (config is read per request)."""
    development = api_services.config
    api_services.config = development.model_copy(update={"env": "production"})
    try:
        yield
    finally:
        api_services.config = development


def call_asgi(
    client: TestClient,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: Iterator[bytes],
) -> tuple[int, dict[str, str], bytes, int]:
    """Drive the app as a server would, body in chunks; also how many body bytes it pulled."""
    pulled = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    return answer["status"], answer["headers"], answer["body"], pulled


def thirty_megabytes() -> Iterator[bytes]:
    yield b'{"email": "a@example.com", "password": "'
    for _ in range(30 * 64):
        yield b"x" * (16 * KiB)
    yield b'"}'


def test_a_made_up_http_method_does_not_add_a_metric_label(api_client: TestClient) -> None:
    for method in ("BREW", "PROPFIND", "XYZZY"):
        api_client.request(method, "/v1/health")
    exposed = generate_latest(REGISTRY).decode()
    methods = set(re.findall(r'peerpush_http_request_seconds_count\{method="([^"]*)"', exposed))
    assert {"BREW", "PROPFIND", "XYZZY"}.isdisjoint(methods), methods
    assert "other" in methods


def test_production_serves_no_metrics_and_no_stream_head_on_the_public_listener(
    api_client: TestClient, production: None
) -> None:
    metrics = api_client.get("/v1/metrics")
    assert metrics.status_code == 404
    assert metrics.headers["content-type"].startswith("application/problem+json")
    assert "peerpush_" not in metrics.text
    ready = api_client.get("/v1/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_development_still_serves_metrics_and_the_stream_head(api_client: TestClient) -> None:
    assert "peerpush_http_request_seconds" in api_client.get("/v1/metrics").text
    assert "head" in api_client.get("/v1/ready").json()


def test_the_internal_metrics_listener_serves_what_the_public_one_no_longer_does(
    api_client: TestClient, production: None
) -> None:
    from adapters.metrics import serve_internal

    api_client.get("/v1/health")
    server = serve_internal("127.0.0.1:0")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'peerpush_http_request_seconds_count{method="GET",route="/v1/health"' in text


def test_a_body_announced_over_64_kib_is_refused_with_413_without_reading_it(
    api_client: TestClient,
) -> None:
    status, headers, body, pulled = call_asgi(
        api_client,
        "POST",
        "/v1/auth/login",
        [(b"content-type", b"application/json"), (b"content-length", b"31457322")],
        thirty_megabytes(),
    )
    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert b'"code":"request_too_large"' in body
    assert pulled == 0


def test_a_chunked_body_is_refused_with_413_once_it_passes_64_kib(
    api_client: TestClient,
) -> None:
    status, headers, body, pulled = call_asgi(
        api_client,
        "POST",
        "/v1/auth/login",
        [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        thirty_megabytes(),
    )
    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert b'"code":"request_too_large"' in body
    assert pulled <= 64 * KiB + 16 * KiB + 64  # stopped at the first chunk past the limit


def test_a_json_body_just_under_the_limit_is_still_read(api_client: TestClient) -> None:
    padding = "x" * (60 * KiB)
    r = api_client.post("/v1/auth/login", json={"email": "a@example.com", "password": padding})
    assert r.status_code in (401, 422), r.text


def test_a_photo_upload_may_be_larger_than_64_kib(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    photo = b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * MiB)
    r = api_client.post(
        "/v1/challenges/00000000-0000-0000-0000-000000000000/submissions",
        data={"proof_type": "photo"},
        files={"file": ("p.png", photo, "image/png")},
        headers=account.headers,
    )
    assert r.status_code == 404, r.text  # got past the size limit to the challenge lookup


def test_the_checkout_page_cannot_be_framed_sniffed_or_leak_its_url(
    api_client: TestClient, register_user: Callable[..., Account]
) -> None:
    account = register_user()
    created = api_client.post(
        "/v1/wallet/deposits", json={"tokens": 100, **URLS}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    page = "/v1/" + created.json()["checkout_url"].split("/v1/", 1)[1]
    r = api_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "strict-transport-security" not in r.headers  # development is plain http


def test_production_tells_browsers_to_use_https_only(
    api_client: TestClient, production: None
) -> None:
    hsts = api_client.get("/v1/health").headers["strict-transport-security"]
    assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000


def test_the_docs_pages_load_everything_from_this_server(api_client: TestClient) -> None:
    """Swagger UI and ReDoc render offline: every script, style and icon they name is ours,
    served, and allowed by the page's policy."""
    for page in ("/docs", "/redoc"):
        r = api_client.get(page)
        assert r.status_code == 200
        policy = dict(
            (part.split()[0], part.split()[1:])
            for part in r.headers["content-security-policy"].split(";")
            if part.strip()
        )
        assert policy["frame-ancestors"] == ["'none'"]
        assets = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', r.text)
        assert assets, r.text
        for url in assets:
            assert not urlsplit(url).netloc, (page, url)  # nothing from another host
            assert api_client.get(url).status_code == 200, url
        for directive in ("script-src", "style-src", "img-src", "connect-src"):
            assert "'self'" in policy[directive], directive
        assert not any("https:" in v for values in policy.values() for v in values)
        assert "'unsafe-inline'" in policy["script-src"]  # the page starts its UI inline


RECORD_ONE_REQUEST = """
from adapters.metrics import REQUEST_LATENCY
REQUEST_LATENCY.labels("GET", "/health", "200").observe(0.01)
"""


def test_several_server_processes_are_scraped_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.metrics import exposed_registry, prepare_multiprocess

    (tmp_path / "histogram_999999.db").write_bytes(b"stale")  # an earlier run's samples
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    prepare_multiprocess()
    assert not (tmp_path / "histogram_999999.db").exists()
    for _ in range(2):  # two server processes, each recording one request
        subprocess.run(
            [sys.executable, "-c", RECORD_ONE_REQUEST],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            check=True,
            timeout=120,
        )
    text = generate_latest(exposed_registry()).decode()
    line = 'peerpush_http_request_seconds_count{method="GET",route="/health",status="200"} 2.0'
    assert line in text, text
