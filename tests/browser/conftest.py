"""A real browser against the real server: headless Chromium (Debian's, installed by the
``chromium`` fixture when missing) driven by Playwright, and the app served by uvicorn on a
free 127.0.0.1 port over a schema holding a stream with every kind of money event.

Every request the browser makes to another host is aborted, so the pages are proved to work
offline.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, sync_playwright

from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from api.app import create_app
from api.bootstrap import Services, build_services
from tests.api.conftest import PASSWORD, api_config
from tests.audit.support import open_audited, open_challenge, scenario

STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Site:
    url: str
    db: DatabaseSettings
    services: Services
    admin_email: str
    user_email: str


def serve(services: Services) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(services, start_workers=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    schema = f"web_{uuid.uuid4().hex[:12]}"
    ensure_schema(database_url, schema)
    db = DatabaseSettings.from_url(database_url, schema=schema)
    audited = open_audited(db)
    services: Services | None = None
    try:
        scenario(audited)
        open_challenge(audited)
        audited.projector.catch_up()
        services = build_services(api_config(tmp_path_factory.mktemp("proofs")), db=db)
        tag = uuid.uuid4().hex[:8]
        admin, user = f"admin_{tag}@example.com", f"user_{tag}@example.com"
        services.users.register(admin, f"admin_{tag}", PASSWORD)
        services.users.set_role(admin, "admin")
        services.users.register(user, f"user_{tag}", PASSWORD)
        url, server, thread = serve(services)
        try:
            yield Site(url, db, services, admin, user)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        if services is not None:
            services.close()
        audited.close()
        drop_schema(database_url, schema)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) that may reach 127.0.0.1 and nothing else."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)

    def local_only(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in (None, "", "127.0.0.1"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", local_only)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, site: Site, email: str) -> None:
    page.goto(f"{site.url}/admin/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def screenshot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
