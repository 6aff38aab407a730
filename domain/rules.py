"""The terms a challenge is created with (rules §3), validated in one place.

Terms are fixed once the challenge is published: they may be edited only in draft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID

from domain.errors import InvalidField
from domain.schedule import TimeWindow, validate_timezone
from domain.tokens import non_negative_tokens

VISIBILITIES = ("public", "private", "unlisted")
FREQUENCIES = ("daily", "weekdays", "weekly")
SCOPES = ("participant_local", "challenge_tz")
PROOF_TYPES = ("photo", "text")
MODES = ("auto", "quorum")
INVITE_CODE = re.compile(r"^[A-Z0-9]{6}$")
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class ChallengeLimits:
    """Configurable bounds of rules §3 (bold numbers)."""

    max_entry_stake: int = 100_000
    max_participants: int = 500
    # Dates bounded so that every derived instant (settlement time, slot days) stays well
    # inside what a datetime can hold, and a challenge cannot sit unsettled for ever.
    max_start_ahead_days: int = 365
    max_duration_days: int = 366


@dataclass(frozen=True)
class ChallengeTerms:
    """Everything the owner chooses about a challenge."""

    name: str
    description: str
    visibility: str
    allow_list: tuple[UUID, ...]
    starts_at: datetime
    ends_at: datetime
    entry_stake: int
    max_participants: int
    frequency: str
    window_start: str
    window_end: str
    timezone: str
    scope: str
    proof_types: tuple[str, ...]
    verification_mode: str
    quorum_pct: int
    grace: int
    penalty_tokens: int

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(
            start=time.fromisoformat(self.window_start),
            end=time.fromisoformat(self.window_end),
            timezone=self.timezone,
            scope=self.scope,  # type: ignore[arg-type]
        )

    def as_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_terms(
    limits: ChallengeLimits = ChallengeLimits(), *, now: datetime | None = None, **given: Any
) -> ChallengeTerms:
    """Validate the owner's choices; the first rule broken is named in the error.

    ``now`` is the application clock: ``starts_at`` may be at most
    ``limits.max_start_ahead_days`` after it (a far-future date would otherwise overflow the
    settlement time and stop the worker). Without it only the duration is bounded.
    """
    name = _text(given.get("name"), "name", 3, 120)
    description = _text(given.get("description", ""), "description", 0, 2_000)
    visibility = _choice(given.get("visibility", "public"), "visibility", VISIBILITIES)
    allow_list = tuple(UUID(str(u)) for u in given.get("allow_list", ()) or ())
    starts_at = _aware(given.get("starts_at"), "starts_at")
    ends_at = _aware(given.get("ends_at"), "ends_at")
    if not starts_at < ends_at:
        raise InvalidField("starts_at must be before ends_at")
    if ends_at - starts_at > timedelta(days=limits.max_duration_days):
        raise InvalidField(f"a challenge may last at most {limits.max_duration_days} days")
    if now is not None and starts_at - now > timedelta(days=limits.max_start_ahead_days):
        raise InvalidField(f"starts_at may be at most {limits.max_start_ahead_days} days from now")
    entry_stake = non_negative_tokens(
        given.get("entry_stake", 0), what="entry_stake", limit=limits.max_entry_stake
    )
    max_participants = _int(
        given.get("max_participants", 10), "max_participants", 2, limits.max_participants
    )
    frequency = _choice(given.get("frequency", "daily"), "frequency", FREQUENCIES)
    window_start = _clock(given.get("window_start", "00:00"), "window_start")
    window_end = _clock(given.get("window_end", "00:00"), "window_end")
    timezone = str(given.get("timezone", "UTC"))
    try:
        validate_timezone(timezone)
    except ValueError as e:
        raise InvalidField(f"unknown timezone {timezone!r}") from e
    scope = _choice(given.get("scope", "participant_local"), "scope", SCOPES)
    proof_types = tuple(sorted(set(given.get("proof_types", ("photo", "text")))))
    if not proof_types or any(p not in PROOF_TYPES for p in proof_types):
        raise InvalidField("proof_types must be a non-empty subset of photo, text")
    mode = _choice(given.get("verification_mode", "auto"), "verification_mode", MODES)
    quorum_pct = _int(given.get("quorum_pct", 60), "quorum_pct", 50, 100)
    grace = _int(given.get("grace", 0), "grace", 0, 10_000)
    penalty = non_negative_tokens(
        given.get("penalty_tokens", 0), what="penalty_tokens", limit=limits.max_entry_stake
    )
    return ChallengeTerms(
        name=name,
        description=description,
        visibility=visibility,
        allow_list=allow_list,
        starts_at=starts_at,
        ends_at=ends_at,
        entry_stake=entry_stake,
        max_participants=max_participants,
        frequency=frequency,
        window_start=window_start,
        window_end=window_end,
        timezone=timezone,
        scope=scope,
        proof_types=proof_types,
        verification_mode=mode,
        quorum_pct=quorum_pct,
        grace=grace,
        penalty_tokens=penalty,
    )


def check_invite_code(code: str) -> str:
    if not isinstance(code, str) or not INVITE_CODE.match(code):
        raise InvalidField("an invite code is 6 characters A-Z, 0-9")
    return code


def _text(value: object, what: str, low: int, high: int) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"{what} must be text")
    value = value.strip()
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidField(f"{what} must not contain control characters")
    if not low <= len(value) <= high:
        raise InvalidField(f"{what} must be {low} to {high} characters")
    return value


def _choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidField(f"{what} must be one of {', '.join(allowed)}")
    return str(value)


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidField(f"{what} must be a whole number from {low} to {high}")
    return value


def _clock(value: object, what: str) -> str:
    if not isinstance(value, str) or not CLOCK_TIME.match(value):
        raise InvalidField(f"{what} must be a local time HH:MM")
    return value


def _aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidField(f"{what} must be a timezone-aware time")
    return value
