"""The small named values of the rules: choices, statuses, formats and bounds (rules §3, §4, §7).

Each is defined once here and read by whoever needs it: the aggregates check commands with
them, and the HTTP schemas declare them (``api/``), so a bound shown in the OpenAPI is the
bound the domain enforces. Every status and choice is a ``StrEnum``: it is stored in events
as its plain string, and a string read back from an old event compares equal to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# -- a challenge's terms (rules §3) ---------------------------------------------------------


class Visibility(StrEnum):
    """Who may find a published challenge: everyone, the allow-listed, or whoever has the code."""

    PUBLIC = "public"
    PRIVATE = "private"
    UNLISTED = "unlisted"


class Frequency(StrEnum):
    """How often a participant must fill a slot."""

    DAILY = "daily"
    WEEKDAYS = "weekdays"
    WEEKLY = "weekly"


class Scope(StrEnum):
    """Whose clock a time window follows: each participant's own, or the challenge's."""

    PARTICIPANT_LOCAL = "participant_local"
    CHALLENGE_TZ = "challenge_tz"


class ProofType(StrEnum):
    PHOTO = "photo"
    TEXT = "text"


class VerificationMode(StrEnum):
    """``auto``: a proof counts at once; ``quorum``: the other participants review it."""

    AUTO = "auto"
    QUORUM = "quorum"


@dataclass(frozen=True)
class Bounds:
    """A closed range of whole numbers or text lengths."""

    low: int
    high: int

    def __contains__(self, value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


NAME_LENGTH = Bounds(3, 120)
DESCRIPTION_LENGTH = Bounds(0, 2_000)
QUORUM_PCT = Bounds(50, 100)
GRACE_SLOTS = Bounds(0, 10_000)
MIN_PARTICIPANTS = 2
REASON_MAX_LENGTH = 500
"""A cancellation's or an adjustment's reason, as recorded in its event."""

INVITE_CODE_LENGTH = 6
INVITE_CODE = re.compile(r"^[A-Z0-9]{6}$")
CLOCK_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"
CLOCK_TIME = re.compile(CLOCK_TIME_PATTERN)
"""A local time of day, ``HH:MM`` on a 24-hour clock."""

# -- statuses -------------------------------------------------------------------------------


class ChallengeStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SETTLED = "settled"
    CANCELLED = "cancelled"


class ChallengeResult(StrEnum):
    """How a challenge ended, as users see it: someone finished, nobody did, or cancelled."""

    PAID_OUT = "paid_out"
    FORFEITED = "forfeited"
    CANCELLED = "cancelled"


class SubmissionStatus(StrEnum):
    """A submission's verdict: ``pending`` review, then ``accepted`` or ``rejected``;
    ``expired`` when settlement closed the vote first."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Vote(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class SubmissionFlag(StrEnum):
    """Why a photo is doubted (``domain/photos.py`` says when each is raised)."""

    DUPLICATE = "duplicate"
    """The same photo (by SHA-256) was already submitted to this challenge."""
    NEAR_DUPLICATE = "near_duplicate"
    """A photo that looks like an earlier one of this challenge (perceptual hash)."""
    CAPTURE_TIME_OUTSIDE_WINDOW = "capture_time_outside_window"
    """Taken outside the slot's window, or after it was uploaded."""
    CAPTURE_TIME_MISSING = "capture_time_missing"
    """No capture time (EXIF): shown to reviewers, never a reason for review alone."""


class CashoutStatus(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"


class WithdrawalStatus(StrEnum):
    """A withdrawal is settled once every lot it holds has an outcome."""

    PENDING = "pending"
    SETTLED = "settled"


class Direction(StrEnum):
    """An admin adjustment adds a new lot (credit) or takes tokens FIFO (debit)."""

    CREDIT = "credit"
    DEBIT = "debit"


# -- proofs (rules §4) ----------------------------------------------------------------------

MAX_TEXT_PROOF_CHARS = 10_000
TEXT_MIME = "text/plain; charset=utf-8"
IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
"""A photo proof is a JPEG or a PNG, recognised by its first bytes (not by what it claims)."""


def image_type(data: bytes) -> str | None:
    """The MIME type of a JPEG or PNG, or None for anything else."""
    for signature, mime in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


# -- accounts (rules §7) --------------------------------------------------------------------

USERNAME_LENGTH = Bounds(3, 20)
USERNAME_PATTERN = r"^[a-z0-9_]+$"
PASSWORD_LENGTH = Bounds(8, 128)
EMAIL_LENGTH = Bounds(3, 254)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
