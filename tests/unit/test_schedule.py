"""Slots and windows (rules §4, §5): hand-computed calendars, then properties over many zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.schedule import (
    Frequency,
    Scope,
    TimeWindow,
    expected_slots,
    governing_timezone,
    local_instant,
    slot_of,
    validate_timezone,
    window_bounds,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")

# June 2026 in Paris is CEST (UTC+2); 2026-06-15 is a Monday.
MONDAY = date(2026, 6, 15)
WEDNESDAY = date(2026, 6, 17)
FRIDAY = date(2026, 6, 19)
SATURDAY = date(2026, 6, 20)
SUNDAY = date(2026, 6, 21)


def window(
    start: str, end: str, tz: str = "Europe/Paris", scope: Scope = "challenge_tz"
) -> TimeWindow:
    return TimeWindow(time.fromisoformat(start), time.fromisoformat(end), tz, scope)


def paris(day: date, hh_mm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), tzinfo=PARIS)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


MORNING = window("08:00", "10:00")
NIGHT = window("22:00", "02:00")


# --- daily windows -------------------------------------------------------------------------


def test_a_submission_inside_the_morning_window_belongs_to_that_date() -> None:
    assert slot_of(paris(MONDAY, "09:00"), "daily", MORNING, PARIS) == MONDAY


def test_the_window_is_closed_at_its_end_time_because_intervals_are_half_open() -> None:
    assert slot_of(paris(MONDAY, "10:00"), "daily", MORNING, PARIS) is None
    assert slot_of(paris(MONDAY, "09:59:59.999999"), "daily", MORNING, PARIS) == MONDAY


def test_a_submission_one_minute_before_the_window_opens_belongs_to_no_slot() -> None:
    assert slot_of(paris(MONDAY, "07:59"), "daily", MORNING, PARIS) is None


def test_window_bounds_are_utc_instants_of_the_local_times() -> None:
    assert window_bounds(MONDAY, MORNING, PARIS) == (utc(2026, 6, 15, 6), utc(2026, 6, 15, 8))


def test_the_after_midnight_part_of_an_overnight_window_belongs_to_the_previous_date() -> None:
    assert slot_of(paris(date(2026, 6, 16), "01:00"), "daily", NIGHT, PARIS) == MONDAY
    assert slot_of(paris(date(2026, 6, 16), "02:00"), "daily", NIGHT, PARIS) is None


def test_the_before_midnight_part_of_an_overnight_window_belongs_to_that_date() -> None:
    assert slot_of(paris(MONDAY, "23:00"), "daily", NIGHT, PARIS) == MONDAY
    assert window_bounds(MONDAY, NIGHT, PARIS) == (utc(2026, 6, 15, 20), utc(2026, 6, 16, 0))


def test_a_window_ending_when_it_starts_lasts_a_whole_day() -> None:
    all_day = window("06:00", "06:00")
    opens, closes = window_bounds(MONDAY, all_day, PARIS)
    assert closes - opens == timedelta(hours=24)
    assert slot_of(paris(date(2026, 6, 16), "05:59"), "daily", all_day, PARIS) == MONDAY
    assert slot_of(paris(date(2026, 6, 16), "06:00"), "daily", all_day, PARIS) == date(2026, 6, 16)


# --- weekdays and weekly -------------------------------------------------------------------


def test_a_saturday_window_does_not_count_for_a_weekdays_challenge() -> None:
    assert slot_of(paris(SATURDAY, "09:00"), "weekdays", MORNING, PARIS) is None
    assert slot_of(paris(FRIDAY, "09:00"), "weekdays", MORNING, PARIS) == FRIDAY


def test_the_saturday_morning_part_of_a_friday_overnight_window_still_counts_for_friday() -> None:
    assert slot_of(paris(SATURDAY, "01:00"), "weekdays", NIGHT, PARIS) == FRIDAY


def test_the_monday_morning_part_of_a_sunday_overnight_window_does_not_count_on_weekdays() -> None:
    assert slot_of(paris(date(2026, 6, 22), "01:00"), "weekdays", NIGHT, PARIS) is None


def test_a_weekdays_challenge_over_two_weeks_expects_ten_slots() -> None:
    slots = expected_slots(
        paris(MONDAY, "00:00"), paris(date(2026, 6, 29), "00:00"), "weekdays", MORNING, PARIS
    )
    assert len(slots) == 10
    assert SATURDAY not in slots and SUNDAY not in slots


def test_a_weekly_submission_on_wednesday_belongs_to_that_weeks_monday() -> None:
    assert slot_of(paris(WEDNESDAY, "09:00"), "weekly", MORNING, PARIS) == MONDAY


def test_a_sunday_overnight_window_running_into_monday_belongs_to_the_week_it_opened_in() -> None:
    assert slot_of(paris(date(2026, 6, 22), "01:00"), "weekly", NIGHT, PARIS) == MONDAY


def test_a_three_week_weekly_challenge_expects_three_mondays() -> None:
    slots = expected_slots(
        paris(MONDAY, "00:00"), paris(date(2026, 7, 6), "00:00"), "weekly", MORNING, PARIS
    )
    assert slots == (MONDAY, date(2026, 6, 22), date(2026, 6, 29))


def test_a_partly_covered_week_is_expected_when_one_of_its_windows_overlaps() -> None:
    # Starts Friday 09:30 (Friday's window still open), ends Wednesday before its window.
    slots = expected_slots(
        paris(FRIDAY, "09:30"), paris(date(2026, 6, 24), "00:00"), "weekly", MORNING, PARIS
    )
    assert slots == (MONDAY, date(2026, 6, 22))


def test_a_partly_covered_week_is_not_expected_when_all_its_windows_are_missed() -> None:
    # Starts Sunday 10:00, after the week's last window closed.
    slots = expected_slots(
        paris(SUNDAY, "10:00"), paris(date(2026, 6, 24), "00:00"), "weekly", MORNING, PARIS
    )
    assert slots == (date(2026, 6, 22),)


# --- daylight saving time ------------------------------------------------------------------


def test_a_local_time_in_the_spring_forward_gap_moves_forward_by_the_gap() -> None:
    instant = local_instant(date(2026, 3, 8), time(2, 30), NEW_YORK)
    assert instant == utc(2026, 3, 8, 7, 30)
    assert instant.tzinfo is UTC
    assert instant.astimezone(NEW_YORK).time() == time(3, 30)


def test_an_ambiguous_fall_back_local_time_is_its_first_occurrence() -> None:
    assert local_instant(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    assert local_instant(date(2026, 11, 1), time(1, 30, fold=1), NEW_YORK) == utc(
        2026, 11, 1, 5, 30
    )


def test_a_window_on_the_spring_forward_day_is_one_hour_shorter() -> None:
    wide = window("01:00", "04:00", "America/New_York")
    assert window_bounds(date(2026, 3, 8), wide, NEW_YORK) == (
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 8),
    )
    gap = window("02:30", "03:30", "America/New_York")
    assert window_bounds(date(2026, 3, 7), gap, NEW_YORK) == (
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 7, 8, 30),
    )
    assert window_bounds(date(2026, 3, 8), gap, NEW_YORK) == (
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 8, 7, 30),
    )


def test_a_window_swallowed_by_the_gap_is_empty_and_not_expected() -> None:
    gap = window("02:30", "03:30", "America/New_York")
    assert slot_of(utc(2026, 3, 8, 7, 30), "daily", gap, NEW_YORK) is None
    slots = expected_slots(utc(2026, 3, 7), utc(2026, 3, 10), "daily", gap, NEW_YORK)
    assert slots == (date(2026, 3, 7), date(2026, 3, 9))


def test_a_window_ending_in_the_gap_can_overlap_the_next_and_the_later_one_wins() -> None:
    # Saturday's 03:00-02:30 window closes at "02:30" Sunday = 03:30 EDT, after Sunday's 03:00.
    almost_all_day = window("03:00", "02:30", "America/New_York")
    assert window_bounds(date(2026, 3, 7), almost_all_day, NEW_YORK)[1] == utc(2026, 3, 8, 7, 30)
    assert window_bounds(date(2026, 3, 8), almost_all_day, NEW_YORK)[0] == utc(2026, 3, 8, 7)
    assert slot_of(utc(2026, 3, 8, 7, 15), "daily", almost_all_day, NEW_YORK) == date(2026, 3, 8)


def test_expected_slots_count_each_calendar_day_once_across_spring_forward() -> None:
    starts_at = datetime(2026, 3, 6, tzinfo=NEW_YORK)
    ends_at = datetime(2026, 3, 11, tzinfo=NEW_YORK)
    slots = expected_slots(
        starts_at, ends_at, "daily", window("08:00", "10:00", "America/New_York"), NEW_YORK
    )
    assert slots == tuple(date(2026, 3, d) for d in range(6, 11))


def test_expected_slots_count_each_calendar_day_once_across_fall_back() -> None:
    night = window("22:00", "02:00", "America/New_York")
    # The fall-back night's window lasts five real hours: 22:00 EDT to 02:00 EST.
    assert window_bounds(date(2026, 10, 31), night, NEW_YORK) == (
        utc(2026, 11, 1, 2),
        utc(2026, 11, 1, 7),
    )
    # 02:00 on both ends: the window opened on the 29th has just closed at the start.
    starts_at = datetime(2026, 10, 30, 2, tzinfo=NEW_YORK)
    ends_at = datetime(2026, 11, 3, 2, tzinfo=NEW_YORK)
    slots = expected_slots(starts_at, ends_at, "daily", night, NEW_YORK)
    assert slots == (date(2026, 10, 30), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2))


# --- governing timezone --------------------------------------------------------------------


def test_participants_far_apart_get_their_own_local_slots_under_participant_local_scope() -> None:
    local = window("04:00", "23:00", scope="participant_local")
    instant = utc(2026, 6, 15, 20)  # 05:00 on the 16th in Tokyo, 13:00 on the 15th in Los Angeles
    tokyo = governing_timezone(local, "Asia/Tokyo")
    los_angeles = governing_timezone(local, "America/Los_Angeles")
    assert slot_of(instant, "daily", local, tokyo) == date(2026, 6, 16)
    assert slot_of(instant, "daily", local, los_angeles) == date(2026, 6, 15)


def test_participants_far_apart_share_the_challenge_slots_under_challenge_tz_scope() -> None:
    shared = window("04:00", "23:00", scope="challenge_tz")
    instant = utc(2026, 6, 15, 20)  # 22:00 in Paris
    tokyo = governing_timezone(shared, "Asia/Tokyo")
    los_angeles = governing_timezone(shared, "America/Los_Angeles")
    assert tokyo == los_angeles == PARIS
    assert slot_of(instant, "daily", shared, tokyo) == MONDAY


# --- expected slot boundaries --------------------------------------------------------------


def test_a_challenge_starting_inside_a_window_still_expects_that_day() -> None:
    slots = expected_slots(
        paris(MONDAY, "09:30"), paris(WEDNESDAY, "00:00"), "daily", MORNING, PARIS
    )
    assert slots == (MONDAY, date(2026, 6, 16))


def test_a_challenge_starting_as_a_window_closes_does_not_expect_that_day() -> None:
    slots = expected_slots(
        paris(MONDAY, "10:00"), paris(WEDNESDAY, "00:00"), "daily", MORNING, PARIS
    )
    assert slots == (date(2026, 6, 16),)


def test_a_challenge_ending_as_a_window_opens_does_not_expect_that_day() -> None:
    slots = expected_slots(
        paris(MONDAY, "00:00"), paris(WEDNESDAY, "08:00"), "daily", MORNING, PARIS
    )
    assert slots == (MONDAY, date(2026, 6, 16))
    later = expected_slots(
        paris(MONDAY, "00:00"), paris(WEDNESDAY, "08:01"), "daily", MORNING, PARIS
    )
    assert later == (MONDAY, date(2026, 6, 16), WEDNESDAY)


def test_a_challenge_starting_after_midnight_expects_the_previous_nights_window() -> None:
    slots = expected_slots(
        paris(date(2026, 6, 16), "01:00"), paris(date(2026, 6, 16), "12:00"), "daily", NIGHT, PARIS
    )
    assert slots == (MONDAY,)


def test_a_one_year_daily_challenge_expects_one_slot_per_day() -> None:
    slots = expected_slots(
        paris(date(2026, 1, 1), "00:00"), paris(date(2027, 1, 1), "00:00"), "daily", MORNING, PARIS
    )
    assert len(slots) == 365
    assert (slots[0], slots[-1]) == (date(2026, 1, 1), date(2026, 12, 31))


def test_an_empty_range_expects_nothing() -> None:
    assert (
        expected_slots(paris(MONDAY, "09:00"), paris(MONDAY, "09:00"), "daily", MORNING, PARIS)
        == ()
    )


# --- refusals ------------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 6, 15, 9)
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_of(naive, "daily", MORNING, PARIS)
    with pytest.raises(ValueError, match="starts_at"):
        expected_slots(naive, paris(WEDNESDAY, "00:00"), "daily", MORNING, PARIS)
    with pytest.raises(ValueError, match="ends_at"):
        expected_slots(paris(MONDAY, "00:00"), naive, "daily", MORNING, PARIS)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd", "America", "localtime"])
def test_an_unknown_timezone_is_refused_with_its_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown IANA timezone"):
        validate_timezone(name)


def test_a_window_in_an_unknown_timezone_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        window("08:00", "10:00", "Mars/Olympus_Mons")


def test_a_participant_with_an_unknown_timezone_has_no_governing_timezone() -> None:
    with pytest.raises(ValueError, match="unknown IANA timezone"):
        governing_timezone(window("08:00", "10:00", scope="participant_local"), "Nowhere/Land")


def test_a_known_timezone_is_returned_as_a_zone() -> None:
    assert validate_timezone("Asia/Tokyo") == TOKYO


# --- properties ----------------------------------------------------------------------------

# Zones with 1 h, 30 min and southern-hemisphere DST, odd offsets, and none at all.
ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "UTC",
]
FREQUENCIES: list[Frequency] = ["daily", "weekdays", "weekly"]

zones = st.sampled_from(ZONES)
frequencies = st.sampled_from(FREQUENCIES)
times = st.builds(time, hour=st.integers(0, 23), minute=st.sampled_from([0, 1, 15, 30, 45, 59]))
# 2026 DST change days of the zones above (US, EU, Lord Howe, Santiago, Chatham), drawn
# often because uniformly random dates almost never land on one.
DST_DAYS = [
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 4, 4),
    date(2026, 9, 5),
    date(2026, 9, 6),
    date(2026, 9, 27),
]
days = st.one_of(
    st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    st.sampled_from(DST_DAYS).flatmap(lambda d: st.sampled_from([d - timedelta(days=1), d])),
)
instants = st.one_of(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda d, minutes: datetime.combine(d, time(), tzinfo=UTC) + timedelta(minutes=minutes),
        st.sampled_from(DST_DAYS),
        st.integers(-3 * 24 * 60, 24 * 60),
    ),
)
FRACTION = 2**32


def windows_opening_on(day: date, frequency: Frequency) -> list[date]:
    """The days whose windows can make up the slot ``day`` (a week for weekly)."""
    span = range(7) if frequency == "weekly" else range(1)
    return [day + timedelta(days=i) for i in span if frequency != "weekdays" or day.weekday() < 5]


@settings(deadline=None)
@given(zones, times, times, days, st.integers(0, FRACTION - 1), frequencies)
def test_an_instant_inside_a_window_gets_a_slot_whose_window_contains_it(
    zone: str, start: time, end: time, day: date, fraction: int, frequency: Frequency
) -> None:
    tz = ZoneInfo(zone)
    w = TimeWindow(start, end, zone, "challenge_tz")
    opens, closes = window_bounds(day, w, tz)
    if opens == closes or (frequency == "weekdays" and day.weekday() >= 5):
        return
    instant = opens + _share(closes - opens, fraction)
    slot = slot_of(instant, frequency, w, tz)
    assert slot is not None
    if frequency == "weekly":
        assert slot.weekday() == 0
    containing = [d for d in windows_opening_on(slot, frequency) if _contains(d, w, tz, instant)]
    assert containing


@settings(deadline=None)
@given(zones, times, times, instants, st.integers(1, 60 * 24 * 40), frequencies)
def test_expected_slots_are_exactly_the_slots_whose_windows_overlap_the_challenge(
    zone: str, start: time, end: time, starts_at: datetime, minutes: int, frequency: Frequency
) -> None:
    tz = ZoneInfo(zone)
    w = TimeWindow(start, end, zone, "challenge_tz")
    ends_at = starts_at + timedelta(minutes=minutes)
    slots = expected_slots(starts_at, ends_at, frequency, w, tz)
    assert list(slots) == sorted(set(slots))
    for slot in slots:
        assert any(
            _overlaps(d, w, tz, starts_at, ends_at) for d in windows_opening_on(slot, frequency)
        )
    # Brute force over a wider range of dates than the function scans finds nothing more.
    first = starts_at.astimezone(tz).date() - timedelta(days=3)
    candidates = {first + timedelta(days=i) for i in range((ends_at - starts_at).days + 7)}
    overlapping = {
        d - timedelta(days=d.weekday()) if frequency == "weekly" else d
        for d in candidates
        if (frequency != "weekdays" or d.weekday() < 5) and _overlaps(d, w, tz, starts_at, ends_at)
    }
    assert set(slots) == overlapping


@settings(deadline=None)
@given(
    zones,
    times,
    times,
    instants,
    st.integers(1, 60 * 24 * 20),
    st.integers(0, FRACTION - 1),
    frequencies,
)
def test_every_slot_a_submission_can_fill_during_the_challenge_is_expected(
    zone: str,
    start: time,
    end: time,
    starts_at: datetime,
    minutes: int,
    fraction: int,
    frequency: Frequency,
) -> None:
    tz = ZoneInfo(zone)
    w = TimeWindow(start, end, zone, "challenge_tz")
    ends_at = starts_at + timedelta(minutes=minutes)
    submitted_at = starts_at + _share(ends_at - starts_at, fraction)
    slot = slot_of(submitted_at, frequency, w, tz)
    if slot is not None:
        assert slot in expected_slots(starts_at, ends_at, frequency, w, tz)


def _share(span: timedelta, fraction: int) -> timedelta:
    """``fraction / FRACTION`` of ``span``, in whole microseconds."""
    return timedelta(microseconds=span // timedelta(microseconds=1) * fraction // FRACTION)


def _contains(day: date, w: TimeWindow, tz: ZoneInfo, instant: datetime) -> bool:
    opens, closes = window_bounds(day, w, tz)
    return opens <= instant < closes


def _overlaps(
    day: date, w: TimeWindow, tz: ZoneInfo, starts_at: datetime, ends_at: datetime
) -> bool:
    opens, closes = window_bounds(day, w, tz)
    return opens < closes and opens < ends_at and closes > starts_at
