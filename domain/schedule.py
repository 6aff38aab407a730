"""Slot arithmetic: when a challenge's time window is open, and which slot a proof counts for.

A *slot* is the unit a participant must fill (rules §4): the local date, in the governing
timezone, on which a time window **opens**. Settlement compares the slots a participant filled
with the slots the challenge expected (rules §5), so both sides must come from the same rules,
and those rules must give the same answer on every replay. Everything here is therefore a pure
function of its arguments: no clock, no I/O, only ``zoneinfo`` for the calendar.

Wall-clock oddities follow PEP 495 with ``fold=0``: a local time that does not exist (the
spring-forward gap) moves forward by the length of the gap, and an ambiguous one (fall back)
means its first occurrence. All instants returned are aware and in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.values import Frequency, Scope

_SCOPES: frozenset[str] = frozenset(Scope)
_FREQUENCIES: frozenset[str] = frozenset(Frequency)
# Keys the tz database accepts on some machines that do not name a place: their meaning
# depends on the host, so a slot computed with them would not replay identically elsewhere.
_HOST_DEPENDENT_KEYS: frozenset[str] = frozenset({"localtime", "posixrules"})
_ONE_DAY = timedelta(days=1)
_FRIDAY = 4
# How many local dates before an instant's own a window containing it can have opened on.
_LOOKBACK_DAYS = 2


@dataclass(frozen=True)
class TimeWindow:
    """The daily stretch of local time during which proofs are accepted.

    ``end <= start`` means the window runs overnight into the next day, so ``end == start``
    is a full day (23 or 25 hours of real time on a DST change day). ``timezone`` is the
    challenge's timezone; with ``participant_local`` scope each participant's own timezone
    governs instead (see :func:`governing_timezone`).
    """

    start: time
    end: time
    timezone: str
    scope: Scope

    def __post_init__(self) -> None:
        # Rejecting bad rules at construction keeps a malformed window out of any event.
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("time window start and end must be naive local times of day")
        if self.scope not in _SCOPES:
            raise ValueError(f"unknown time window scope {self.scope!r}")
        validate_timezone(self.timezone)


def validate_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name, or ValueError naming the bad value (for a 422, not a 500)."""
    if name in _HOST_DEPENDENT_KEYS:
        raise ValueError(f"unknown IANA timezone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA timezone {name!r}") from exc


def governing_timezone(window: TimeWindow, participant_timezone: str) -> ZoneInfo:
    """The timezone whose calendar defines this participant's slots.

    ``participant_local``: the participant's own zone (given at join), so "08:00" means their
    morning; ``challenge_tz``: the challenge's zone, so everyone shares one deadline.
    """
    if window.scope == Scope.PARTICIPANT_LOCAL:
        return validate_timezone(participant_timezone)
    return validate_timezone(window.timezone)


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant at which wall clocks in ``tz`` show ``at`` on ``day``.

    With ``fold=0``, PEP 495 resolves a time in a spring-forward gap with the offset in force
    before the gap, which lands exactly the gap's length later on the wall clock (02:30 on a
    US spring-forward day becomes 03:30 EDT); a fall-back time takes its first occurrence.
    """
    if at.tzinfo is not None:
        raise ValueError("local_instant needs a naive local time of day")
    wall = datetime.combine(day, at.replace(fold=0)).replace(tzinfo=tz)
    return wall.astimezone(UTC)


def window_bounds(day: date, window: TimeWindow, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[open, close)`` in UTC of the window that opens on local date ``day``.

    A window whose wall-clock end falls in a DST gap while its start does not can come out
    with ``close < open`` (e.g. 02:30-03:00 on a spring-forward day); it is then empty
    (``close == open``): nobody can submit in it, so it is never expected either.
    """
    opens = local_instant(day, window.start, tz)
    close_day = day if window.end > window.start else day + _ONE_DAY
    closes = local_instant(close_day, window.end, tz)
    return opens, max(opens, closes)


def slot_of(at: datetime, frequency: Frequency, window: TimeWindow, tz: ZoneInfo) -> date | None:
    """The slot a proof submitted at ``at`` counts for, or None when no counting window is open.

    Windows never overlap (see :func:`counting_bounds`), so at most one contains ``at``. Only
    windows opening on the local date of ``at`` or the two days before can contain it: an
    overnight window reaches into the next date, and a skipped calendar day (Pacific/Apia,
    30 December 2011) can push its close one date further.
    """
    _require_aware(at, "at")
    _require_frequency(frequency)
    local_day = at.astimezone(tz).date()
    for back in range(_LOOKBACK_DAYS + 1):
        day = local_day - back * _ONE_DAY
        if not _counts(day, frequency):
            continue
        opens, closes = counting_bounds(day, frequency, window, tz)
        if opens <= at < closes:
            return _slot_for_opening(day, frequency)
    return None


def counting_bounds(
    day: date, frequency: Frequency, window: TimeWindow, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """``[open, close)`` in UTC of the window opening on ``day``, as submissions see it.

    Windows never overlap: a window closes at the earlier of its own close and the opening
    of the next slot's window. Around a DST change (a 03:00-02:30 window on the night the
    clocks spring forward) the wall-clock close can otherwise fall after the next opening,
    and the two windows would share an instant that only one slot can get: the other slot
    would be expected yet impossible to fill. :func:`slot_of` and :func:`expected_slots`
    both use these bounds, so every expected slot has an instant that counts for it.
    """
    opens, closes = window_bounds(day, window, tz)
    following = day + _ONE_DAY
    while not _counts(following, frequency):
        following += _ONE_DAY
    next_opens = local_instant(following, window.start, tz)
    return opens, max(opens, min(closes, next_opens))


def slot_windows(
    slot: date, frequency: Frequency, window: TimeWindow, tz: ZoneInfo
) -> tuple[tuple[datetime, datetime], ...]:
    """Every non-empty counting window ``[open, close)`` that fills ``slot``: the one opening
    on that date, or for a weekly slot (its Monday) each day's window of that week."""
    _require_frequency(frequency)
    days = 7 if frequency == "weekly" else 1
    found = []
    for n in range(days):
        day = slot + n * _ONE_DAY
        if _counts(day, frequency):
            opens, closes = counting_bounds(day, frequency, window, tz)
            if opens < closes:
                found.append((opens, closes))
    return tuple(found)


def expected_slots(
    starts_at: datetime,
    ends_at: datetime,
    frequency: Frequency,
    window: TimeWindow,
    tz: ZoneInfo,
) -> tuple[date, ...]:
    """Sorted distinct slots a participant must fill between ``starts_at`` and ``ends_at``.

    A slot is expected when its (non-empty) window, as :func:`counting_bounds` gives it,
    overlaps ``[starts_at, ends_at)``: a window closing at or before the start, or opening at
    or after the end, is not. A weekly slot (its Monday) is expected when any day's window in
    that week overlaps. Only local dates from two days before ``starts_at`` to the day of
    ``ends_at`` can qualify, so the cost is one step per day of the challenge. An empty
    range expects nothing.
    """
    _require_aware(starts_at, "starts_at")
    _require_aware(ends_at, "ends_at")
    _require_frequency(frequency)
    if ends_at <= starts_at:
        return ()
    slots: list[date] = []
    day = starts_at.astimezone(tz).date() - _LOOKBACK_DAYS * _ONE_DAY
    last_day = ends_at.astimezone(tz).date()
    while day <= last_day:
        if _counts(day, frequency):
            opens, closes = counting_bounds(day, frequency, window, tz)
            if opens < closes and opens < ends_at and closes > starts_at:
                slot = _slot_for_opening(day, frequency)
                # Days are visited in order, so a repeat can only be the last weekly Monday.
                if not slots or slots[-1] != slot:
                    slots.append(slot)
        day += _ONE_DAY
    return tuple(slots)


def _counts(day: date, frequency: Frequency) -> bool:
    """Whether a window opening on ``day`` can be used at all under this frequency."""
    return frequency != Frequency.WEEKDAYS or day.weekday() <= _FRIDAY


def _slot_for_opening(day: date, frequency: Frequency) -> date:
    """The slot of a window that opened on ``day``: that date, or its week's Monday."""
    if frequency == Frequency.WEEKLY:
        return day - timedelta(days=day.weekday())
    return day


def _require_aware(moment: datetime, name: str) -> None:
    # A naive datetime has no instant: guessing a zone would put proofs in the wrong slot.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment!r}")


def _require_frequency(frequency: str) -> None:
    if frequency not in _FREQUENCIES:
        raise ValueError(f"unknown frequency {frequency!r}")
