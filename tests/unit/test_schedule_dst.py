"""Windows never overlap, so every expected slot can be filled (rules §4), whatever the DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.schedule import (
    Frequency,
    TimeWindow,
    counting_bounds,
    expected_slots,
    slot_of,
)

NEW_YORK = ZoneInfo("America/New_York")
ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "America/Santiago",
    "Asia/Tehran",
    "Europe/Dublin",
    "America/St_Johns",
    "UTC",
)
FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekdays", "weekly")
# Dates around DST changes and Apia's skipped day (30 December 2011), plus ordinary ones.
DAYS = st.one_of(
    st.dates(date(2011, 12, 25), date(2012, 1, 3)),
    st.sampled_from([date(2026, 3, 7), date(2026, 3, 28), date(2026, 4, 4), date(2026, 10, 3)]),
    st.dates(date(2026, 10, 24), date(2026, 11, 2)),
    st.dates(date(2000, 1, 1), date(2037, 12, 31)),
)
CLOCK = st.builds(
    time,
    st.sampled_from([0, 1, 2, 3, 4, 12, 22, 23]),
    st.sampled_from([0, 15, 30, 45]),
)


def _window(start: time, end: time, zone: str) -> TimeWindow:
    return TimeWindow(start, end, zone, "challenge_tz")


def test_an_overnight_window_on_the_spring_forward_night_leaves_both_slots_fillable() -> None:
    w = _window(time(3), time(2, 30), "America/New_York")
    starts = datetime(2026, 3, 8, 7, tzinfo=UTC)
    ends = starts + timedelta(hours=24)

    expected = expected_slots(starts, ends, "daily", w, NEW_YORK)
    filled = {
        slot_of(starts + timedelta(minutes=m), "daily", w, NEW_YORK) for m in range(0, 24 * 60, 5)
    }

    assert all(slot in filled for slot in expected), (expected, filled)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=CLOCK,
    end=CLOCK,
    frequency=st.sampled_from(FREQUENCIES),
    day=DAYS,
    offset=st.integers(0, 23 * 3600),
    hours=st.integers(1, 24 * 4),
)
@example("America/New_York", time(3), time(2, 30), "daily", date(2026, 3, 8), 7 * 3600, 24)
def test_every_expected_slot_has_an_instant_counting_for_it(
    zone: str,
    start: time,
    end: time,
    frequency: Frequency,
    day: date,
    offset: int,
    hours: int,
) -> None:
    tz = ZoneInfo(zone)
    w = _window(start, end, zone)
    starts = datetime.combine(day, time(), tzinfo=UTC) + timedelta(seconds=offset)
    ends = starts + timedelta(hours=hours)

    for slot in expected_slots(starts, ends, frequency, w, tz):
        candidates = []
        first = starts.astimezone(tz).date() - timedelta(days=2)
        for n in range((ends.astimezone(tz).date() - first).days + 1):
            opening = first + timedelta(days=n)
            opens, closes = counting_bounds(opening, frequency, w, tz)
            lo, hi = max(opens, starts), min(closes, ends)
            if lo < hi:
                candidates.append(lo)
        assert any(slot_of(t, frequency, w, tz) == slot for t in candidates), (slot, starts, ends)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=CLOCK,
    end=CLOCK,
    frequency=st.sampled_from(FREQUENCIES),
    day=DAYS,
    fraction=st.floats(0, 1, exclude_max=True),
)
@example("America/New_York", time(3), time(2, 30), "daily", date(2026, 3, 7), 0.999)
def test_an_instant_in_a_window_counts_for_that_windows_slot(
    zone: str, start: time, end: time, frequency: Frequency, day: date, fraction: float
) -> None:
    tz = ZoneInfo(zone)
    w = _window(start, end, zone)
    if frequency == "weekdays" and day.weekday() > 4:
        return
    opens, closes = counting_bounds(day, frequency, w, tz)
    if opens == closes:
        return
    span = (closes - opens) // timedelta(microseconds=1)
    at = opens + timedelta(microseconds=min(span - 1, int(span * fraction)))
    slot = day - timedelta(days=day.weekday()) if frequency == "weekly" else day

    assert slot_of(at, frequency, w, tz) == slot
    assert slot_of(closes, frequency, w, tz) != slot or frequency == "weekly"
