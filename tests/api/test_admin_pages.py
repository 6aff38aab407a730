"""The admin pages' browser sign-in: a cookie for /admin only, CSRF on every form, the same
credential check and limits as the JSON login (rules §7). The dashboard itself is checked in
a real browser in tests/browser."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.browser_sessions import SESSION_COOKIE
from api.bootstrap import Services
from tests.api.conftest import Account, bearer


def form_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: TestClient, account: Account, **changes: str) -> httpx.Response:
    page = client.get("/admin/login")
    assert page.status_code == 200
    data = {
        "email": account.email,
        "password": account.password,
        "csrf_token": form_token(page.text),
        **changes,
    }
    return client.post("/admin/login", data=data, follow_redirects=False)


@pytest.fixture
def admin(api_services: Services, register_user: Callable[..., Account]) -> Account:
    account = register_user()
    assert api_services.users.set_role(account.email, "admin") is not None
    return account


@pytest.fixture
def browser(api_client: TestClient) -> TestClient:
    """A client of its own with an empty cookie jar (the module's client is shared)."""
    fresh = TestClient(api_client.app)
    fresh.cookies.clear()
    return fresh


def test_an_admin_signs_in_with_a_strict_httponly_cookie_for_the_admin_pages_only(
    browser: TestClient, admin: Account
) -> None:
    done = sign_in(browser, admin)
    assert done.status_code == 303 and done.headers["location"] == "/admin/dashboard"
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "Path=/admin" in cookie and "SameSite=strict" in cookie
    assert "secure" not in attributes  # development is plain http; production sets it
    page = browser.get("/admin/dashboard")
    assert page.status_code == 200 and "analysts' dashboard" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_production_marks_both_cookies_secure(
    api_client: TestClient, api_services: Services, admin: Account
) -> None:
    browser = TestClient(api_client.app, base_url="https://testserver")  # Secure needs https
    development = api_services.config
    api_services.config = development.model_copy(update={"env": "production"})
    try:
        form = browser.get("/admin/login")
        token = form_token(form.text)
        done = browser.post(
            "/admin/login",
            data={"email": admin.email, "password": admin.password, "csrf_token": token},
            follow_redirects=False,
        )
    finally:
        api_services.config = development
    assert "; secure" in form.headers["set-cookie"].lower()
    assert done.status_code == 303
    session = [c for c in done.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert session and "; secure" in session[0].lower()


def test_the_session_cookie_is_no_bearer_token_on_the_json_api(
    browser: TestClient, admin: Account
) -> None:
    sign_in(browser, admin)
    session = browser.cookies.get(SESSION_COOKIE)
    assert session
    assert browser.get("/v1/platform/revenue").status_code == 401  # the cookie is not read
    assert browser.get("/v1/platform/revenue", headers=bearer(session)).status_code == 401
    assert browser.get("/v1/platform/revenue", headers=admin.headers).status_code == 200


def test_a_sign_in_without_the_forms_token_is_refused(browser: TestClient, admin: Account) -> None:
    refused = sign_in(browser, admin, csrf_token="0" * 64)
    assert refused.status_code == 403
    assert SESSION_COOKIE not in browser.cookies
    # A token from another browser's form does not fit this browser's nonce either.
    other = TestClient(browser.app)
    stolen = form_token(other.get("/admin/login").text)
    assert sign_in(browser, admin, csrf_token=stolen).status_code == 403


def test_a_wrong_password_is_refused_and_counted_like_an_api_login(
    browser: TestClient, admin: Account, rate_limits_on: None
) -> None:
    for _ in range(5):
        wrong = sign_in(browser, admin, password="not the password")
        assert wrong.status_code == 401
        assert "wrong email or password" in wrong.text
    # The per-address login limit (5 a minute) is the JSON login's, shared by both.
    assert sign_in(browser, admin).status_code == 429
    api = browser.post("/v1/auth/login", json={"email": admin.email, "password": admin.password})
    assert api.status_code == 429


def test_a_user_gets_403_and_no_session(
    browser: TestClient, register_user: Callable[..., Account]
) -> None:
    user = register_user()
    refused = sign_in(browser, user)
    assert refused.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_a_demoted_admin_gets_403_and_a_stranger_the_sign_in_form(
    browser: TestClient, api_services: Services, admin: Account
) -> None:
    assert browser.get("/admin/dashboard", follow_redirects=False).headers["location"] == (
        "/admin/login"
    )
    sign_in(browser, admin)
    api_services.users.set_role(admin.email, "user")
    assert browser.get("/admin/dashboard").status_code == 403
    assert browser.get("/admin/dashboard/revenue.csv").status_code == 403


def test_signing_out_needs_the_pages_token_and_ends_the_session(
    browser: TestClient, admin: Account
) -> None:
    sign_in(browser, admin)
    session = browser.cookies.get(SESSION_COOKIE)
    page = browser.get("/admin/dashboard")
    assert browser.post("/admin/logout", data={"csrf_token": "x"}).status_code == 403
    assert browser.get("/admin/dashboard").status_code == 200
    out = browser.post(
        "/admin/logout", data={"csrf_token": form_token(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    # Even a copy of the old cookie no longer opens the pages.
    replay = TestClient(browser.app, cookies={SESSION_COOKIE: session or ""})
    assert replay.get("/admin/dashboard", follow_redirects=False).status_code == 303


def test_each_chart_downloads_as_csv_for_the_range_asked(
    browser: TestClient, admin: Account
) -> None:
    sign_in(browser, admin)
    got = browser.get("/admin/dashboard/money.csv?from=2026-03-01&to=2026-03-03")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "peerpush-money-2026-03-01-2026-03-03.csv" in got.headers["content-disposition"]
    assert got.text.splitlines() == [
        "day,deposits,refunds,cashouts",
        "2026-03-01,0,0,0",
        "2026-03-02,0,0,0",
        "2026-03-03,0,0,0",
    ]
    weeks = browser.get("/admin/dashboard/outcomes.csv?from=2026-03-01&to=2026-03-10")
    assert weeks.text.splitlines()[0] == "week,paid_out,forfeited,cancelled"
    assert [line.split(",")[0] for line in weeks.text.splitlines()[1:]] == [
        "2026-02-23",
        "2026-03-02",
        "2026-03-09",
    ]
    assert browser.get("/admin/dashboard/projections.csv").text.startswith("projection,")
    assert browser.get("/admin/dashboard/nothing.csv").status_code == 404
    assert browser.get("/admin/dashboard?from=2026-03-02&to=2026-03-01").status_code == 422
