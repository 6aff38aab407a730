"""The dashboard's queries (projections/dashboard.py) against the read models they summarise,
on a stream with every kind of money event and a challenge still open."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, timedelta
from typing import Any

import pytest

from adapters.persistence import DatabaseSettings
from projections import dashboard as dash
from projections.queries import ReadModels
from tests.audit.support import connect, open_audited, open_challenge, scenario

RANGE = dash.DateRange(date(2026, 3, 1), date(2026, 3, 14))


@pytest.fixture
def reads(pg_settings: DatabaseSettings) -> Iterator[ReadModels]:
    audited = open_audited(pg_settings)
    try:
        scenario(audited)
        open_challenge(audited)
        audited.projector.catch_up()
        models = ReadModels(pg_settings)
        try:
            yield models
        finally:
            models.close()
    finally:
        audited.close()


def rows(db: DatabaseSettings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect(db) as conn:
        return list(conn.execute(sql, params).fetchall())


def series(chart: dash.Chart, name: str) -> dict[str, int]:
    i = chart.series.index(name)
    return {day: values[i] for day, values in chart.rows}


def test_tokens_at_stake_are_the_stakes_of_challenges_open_at_each_days_end(
    reads: ReadModels,
) -> None:
    chart = dash.stakes_at_stake(reads, RANGE)
    expected = {}
    for n in range(RANGE.days):
        day = RANGE.since + timedelta(days=n)
        end = (day + timedelta(days=1)).isoformat()
        [(staked,)] = rows(
            reads.db,
            "SELECT coalesce(sum(p.stake), 0) FROM challenge_participants p "
            "JOIN challenge_summaries s USING (challenge_id) "
            "WHERE p.joined_at < %s::timestamptz AND (s.closed_at IS NULL "
            "OR s.closed_at >= %s::timestamptz)",
            end + "T00:00:00Z",
            end + "T00:00:00Z",
        )
        expected[day.isoformat()] = int(staked)
    assert series(chart, "staked") == expected
    assert len(set(expected.values())) >= 3  # before, during and after the settled challenge


def test_money_in_and_out_per_day_is_what_the_wallets_record(reads: ReadModels) -> None:
    chart = dash.money_in_and_out(reads, RANGE)
    by_day: Counter[tuple[str, str]] = Counter()
    for kind, day, tokens in rows(
        reads.db,
        "SELECT type, (event_time AT TIME ZONE 'UTC')::date, tokens FROM wallet_transactions "
        "WHERE type IN ('deposit', 'refund', 'refund_failed', 'cashout_transferred', "
        "'cashout_reversed')",
    ):
        sign = -1 if kind in ("refund_failed", "cashout_reversed") else 1
        column = {"deposit": "deposits", "cashout_transferred": "cashouts"}.get(kind, "refunds")
        column = "cashouts" if kind == "cashout_reversed" else column
        by_day[(column, day.isoformat())] += sign * tokens
    for column in chart.series:
        assert series(chart, column) == {
            day: by_day[(column, day)] for day in series(chart, column)
        }, column
    [(deposited, refunded)] = rows(
        reads.db, "SELECT sum(deposited), sum(refunded) FROM wallet_balances"
    )
    assert chart.totals()["deposits"] == deposited and chart.totals()["refunds"] == refunded


def test_revenue_and_outcomes_are_the_read_models_per_day_and_week(reads: ReadModels) -> None:
    revenue = dash.revenue_per_day(reads, RANGE)
    daily = {
        day.isoformat(): (forfeits, fees, -losses)
        for day, forfeits, fees, losses in rows(
            reads.db, "SELECT day, forfeits, fees, dispute_losses FROM revenue_daily"
        )
    }
    assert {d: v for d, v in revenue.rows if any(v)} == daily and len(revenue.rows) == 14

    outcomes = dash.outcomes_per_week(reads, RANGE)
    weeks: Counter[tuple[str, str]] = Counter()
    for outcome, closed in rows(
        reads.db, "SELECT outcome, closed_at FROM challenge_summaries WHERE outcome IS NOT NULL"
    ):
        day = closed.astimezone(UTC).date()
        weeks[((day - timedelta(days=day.weekday())).isoformat(), outcome)] += 1
    for week, values in outcomes.rows:
        assert values == tuple(weeks[(week, o)] for o in outcomes.series)
    assert sum(weeks.values()) == sum(sum(v) for _, v in outcomes.rows) == 2


def test_the_dashboard_names_the_open_pools_and_the_stream_head(reads: ReadModels) -> None:
    d = dash.dashboard(reads, RANGE)
    [(head,)] = rows(reads.db, "SELECT max(notification_id) FROM ledger_events")
    assert d.head == head and d.open_challenges == 1 and d.open_pools == 2_100
    assert {p.name for p in d.projections} >= {"wallets", "journal", "revenue"}
    assert all(p.position == head and p.lag == 0 for p in d.projections)
    assert dash.csv_of(reads, "projections", RANGE).splitlines()[0] == (
        "projection,position,head,lag,updated_at"
    )
