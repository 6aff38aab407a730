"""The admin pages and the audit report as HTML, from the templates in ``projections/templates``.

Jinja2 with autoescaping: every value is escaped unless it is one of our own SVG charts.
Pure: the callers pass in the data (read-model queries, an audit report) and get a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

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


def generated_at(now: datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S UTC")
