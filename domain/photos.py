"""What makes a photo proof suspect, and what follows from it (rules §4).

A photo is judged on three fingerprints the application reads from it: its SHA-256 (an exact
copy), its perceptual hash (a copy re-encoded, resized or slightly cropped) and the capture
time its camera wrote. The rules here say which flags a photo gets, why, whether a flag sends
it to peer review, and whether a flagged photo nobody judged counts when voting closes. Pure
functions of their arguments: the same photo in the same challenge is judged the same way on
every replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from domain.values import SubmissionFlag, VerificationMode

DUPLICATE = SubmissionFlag.DUPLICATE
NEAR_DUPLICATE = SubmissionFlag.NEAR_DUPLICATE
CAPTURE_TIME_OUTSIDE_WINDOW = SubmissionFlag.CAPTURE_TIME_OUTSIDE_WINDOW
CAPTURE_TIME_MISSING = SubmissionFlag.CAPTURE_TIME_MISSING

# The order flags are listed in, most serious first.
FLAG_ORDER = (DUPLICATE, NEAR_DUPLICATE, CAPTURE_TIME_OUTSIDE_WINDOW, CAPTURE_TIME_MISSING)

# Shown to reviewers but never a reason for review on its own: many honest apps strip EXIF.
INFORMATIVE_ONLY = frozenset({CAPTURE_TIME_MISSING})

PHASH_BITS = 64

# Why a flag recorded before reasons were kept was raised (old events' upcast).
EARLIER_REASONS = {DUPLICATE: "byte-identical to an earlier photo in this challenge"}


@dataclass(frozen=True)
class PhotoRules:
    """The tunable numbers of the photo rules (``CAPTURE_TOLERANCE_MINUTES``,
    ``NEAR_DUPLICATE_DISTANCE``)."""

    capture_tolerance: timedelta = timedelta(minutes=5)
    near_duplicate_distance: int = 8


@dataclass(frozen=True)
class CaptureStamp:
    """The capture time a camera wrote (EXIF ``DateTimeOriginal``): a local wall-clock
    time, and the camera's UTC offset in minutes when it wrote one (``OffsetTimeOriginal``)."""

    local: datetime
    offset_minutes: int | None = None

    def instant(self, timezone: str) -> datetime:
        """The moment it means, in UTC; without an offset, the wall clock is read in
        ``timezone`` (the participant's), the first occurrence of an ambiguous time."""
        zone: tzinfo = (
            ZoneInfo(timezone)
            if self.offset_minutes is None
            else dt_timezone(timedelta(minutes=self.offset_minutes))
        )
        return self.local.replace(tzinfo=zone, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class PhotoEvidence:
    """What the challenge is told about a photo: its fingerprints and capture stamp (the
    stamp is judged, never recorded)."""

    sha256: str
    phash: str = ""
    capture: CaptureStamp | None = None


@dataclass(frozen=True)
class Flag:
    """One reason to doubt a photo, and why, in words a reviewer reads."""

    name: SubmissionFlag
    reason: str


def distance(phash_a: str, phash_b: str) -> int:
    """How many of the 64 bits of two perceptual hashes (16 hex digits) differ."""
    return (int(phash_a, 16) ^ int(phash_b, 16)).bit_count()


def nearest_earlier(
    phash: str, sha256: str, earlier: Iterable[tuple[str, str, str]]
) -> tuple[str, int] | None:
    """The earlier photo (``(submission_id, sha256, phash)``) closest to this one by
    perceptual hash, and the distance; byte-identical ones are the ``duplicate`` flag's
    business, and photos without a perceptual hash cannot be compared."""
    best: tuple[str, int] | None = None
    if not phash:
        return None
    mine = int(phash, 16)
    for submission_id, other_sha, other_phash in earlier:
        if not other_phash or other_sha == sha256:
            continue
        d = (mine ^ int(other_phash, 16)).bit_count()
        if best is None or d < best[1]:
            best = (submission_id, d)
    return best


def capture_flag(
    captured: datetime | None,
    windows: Iterable[tuple[datetime, datetime]],
    uploaded_at: datetime,
    tolerance: timedelta,
) -> Flag | None:
    """The capture-time flag, if any.

    ``captured`` must lie in one of the slot's windows ``[open, close)``, give or take
    ``tolerance``; and since a photo cannot be taken after it was uploaded, a capture time
    later than the upload (beyond the tolerance) is outside too.
    """
    if captured is None:
        return Flag(CAPTURE_TIME_MISSING, "the photo carries no capture time (EXIF)")
    if captured > uploaded_at + tolerance:
        late = _minutes(captured - uploaded_at)
        return Flag(CAPTURE_TIME_OUTSIDE_WINDOW, f"taken {late} after it was uploaded")
    gaps: list[tuple[timedelta, str]] = []
    for opens, closes in windows:
        if opens <= captured < closes:
            return None
        if captured < opens:
            gaps.append((opens - captured, "before the slot's window opened"))
        else:
            gaps.append((captured - closes, "after the slot's window closed"))
    if not gaps:
        return Flag(CAPTURE_TIME_OUTSIDE_WINDOW, "the slot has no window to be taken in")
    gap, where = min(gaps)
    if gap <= tolerance:
        return None
    return Flag(CAPTURE_TIME_OUTSIDE_WINDOW, f"taken {_minutes(gap)} {where}")


def judge(
    photo: PhotoEvidence,
    same_bytes_as: str | None,
    earlier: Iterable[tuple[str, str, str]],
    windows: Iterable[tuple[datetime, datetime]],
    timezone: str,
    uploaded_at: datetime,
    rules: PhotoRules,
) -> tuple[Flag, ...]:
    """The flags a new photo earns, most serious first.

    ``same_bytes_as`` is the earlier submission with the same SHA-256, if any; ``earlier``
    every earlier submission of the challenge as ``(submission_id, sha256, phash)``;
    ``windows`` its slot's windows; ``timezone`` reads a capture time written without offset.
    """
    found: list[Flag] = []
    if same_bytes_as is not None:
        found.append(Flag(DUPLICATE, f"byte-identical to the photo of submission {same_bytes_as}"))
    nearest = nearest_earlier(photo.phash, photo.sha256, earlier)
    if nearest is not None and nearest[1] <= rules.near_duplicate_distance:
        submission_id, bits = nearest
        found.append(
            Flag(
                NEAR_DUPLICATE,
                f"looks like the photo of submission {submission_id} "
                f"({bits} of {PHASH_BITS} perceptual-hash bits differ)",
            )
        )
    captured = None if photo.capture is None else photo.capture.instant(timezone)
    timing = capture_flag(captured, windows, uploaded_at, rules.capture_tolerance)
    if timing is not None:
        found.append(timing)
    return tuple(found)


def forces_review(flags: Iterable[str]) -> bool:
    """Whether a photo with these flags goes to peer review whatever the challenge's mode."""
    return any(flag not in INFORMATIVE_ONLY for flag in flags)


def accepted_when_voting_closes(flags: Iterable[str], mode: str) -> bool:
    """In ``auto`` mode a flagged photo nobody decided counts as accepted when voting
    closes (peers were asked and nobody objected), unless it is an exact copy."""
    return mode == VerificationMode.AUTO and DUPLICATE not in set(flags)


def ordered(flags: Iterable[str]) -> tuple[SubmissionFlag, ...]:
    """Distinct flags in their documented order."""
    present = set(flags)
    return tuple(f for f in FLAG_ORDER if f in present)


def _minutes(gap: timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    if minutes < 120:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"
