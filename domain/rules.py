"""The terms a challenge is created with (rules §3), validated in one place.

Terms are fixed once the challenge is published: they may be edited only in draft.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.errors import InvalidField
from domain.schedule import TimeWindow, validate_timezone
from domain.tokens import non_negative_tokens
from domain.values import (
    CLOCK_TIME,
    DESCRIPTION_LENGTH,
    GRACE_SLOTS,
    INVITE_CODE,
    MIN_PARTICIPANTS,
    NAME_LENGTH,
    QUORUM_PCT,
    Bounds,
    Frequency,
    ProofType,
    Scope,
    VerificationMode,
    Visibility,
)


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
    visibility: Visibility
    allow_list: tuple[UUID, ...]
    starts_at: datetime
    ends_at: datetime
    entry_stake: int
    max_participants: int
    frequency: Frequency
    window_start: str
    window_end: str
    timezone: str
    scope: Scope
    proof_types: tuple[ProofType, ...]
    verification_mode: VerificationMode
    quorum_pct: int
    grace: int
    penalty_tokens: int

    def __post_init__(self) -> None:
        # Terms read back from an event or a snapshot hold plain strings and lists: the
        # same values, given their types again (an event's payload itself never changes).
        typed = {
            "visibility": Visibility(self.visibility),
            "allow_list": tuple(UUID(str(u)) for u in self.allow_list),
            "frequency": Frequency(self.frequency),
            "scope": Scope(self.scope),
            "proof_types": tuple(ProofType(p) for p in self.proof_types),
            "verification_mode": VerificationMode(self.verification_mode),
        }
        for name, value in typed.items():
            object.__setattr__(self, name, value)

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(
            start=time.fromisoformat(self.window_start),
            end=time.fromisoformat(self.window_end),
            timezone=self.timezone,
            scope=self.scope,
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
    name = _text(given.get("name"), "name", NAME_LENGTH)
    description = _text(given.get("description", ""), "description", DESCRIPTION_LENGTH)
    visibility = _choice(given.get("visibility", Visibility.PUBLIC), "visibility", Visibility)
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
        given.get("max_participants", 10),
        "max_participants",
        Bounds(MIN_PARTICIPANTS, limits.max_participants),
    )
    frequency = _choice(given.get("frequency", Frequency.DAILY), "frequency", Frequency)
    window_start = _clock(given.get("window_start", "00:00"), "window_start")
    window_end = _clock(given.get("window_end", "00:00"), "window_end")
    timezone = str(given.get("timezone", "UTC"))
    try:
        validate_timezone(timezone)
    except ValueError as e:
        raise InvalidField(f"unknown timezone {timezone!r}") from e
    scope = _choice(given.get("scope", Scope.PARTICIPANT_LOCAL), "scope", Scope)
    proof_types = tuple(sorted(set(given.get("proof_types", tuple(ProofType)))))
    if not proof_types or any(p not in tuple(ProofType) for p in proof_types):
        raise InvalidField("proof_types must be a non-empty subset of photo, text")
    mode = _choice(
        given.get("verification_mode", VerificationMode.AUTO), "verification_mode", VerificationMode
    )
    quorum_pct = _int(given.get("quorum_pct", 60), "quorum_pct", QUORUM_PCT)
    grace = _int(given.get("grace", 0), "grace", GRACE_SLOTS)
    penalty = non_negative_tokens(
        given.get("penalty_tokens", 0), what="penalty_tokens", limit=limits.max_entry_stake
    )
    return ChallengeTerms(
        name=name,
        description=description,
        visibility=Visibility(visibility),
        allow_list=allow_list,
        starts_at=starts_at,
        ends_at=ends_at,
        entry_stake=entry_stake,
        max_participants=max_participants,
        frequency=Frequency(frequency),
        window_start=window_start,
        window_end=window_end,
        timezone=timezone,
        scope=Scope(scope),
        proof_types=tuple(ProofType(p) for p in proof_types),
        verification_mode=VerificationMode(mode),
        quorum_pct=quorum_pct,
        grace=grace,
        penalty_tokens=penalty,
    )


def check_invite_code(code: str) -> str:
    if not isinstance(code, str) or not INVITE_CODE.match(code):
        raise InvalidField("an invite code is 6 characters A-Z, 0-9")
    return code


def _text(value: object, what: str, length: Bounds) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"{what} must be text")
    value = value.strip()
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidField(f"{what} must not contain control characters")
    if len(value) not in length:
        raise InvalidField(f"{what} must be {length.low} to {length.high} characters")
    return value


def _choice(value: object, what: str, allowed: type[StrEnum]) -> str:
    if value not in tuple(allowed):
        raise InvalidField(f"{what} must be one of {', '.join(allowed)}")
    return str(value)


def _int(value: object, what: str, bounds: Bounds) -> int:
    if value not in bounds:
        raise InvalidField(f"{what} must be a whole number from {bounds.low} to {bounds.high}")
    assert isinstance(value, int)
    return value


def _clock(value: object, what: str) -> str:
    if not isinstance(value, str) or not CLOCK_TIME.match(value):
        raise InvalidField(f"{what} must be a local time HH:MM")
    return value


def _aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidField(f"{what} must be a timezone-aware time")
    return value
