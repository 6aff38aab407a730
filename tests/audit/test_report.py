"""``peerpush audit report``: the audit as one printable page (and PDF) an auditor signs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.audit.support import Audited, cli, connect, scenario

PDF_TIMEOUT = 1_800  # the first use may install Chromium with apt


@pytest.fixture
def projected_scenario(audited: Audited) -> Audited:
    scenario(audited)
    audited.projector.catch_up()
    return audited


def cells(page: str, table: str) -> list[list[str]]:
    body = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S)
        ]
        for r in rows
    ]


def test_a_clean_ledger_reports_every_check_holding_and_the_chain_head_verify_prints(
    projected_scenario: Audited, tmp_path: Path, capsys, monkeypatch
) -> None:
    page = tmp_path / "audit.html"
    code, _ = cli(projected_scenario.db, capsys, monkeypatch, "report", "--html", str(page))
    assert code == 0
    html = page.read_text()
    assert 'id="verdict" class="ok">CLEAN' in html
    checks = cells(html, "invariants")[1:]
    assert len(checks) >= 7 and all(result == "holds" for _, result in checks), checks
    journal = dict(cells(html, "journal")[1:])
    assert journal["total"] == "0" and "platform:revenue" in journal
    assert {name for name, _ in cells(html, "read-models")[1:]} >= {"wallets", "journal"}
    _, verified = cli(projected_scenario.db, capsys, monkeypatch, "verify")
    head = re.search(r"chain head    (\S+)", verified)
    assert head and f"<code>{head.group(1)}</code>" in html
    assert "Sign-off" in html and "<script" not in html


def test_a_tampered_stream_is_reported_with_its_findings_and_exit_1(
    projected_scenario: Audited, tmp_path: Path, capsys, monkeypatch
) -> None:
    with connect(projected_scenario.db) as conn:
        conn.execute(
            "UPDATE wallet_balances SET available = available + 7 "
            "WHERE wallet_id = (SELECT wallet_id FROM wallet_balances LIMIT 1)"
        )
    page = tmp_path / "audit.html"
    code, _ = cli(projected_scenario.db, capsys, monkeypatch, "report", "--html", str(page))
    assert code == 1
    html = page.read_text()
    assert "FINDING(S)" in html and 'id="findings"' in html
    failing = [c for c in cells(html, "invariants")[1:] if c[1] != "holds"]
    assert failing and "read-model row" in failing[0][0]
    assert "wallet_balances" in html.split('id="findings"', 1)[1]


@pytest.mark.timeout(PDF_TIMEOUT)
def test_the_report_prints_to_pdf_with_headless_chromium(
    projected_scenario: Audited, tmp_path: Path, capsys, monkeypatch, chromium: str, artifacts: Path
) -> None:
    page, pdf = artifacts / "audit-report.html", artifacts / "audit-report.pdf"
    pdf.unlink(missing_ok=True)
    code, _ = cli(
        projected_scenario.db, capsys, monkeypatch, "report", "--html", str(page), "--pdf", str(pdf)
    )
    assert code == 0
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 5_000
    print(f"audit report: {page} and {pdf}")
