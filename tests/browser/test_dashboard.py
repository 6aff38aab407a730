"""An admin signs in from a real browser and reads the dashboard; its figures are the read
models'; a user is refused; /docs renders offline; the audit report renders for print."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Page
from psycopg.rows import dict_row

from api.cli import main
from tests.browser.conftest import Site, screenshot, sign_in

# The first test may install Chromium with apt (the `chromium` fixture).
pytestmark = pytest.mark.timeout(1_800)

SINCE, UNTIL = "2026-03-01", "2026-03-14"  # the scenario's stream lies within these days


def one(site: Site, sql: str, *params: Any) -> dict[str, Any]:
    with psycopg.connect(site.db.url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f'SET search_path TO "{site.db.schema}"')
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row


def shown(page: Page, testid: str) -> int:
    return int(page.get_by_test_id(testid).inner_text())


def test_an_admin_reads_the_read_models_figures_on_the_dashboard(
    page: Page, site: Site, artifacts: Path
) -> None:
    sign_in(page, site, site.admin_email)
    page.wait_for_url(f"{site.url}/admin/dashboard")
    page.fill("input[name=from]", SINCE)
    page.fill("input[name=to]", UNTIL)
    page.click("#range button[type=submit]")
    page.wait_for_url(f"**/admin/dashboard?from={SINCE}&to={UNTIL}")

    revenue = one(
        site,
        "SELECT sum(forfeits) AS forfeits, sum(fees) AS fees, sum(dispute_losses) AS losses "
        "FROM revenue_daily WHERE day BETWEEN %s AND %s",
        SINCE,
        UNTIL,
    )
    assert revenue["fees"] > 0 and revenue["losses"] > 0  # the scenario has both
    assert shown(page, "total-revenue-forfeits") == revenue["forfeits"]
    assert shown(page, "total-revenue-fees") == revenue["fees"]
    assert shown(page, "total-revenue-dispute_losses") == -revenue["losses"]

    money = one(
        site,
        "SELECT sum(deposited) AS deposited, sum(refunded) AS refunded, "
        "sum(cashed_out) AS cashed_out FROM wallet_balances",
    )
    assert money["refunded"] > 0
    assert shown(page, "total-money-deposits") == money["deposited"]
    assert shown(page, "total-money-refunds") == money["refunded"]
    assert shown(page, "total-money-cashouts") == money["cashed_out"]

    outcomes = one(
        site,
        "SELECT count(*) FILTER (WHERE outcome = 'paid_out') AS paid_out, "
        "count(*) FILTER (WHERE outcome = 'forfeited') AS forfeited, "
        "count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled FROM challenge_summaries",
    )
    assert outcomes["paid_out"] >= 1 and outcomes["cancelled"] >= 1
    for outcome in ("paid_out", "forfeited", "cancelled"):
        assert shown(page, f"total-outcomes-{outcome}") == outcomes[outcome]

    open_now = one(
        site,
        "SELECT count(*) AS n, sum(pool) AS pools, (SELECT sum(p.stake) FROM "
        "challenge_participants p JOIN challenge_summaries s USING (challenge_id) "
        "WHERE s.status = 'active') AS stakes FROM challenge_summaries WHERE status = 'active'",
    )
    assert open_now["stakes"] == 2_100  # the open challenge: three stakes of 700
    assert shown(page, "open-challenges") == open_now["n"]
    assert shown(page, "open-pools") == open_now["pools"]
    assert shown(page, "total-at_stake-staked") == open_now["stakes"]

    head = one(site, "SELECT max(notification_id) AS head FROM ledger_events")["head"]
    assert shown(page, "stream-head") == head
    assert shown(page, "position-wallets") == head and shown(page, "max-lag") == 0

    # The bars are the same numbers: the day with a fee has a fee bar of that height's value.
    fee_day = one(site, "SELECT day, fees FROM revenue_daily WHERE fees > 0 ORDER BY day LIMIT 1")
    bar = page.locator(
        f'#revenue svg rect[data-series="fees"][data-x="{fee_day["day"].isoformat()}"]'
    )
    assert bar.get_attribute("data-value") == str(fee_day["fees"])
    assert page.locator("#outcomes svg rect").count() > 0
    assert page.locator("#at_stake svg circle").count() == 14  # one point per day

    with page.expect_download() as download:
        page.click("#money a.csv")
    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
    assert len(rows) == 14 and rows[0]["day"] == SINCE
    assert sum(int(r["deposits"]) for r in rows) == money["deposited"]
    screenshot(page, artifacts, "dashboard.png")


def test_a_user_who_signs_in_gets_403_and_a_stranger_the_sign_in_form(
    page: Page, site: Site
) -> None:
    page.goto(f"{site.url}/admin/dashboard")
    page.wait_for_url(f"{site.url}/admin/login")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        sign_in(page, site, site.user_email)
    assert answer.value.status == 403
    assert "only an admin" in page.locator("#message").inner_text()
    refused = page.goto(f"{site.url}/admin/dashboard")
    assert refused is not None and refused.url.endswith("/admin/login")  # no session was made


def test_signing_out_ends_the_session(page: Page, site: Site) -> None:
    sign_in(page, site, site.admin_email)
    page.wait_for_url(f"{site.url}/admin/dashboard")
    page.click("text=Sign out")
    page.wait_for_url(f"{site.url}/admin/login")
    page.goto(f"{site.url}/admin/dashboard")
    assert page.url == f"{site.url}/admin/login"


def test_the_api_docs_render_their_operations_offline(
    page: Page, site: Site, artifacts: Path
) -> None:
    spec = httpx.get(f"{site.url}/openapi.json").json()
    operations = sum(
        1
        for path in spec["paths"].values()
        for method in path
        if method in ("get", "post", "put", "patch", "delete")
    )
    page.goto(f"{site.url}/docs")
    page.wait_for_selector(".opblock-summary", timeout=60_000)
    assert page.locator(".opblock").count() == operations
    assert page.get_by_text("/v1/wallet/deposits").first.is_visible()
    screenshot(page, artifacts, "docs.png")
    page.goto(f"{site.url}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=60_000)
    assert page.locator("[data-section-id^='operation/']").count() == operations


def test_the_audit_report_renders_for_print(
    page: Page, site: Site, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = artifacts / "audit-report-browser.html"
    monkeypatch.setenv("DATABASE_URL", site.db.url)
    monkeypatch.setenv("DB_SCHEMA", site.db.schema)
    assert main(["audit", "report", "--html", str(report)]) == 0
    page.goto(report.as_uri())
    assert page.locator("#verdict").inner_text() == "CLEAN"
    assert page.locator("#invariants tr").count() >= 8
    page.emulate_media(media="print")
    screenshot(page, artifacts, "audit-report.png")
