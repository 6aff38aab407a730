"""The photo rules (rules §4): which flags a photo earns, why, and what follows from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain.aggregate import Cause
from domain.photos import (
    CaptureStamp,
    PhotoEvidence,
    PhotoRules,
    accepted_when_voting_closes,
    capture_flag,
    distance,
    forces_review,
)
from domain.verification import PENDING, ProofFacts, Verification
from tests.unit.test_challenge import BOB, CAROL, MONDAY_9, OWNER, active, cause, shot

OPEN, CLOSE = datetime(2026, 3, 2, 6, tzinfo=UTC), datetime(2026, 3, 2, 22, tzinfo=UTC)
WINDOW = ((OPEN, CLOSE),)
FIVE = timedelta(minutes=5)
LATE_UPLOAD = datetime(2026, 3, 3, 12, tzinfo=UTC)


def flipped(phash: str, bits: int) -> str:
    """The hash with its ``bits`` lowest bits inverted."""
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


@pytest.mark.parametrize(
    ("captured", "reason"),
    [
        (OPEN, None),
        (CLOSE - timedelta(seconds=1), None),
        (OPEN - FIVE, None),  # the tolerance is inclusive
        (CLOSE + FIVE, None),
        (OPEN - timedelta(minutes=6), "taken 6 minutes before the slot's window opened"),
        (CLOSE + timedelta(hours=3), "taken 3 hours after the slot's window closed"),
        (OPEN - timedelta(days=3), "taken 3 days before the slot's window opened"),
    ],
)
def test_a_capture_time_counts_within_the_window_give_or_take_the_tolerance(
    captured: datetime, reason: str | None
) -> None:
    flag = capture_flag(captured, WINDOW, LATE_UPLOAD, FIVE)

    assert (flag and flag.reason) == reason
    assert flag is None or flag.name == "capture_time_outside_window"


def test_a_photo_cannot_have_been_taken_after_it_was_uploaded() -> None:
    uploaded = datetime(2026, 3, 2, 9, tzinfo=UTC)

    assert capture_flag(uploaded + FIVE, WINDOW, uploaded, FIVE) is None
    flag = capture_flag(uploaded + timedelta(minutes=30), WINDOW, uploaded, FIVE)

    assert flag is not None and flag.reason == "taken 30 minutes after it was uploaded"


def test_no_capture_time_is_flagged_missing() -> None:
    flag = capture_flag(None, WINDOW, LATE_UPLOAD, FIVE)

    assert flag is not None and flag.name == "capture_time_missing"


def test_a_capture_time_is_read_with_its_offset_else_in_the_participants_timezone() -> None:
    wall = datetime(2026, 3, 2, 9, 0)

    assert CaptureStamp(wall, 60).instant("Asia/Tokyo") == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert CaptureStamp(wall).instant("Asia/Tokyo") == datetime(2026, 3, 2, 0, tzinfo=UTC)
    # An ambiguous wall-clock time (New York falls back) is its first occurrence.
    fall_back = CaptureStamp(datetime(2026, 11, 1, 1, 30))
    assert fall_back.instant("America/New_York") == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_only_flags_other_than_a_missing_capture_time_force_review() -> None:
    assert not forces_review(())
    assert not forces_review(("capture_time_missing",))
    assert forces_review(("capture_time_missing", "near_duplicate"))
    assert forces_review(("capture_time_outside_window",))


def test_in_auto_mode_only_an_exact_copy_does_not_count_when_voting_closes() -> None:
    assert accepted_when_voting_closes(("near_duplicate",), "auto")
    assert accepted_when_voting_closes(("capture_time_outside_window",), "auto")
    assert not accepted_when_voting_closes(("duplicate", "capture_time_missing"), "auto")
    assert not accepted_when_voting_closes(("near_duplicate",), "quorum")


def test_the_distance_of_two_perceptual_hashes_is_their_differing_bits() -> None:
    assert distance("0" * 16, "f" * 16) == 64
    assert distance("8000000000000001", "0000000000000000") == 2


@pytest.mark.parametrize(("bits", "near"), [(0, True), (8, True), (9, False), (32, False)])
def test_a_photo_within_the_distance_of_any_earlier_one_is_a_near_duplicate(
    bits: int, near: bool
) -> None:
    c = active(BOB, CAROL)
    base = "a5a5a5a5a5a5a5a5"
    c.receive_submission(OWNER, "text", None, cause(OWNER), MONDAY_9)
    first = c.receive_submission(
        BOB, "photo", PhotoEvidence("1" * 64, base, shot("x").capture), cause(BOB), MONDAY_9
    )

    made = c.receive_submission(
        CAROL,
        "photo",
        PhotoEvidence("2" * 64, flipped(base, bits), shot("y").capture),
        cause(CAROL),
        MONDAY_9,
        PhotoRules(near_duplicate_distance=8),
    )

    assert (made.flags, made.status) == (
        (("near_duplicate",), "pending") if near else ((), "accepted")
    )
    if near:
        assert str(first.submission_id) in made.reasons[0]
        assert f"({bits} of 64 perceptual-hash bits differ)" in made.reasons[0]


def test_an_exact_copy_is_a_duplicate_not_a_near_duplicate_of_itself() -> None:
    c = active(BOB, CAROL)
    same = PhotoEvidence("a" * 64, "0123456789abcdef", shot("x").capture)
    c.receive_submission(BOB, "photo", same, cause(BOB), MONDAY_9)

    made = c.receive_submission(CAROL, "photo", same, cause(CAROL), MONDAY_9)

    assert made.flags == ("duplicate",)


def test_a_photo_without_a_capture_time_is_accepted_at_once_in_auto_mode() -> None:
    c = active(BOB)

    made = c.receive_submission(BOB, "photo", PhotoEvidence("a" * 64), cause(BOB), MONDAY_9)

    assert (made.flags, made.status) == (("capture_time_missing",), "accepted")
    assert made.reasons == ("the photo carries no capture time (EXIF)",)


def test_a_weekly_slot_takes_a_photo_from_any_window_of_its_week() -> None:
    c = active(BOB, frequency="weekly")
    wednesday = MONDAY_9 + timedelta(days=2)
    taken_monday = CaptureStamp(MONDAY_9.replace(tzinfo=None), 0)
    taken_last_week = CaptureStamp((MONDAY_9 - timedelta(days=5)).replace(tzinfo=None), 0)

    kept = c.receive_submission(
        BOB, "photo", PhotoEvidence("a" * 64, capture=taken_monday), cause(BOB), wednesday
    )
    old = c.receive_submission(
        OWNER, "photo", PhotoEvidence("b" * 64, capture=taken_last_week), cause(OWNER), wednesday
    )

    assert kept.flags == ()
    assert old.flags == ("capture_time_outside_window",)


def test_the_challenge_keeps_each_photos_flags_and_perceptual_hash() -> None:
    c = active(BOB)
    made = c.receive_submission(
        BOB, "photo", PhotoEvidence("a" * 64, "00ff00ff00ff00ff"), Cause.user(BOB), MONDAY_9
    )

    record = c.submissions[str(made.submission_id)]
    assert (record.phash, record.flags) == ("00ff00ff00ff00ff", ("capture_time_missing",))
    assert c.flags_of(record) == ("capture_time_missing",)
    assert UUID(str(record.submission_id)) == made.submission_id


def test_a_verification_snapshot_from_before_photos_were_judged_still_loads() -> None:
    v = Verification.submit(
        UUID(int=100),
        UUID(int=200),
        BOB,
        "2026-03-02",
        ProofFacts("photo", "k", "image/png", 2_048, "a" * 64),
        ("duplicate",),
        2,
        60,
        PENDING,
        cause(BOB),
        MONDAY_9,
    )
    snapshot = Verification.Snapshot.take(v)
    v2_only = ("class_version", "flag_reasons", "phash", "stored_sha256", "stored_size")
    old = Verification.Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state={k: value for k, value in snapshot.state.items() if k not in v2_only},
    )

    restored = old.mutate(None)

    assert isinstance(restored, Verification)
    assert restored.reasons() == {
        "duplicate": "byte-identical to an earlier photo in this challenge"
    }
    assert restored.stored_with_metadata and restored.stored_size == 2_048
