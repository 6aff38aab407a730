"""The admin pages and the audit report as HTML, from the templates in ``projections/templates``.

Jinja2 with autoescaping: every value is escaped unless it is one of our own SVG charts.
Pure: the callers pass in the data (read-model queries, an audit report) and get a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from projections.audit.findings import KINDS
from projections.audit.verify import Report
from projections.charts import svg_chart
from projections.dashboard import Chart, Dashboard

TEMPLATES = Environment(
    loader=PackageLoader("projections", "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class DrawnChart:
    chart: Chart
    svg: Markup


def draw(chart: Chart) -> DrawnChart:
    categories = [category for category, _ in chart.rows]
    series = [
        (name, [values[i] for _, values in chart.rows]) for i, name in enumerate(chart.series)
    ]
    return DrawnChart(chart, Markup(svg_chart(chart.title, categories, series, chart.kind)))


def dashboard_page(d: Dashboard, *, csrf_token: str) -> str:
    charts = [draw(c) for c in d.charts]
    return TEMPLATES.get_template("dashboard.html").render(
        d=d, charts=charts, csrf_token=csrf_token
    )


def login_page(*, csrf_token: str, error: str = "", email: str = "") -> str:
    return TEMPLATES.get_template("login.html").render(
        csrf_token=csrf_token, error=error, email=email
    )


def message_page(heading: str, message: str) -> str:
    """A page that only says why (a refusal, a bad range)."""
    return TEMPLATES.get_template("message.html").render(heading=heading, message=message)


# Each kind of finding (projections.audit.findings.KINDS) as the check that holds without it.
CHECKS = {
    "expect_head": "the stream is unchanged up to the head an earlier audit printed",
    "chain": "the stored stream matches the hash chain recorded over it",
    "chain_row": "the stored chain's own rows are complete and unaltered",
    "event": "every stored event decodes and applies to its aggregate",
    "invariant": "rules §8's invariants hold on the replayed wallets and challenges",
    "read_model": "every read-model row equals the replayed stream",
    "journal": "the stored journal balances and records every money event",
}


@dataclass(frozen=True)
class InvariantRow:
    check: str
    holds: bool
    result: str


def invariant_rows(report: Report) -> list[InvariantRow]:
    """One row per kind of audit check: it holds, or how many findings it has."""
    rows = []
    for kind, meaning in KINDS.items():
        if kind == "expect_head" and not any(f.kind == kind for f in report.findings):
            continue  # only asked for when an earlier head was given
        found = sum(1 for f in report.findings if f.kind == kind)
        check = CHECKS.get(kind, "none found: " + meaning)
        rows.append(InvariantRow(check, not found, "holds" if not found else f"{found} finding(s)"))
    t = report.totals
    if t:
        same = t["credited"] == t["accounted"]
        rows.append(
            InvariantRow(
                "conservation: every token credited is in exactly one place",
                same,
                "holds" if same else f"credited {t['credited']:,} ≠ accounted {t['accounted']:,}",
            )
        )
    zero = sum(report.accounts.values()) == 0
    rows.append(InvariantRow("the journal's balances sum to zero", zero, "holds" if zero else "no"))
    return rows


def audit_page(report: Report, generated: datetime) -> str:
    """``peerpush audit report``: the audit as one printable page an auditor can sign."""
    return TEMPLATES.get_template("audit_report.html").render(
        r=report,
        invariants=invariant_rows(report),
        generated=generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
