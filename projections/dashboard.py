"""The analysts' dashboard: its named queries over the read models, each chart's data as a
table (what the page draws and what its CSV download holds).

Plain SQL over ``revenue_daily``, ``challenge_summaries``, ``challenge_participants``,
``journal_postings``/``journal_entries`` and ``projection_positions`` (docs/read-models.md).
Days and weeks are UTC; a range is whole days, both ends included. Nothing here decides who
may look: the API's admin pages do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from projections.queries import ReadModels

DEFAULT_DAYS = 30
MAX_DAYS = 731  # two years of daily bars: wider ranges are an analyst's SQL, not a page

Kind = Literal["bars", "stacked", "line"]


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days ``since``..``until``, both included."""

    since: date
    until: date

    @classmethod
    def of(cls, since: date | None, until: date | None, today: date) -> DateRange:
        """The range asked for; the last ``DEFAULT_DAYS`` days up to today by default.

        Raises ValueError for a range that ends before it starts or spans over ``MAX_DAYS``.
        """
        until = until or (max(today, since) if since else today)
        since = since or until - timedelta(days=DEFAULT_DAYS - 1)
        if since > until:
            raise ValueError("the range ends before it starts")
        if (until - since).days + 1 > MAX_DAYS:
            raise ValueError(f"a range is at most {MAX_DAYS} days")
        return cls(since, until)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1


@dataclass(frozen=True)
class Chart:
    """One chart's data: a category per row (a day or a week) and one integer per series."""

    key: str  # names the CSV download: /admin/dashboard/<key>.csv
    title: str
    kind: Kind
    x: str  # the category column's name
    series: tuple[str, ...]
    rows: tuple[tuple[str, tuple[int, ...]], ...]
    note: str = ""

    def totals(self) -> dict[str, int]:
        """Each series summed over the range (a line's value is its last point instead)."""
        if self.kind == "line":
            return {s: (self.rows[-1][1][i] if self.rows else 0) for i, s in enumerate(self.series)}
        return {s: sum(values[i] for _, values in self.rows) for i, s in enumerate(self.series)}

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.x, *self.series])
        for category, values in self.rows:
            writer.writerow([category, *values])
        return out.getvalue()


@dataclass(frozen=True)
class ProjectionLag:
    name: str
    position: int
    lag: int
    updated_at: datetime | None


@dataclass(frozen=True)
class Dashboard:
    range: DateRange
    charts: tuple[Chart, ...]
    open_challenges: int
    open_pools: int  # tokens in open challenges' pools now: stakes + penalties
    head: int  # the stream's last position
    projections: tuple[ProjectionLag, ...] = field(default=())

    def chart(self, key: str) -> Chart:
        return next(c for c in self.charts if c.key == key)


def _days(r: DateRange) -> list[date]:
    return [r.since + timedelta(days=n) for n in range(r.days)]


def _filled(
    categories: list[date], found: Mapping[date, tuple[int, ...]], width: int
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((c.isoformat(), found.get(c, (0,) * width)) for c in categories)


def revenue_per_day(reads: ReadModels, r: DateRange) -> Chart:
    """Forfeits, fees and net dispute losses per day (``revenue_daily``).

    Every timestamptz below is compared with a UTC midnight, whatever the session's TimeZone.
    """
    rows = reads.all(
        "SELECT day, forfeits, fees, dispute_losses FROM revenue_daily "
        "WHERE day BETWEEN %s AND %s ORDER BY day",
        r.since,
        r.until,
    )
    found = {
        row["day"]: (int(row["forfeits"]), int(row["fees"]), -int(row["dispute_losses"]))
        for row in rows
    }
    return Chart(
        "revenue",
        "Revenue per day (tokens)",
        "stacked",
        "day",
        ("forfeits", "fees", "dispute_losses"),
        _filled(_days(r), found, 3),
        note="dispute losses (net of recoveries) are drawn below zero",
    )


def stakes_at_stake(reads: ReadModels, r: DateRange) -> Chart:
    """Tokens staked in challenges still open at the end of each day: stakes joined by then in
    challenges not settled or cancelled by then (penalties are not dated, so not included)."""
    # Each stake counts from its join day until the day its challenge closed: +stake on the
    # one, -stake on the other, summed up to each day (one pass, whatever the range).
    rows = reads.all(
        "WITH moves AS ("
        "  SELECT (p.joined_at AT TIME ZONE 'UTC')::date AS day, p.stake AS delta "
        "  FROM challenge_participants p "
        "  UNION ALL "
        "  SELECT (s.closed_at AT TIME ZONE 'UTC')::date, -p.stake "
        "  FROM challenge_participants p JOIN challenge_summaries s USING (challenge_id) "
        "  WHERE s.closed_at IS NOT NULL), "
        "per_day AS (SELECT day, sum(delta) AS delta FROM moves GROUP BY day) "
        "SELECT d::date AS day, "
        "  (SELECT coalesce(sum(delta), 0) FROM per_day WHERE day < %s::date) "
        "  + sum(coalesce(per_day.delta, 0)) OVER (ORDER BY d) AS staked "
        "FROM generate_series(%s::date, %s::date, interval '1 day') d "
        "LEFT JOIN per_day ON per_day.day = d::date ORDER BY 1",
        r.since,
        r.since,
        r.until,
    )
    found = {row["day"]: (int(row["staked"]),) for row in rows}
    return Chart(
        "at_stake",
        "Tokens at stake in open challenges (end of day)",
        "line",
        "day",
        ("staked",),
        _filled(_days(r), found, 1),
    )


def outcomes_per_week(reads: ReadModels, r: DateRange) -> Chart:
    """Challenges closed per ISO week (Monday first), by outcome."""
    first = r.since - timedelta(days=r.since.weekday())
    weeks = [first + timedelta(weeks=n) for n in range((r.until - first).days // 7 + 1)]
    rows = reads.all(
        "SELECT date_trunc('week', closed_at AT TIME ZONE 'UTC')::date AS week, "
        "count(*) FILTER (WHERE outcome = 'paid_out') AS paid_out, "
        "count(*) FILTER (WHERE outcome = 'forfeited') AS forfeited, "
        "count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled "
        "FROM challenge_summaries WHERE outcome IS NOT NULL "
        "AND closed_at >= (%s::date)::timestamp AT TIME ZONE 'UTC' "
        "AND closed_at < (%s::date + 1)::timestamp AT TIME ZONE 'UTC' "
        "GROUP BY 1 ORDER BY 1",
        r.since,
        r.until,
    )
    found = {
        row["week"]: (int(row["paid_out"]), int(row["forfeited"]), int(row["cancelled"]))
        for row in rows
    }
    return Chart(
        "outcomes",
        "Challenge outcomes per week (challenges)",
        "stacked",
        "week",
        ("paid_out", "forfeited", "cancelled"),
        _filled(weeks, found, 3),
        note="paid_out: settled with finishers; forfeited: settled, nobody finished",
    )


def money_in_and_out(reads: ReadModels, r: DateRange) -> Chart:
    """Tokens bought against tokens refunded to cards and cashed out, per day, from the
    journal's Stripe accounts (refunds net of failed ones, cash-outs net of reversals)."""
    rows = reads.all(
        "SELECT (e.event_time AT TIME ZONE 'UTC')::date AS day, "
        "coalesce(-sum(p.amount) FILTER (WHERE p.account = 'stripe:clearing'), 0) AS deposits, "
        "coalesce(sum(p.amount) FILTER (WHERE p.account = 'stripe:refunds'), 0) AS refunds, "
        "coalesce(sum(p.amount) FILTER (WHERE p.account = 'stripe:transfers'), 0) AS cashouts "
        "FROM journal_postings p JOIN journal_entries e USING (position) "
        "WHERE p.account IN ('stripe:clearing', 'stripe:refunds', 'stripe:transfers') "
        "AND e.event_time >= (%s::date)::timestamp AT TIME ZONE 'UTC' "
        "AND e.event_time < (%s::date + 1)::timestamp AT TIME ZONE 'UTC' "
        "GROUP BY 1 ORDER BY 1",
        r.since,
        r.until,
    )
    found = {
        row["day"]: (int(row["deposits"]), int(row["refunds"]), int(row["cashouts"]))
        for row in rows
    }
    return Chart(
        "money",
        "Deposits against refunds and cash-outs per day (tokens)",
        "bars",
        "day",
        ("deposits", "refunds", "cashouts"),
        _filled(_days(r), found, 3),
    )


CHARTS: dict[str, Callable[[ReadModels, DateRange], Chart]] = {
    "revenue": revenue_per_day,
    "at_stake": stakes_at_stake,
    "outcomes": outcomes_per_week,
    "money": money_in_and_out,
}


def chart(reads: ReadModels, key: str, r: DateRange) -> Chart:
    """One chart by its key; KeyError for none."""
    return CHARTS[key](reads, r)


def projection_lags(reads: ReadModels) -> tuple[int, tuple[ProjectionLag, ...]]:
    """The stream head and, per projection, its position and how far behind the head it is."""
    top = reads.one("SELECT coalesce(max(notification_id), 0) AS head FROM ledger_events")
    head = int(top["head"]) if top else 0
    rows = reads.all("SELECT name, position, updated_at FROM projection_positions ORDER BY name")
    return head, tuple(
        ProjectionLag(
            r["name"], int(r["position"]), max(0, head - int(r["position"])), r["updated_at"]
        )
        for r in rows
    )


def csv_of(reads: ReadModels, key: str, r: DateRange) -> str:
    """A chart's data (or ``projections``: the lag table) as CSV; KeyError for no such key."""
    if key != "projections":
        return chart(reads, key, r).csv()
    head, lags = projection_lags(reads)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["projection", "position", "head", "lag", "updated_at"])
    for lag in lags:
        moved = lag.updated_at.isoformat() if lag.updated_at else ""
        writer.writerow([lag.name, lag.position, head, lag.lag, moved])
    return out.getvalue()


def dashboard(reads: ReadModels, r: DateRange) -> Dashboard:
    """Every chart over ``r``, the open pools now, and how far each projection has read."""
    now = reads.one(
        "SELECT count(*) AS challenges, coalesce(sum(pool), 0) AS pools "
        "FROM challenge_summaries WHERE status = 'active'"
    )
    assert now is not None
    head, lags = projection_lags(reads)
    return Dashboard(
        range=r,
        charts=tuple(query(reads, r) for query in CHARTS.values()),
        open_challenges=int(now["challenges"]),
        open_pools=int(now["pools"]),
        head=head,
        projections=lags,
    )
