"""The dashboard's pure parts: date ranges, chart data as CSV, SVG drawing."""

from __future__ import annotations

import re
from datetime import date
from itertools import pairwise

import pytest

from projections.charts import nice_ticks, svg_chart
from projections.dashboard import MAX_DAYS, Chart, DateRange

TODAY = date(2026, 3, 31)


def test_a_range_defaults_to_the_last_thirty_days_and_refuses_backwards_or_huge_ones() -> None:
    assert DateRange.of(None, None, TODAY) == DateRange(date(2026, 3, 2), TODAY)
    assert DateRange.of(date(2026, 3, 5), None, TODAY).until == TODAY
    assert DateRange.of(None, date(2026, 1, 30), TODAY).since == date(2026, 1, 1)
    with pytest.raises(ValueError, match="ends before"):
        DateRange.of(date(2026, 3, 5), date(2026, 3, 4), TODAY)
    with pytest.raises(ValueError, match="at most"):
        DateRange.of(date(2020, 1, 1), TODAY, TODAY)
    assert DateRange.of(date(2026, 1, 1), date(2026, 1, 1), TODAY).days == 1
    assert MAX_DAYS >= 366


def test_a_charts_totals_and_csv_hold_every_category() -> None:
    chart = Chart(
        "money",
        "t",
        "bars",
        "day",
        ("deposits", "refunds"),
        (("2026-03-01", (100, 0)), ("2026-03-02", (50, 30))),
    )
    assert chart.totals() == {"deposits": 150, "refunds": 30}
    assert chart.csv() == "day,deposits,refunds\n2026-03-01,100,0\n2026-03-02,50,30\n"
    line = Chart("s", "t", "line", "day", ("staked",), (("a", (5,)), ("b", (7,))))
    assert line.totals() == {"staked": 7}  # a level, not a flow: the last day's


def test_ticks_are_round_and_cover_the_values_and_zero() -> None:
    assert nice_ticks(0, 0) == [0, 1]
    ticks = nice_ticks(-1_040, 210)
    assert ticks[0] <= -1_040 and ticks[-1] >= 210 and 0 in ticks
    steps = {b - a for a, b in pairwise(ticks)}
    assert len(steps) == 1 and str(steps.pop()).strip("0") in ("1", "2", "5")


def test_a_negative_stacked_value_is_drawn_below_the_zero_line() -> None:
    svg = svg_chart("r", ["d1"], [("fees", [200]), ("dispute_losses", [-1_000])], "stacked")
    zero = float(re.search(r'y1="([\d.]+)"[^>]*stroke="#555"', svg).group(1))  # type: ignore[union-attr]
    fee = re.search(
        r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"[^>]*data-series="fees"',
        svg,
    )
    loss = re.search(r'<rect x="[\d.]+" y="([\d.]+)"[^>]*data-series="dispute_losses"', svg)
    assert fee and loss
    assert float(fee.group(1)) + float(fee.group(2)) == pytest.approx(zero)  # ends on zero
    assert float(loss.group(1)) == pytest.approx(zero)  # starts on zero, goes down
    assert 'data-value="-1000"' in svg


def test_names_are_escaped() -> None:
    svg = svg_chart("<b>", ["<x>"], [("a&b", [1])], "bars")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a&amp;b" in svg and "&lt;x&gt;" in svg
