"""The challenge aggregate (rules §3, §4): terms, lifecycle, joins, cancellation, submissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.aggregate import Cause
from domain.challenge import ACTIVE, CANCELLED, Cancellation, Challenge
from domain.errors import (
    ChallengeFull,
    ChallengeNotEditable,
    ChallengeNotJoinable,
    DuplicateSubmission,
    Forbidden,
    InvalidAmount,
    InvalidField,
    NotAllowListed,
    NotCancellable,
    NotParticipant,
    ProofTypeNotAllowed,
    SubmissionRefused,
)
from domain.photos import CaptureStamp, PhotoEvidence
from domain.rules import make_terms

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)  # a Sunday, before the start
START = datetime(2026, 3, 2, tzinfo=UTC)  # Monday 00:00
END = datetime(2026, 3, 5, tzinfo=UTC)  # Thursday 00:00: three daily slots
MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=UTC)
OWNER = UUID(int=1)
BOB = UUID(int=2)
CAROL = UUID(int=3)
DAVE = UUID(int=4)
CHALLENGE_ID = UUID("00000000-0000-4000-8000-0000000000c1")
BASE: dict[str, Any] = {
    "name": "Run daily",
    "starts_at": START,
    "ends_at": END,
    "entry_stake": 500,
    "window_start": "06:00",
    "window_end": "22:00",
    "timezone": "UTC",
    "scope": "challenge_tz",
    "verification_mode": "auto",
    "proof_types": ["photo", "text"],
}


def shot(sha256: str, taken_at: datetime = MONDAY_9) -> PhotoEvidence:
    """A photo with this fingerprint, taken (UTC) at ``taken_at``."""
    return PhotoEvidence(sha256, capture=CaptureStamp(taken_at.replace(tzinfo=None), 0))


def cause(user: UUID) -> Cause:
    return Cause.user(user, "req")


def draft(**changes: Any) -> Challenge:
    return Challenge.draft(
        CHALLENGE_ID, OWNER, "ABC123", make_terms(**{**BASE, **changes}), cause(OWNER), T0
    )


def active(*joiners: UUID, **changes: Any) -> Challenge:
    c = draft(**changes)
    c.publish(OWNER, "UTC", cause(OWNER), T0)
    for user in joiners:
        assert c.join(user, "UTC", cause(user), T0) is True
    c.collect_events()
    return c


# --- terms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "ab"},
        {"name": "x" * 121},
        {"name": "   ab   "},
        {"description": "d" * 2_001},
        {"max_participants": 1},
        {"max_participants": 501},
        {"starts_at": END},
        {"ends_at": START - timedelta(seconds=1)},
        {"starts_at": datetime(2026, 3, 2)},
        {"quorum_pct": 49},
        {"quorum_pct": 101},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "localtime"},
        {"proof_types": []},
        {"proof_types": ["photo", "video"]},
        {"window_start": "24:00"},
        {"grace": -1},
        {"visibility": "secret"},
        {"allow_list": [BOB]},
    ],
)
def test_terms_outside_the_rules_are_refused_as_an_invalid_field(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidField):
        draft(**changes)


@pytest.mark.parametrize(
    "changes",
    [{"entry_stake": -1}, {"entry_stake": 100_001}, {"entry_stake": 1.5}, {"penalty_tokens": -5}],
)
def test_a_stake_or_penalty_outside_0_to_100000_is_an_invalid_amount(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(InvalidAmount):
        draft(**changes)


def test_terms_at_their_bounds_are_accepted() -> None:
    terms = draft(
        name="abc",
        description="d" * 2_000,
        entry_stake=100_000,
        max_participants=500,
        quorum_pct=100,
        proof_types=["text", "text"],
    ).terms
    assert (terms.name, terms.entry_stake, terms.max_participants) == ("abc", 100_000, 500)
    assert terms.proof_types == ("text",)
    assert draft(name="x" * 120, entry_stake=0, max_participants=2, quorum_pct=50).terms.name


@pytest.mark.parametrize("code", ["ABC12", "ABC1234", "abc123", "ABC-12", ""])
def test_an_invite_code_must_be_six_capitals_or_digits(code: str) -> None:
    with pytest.raises(InvalidField):
        Challenge.draft(CHALLENGE_ID, OWNER, code, make_terms(**BASE), cause(OWNER), T0)


# --- edit and publish ----------------------------------------------------------------------


def test_the_owner_may_edit_the_rules_of_a_draft() -> None:
    c = draft()

    c.edit(OWNER, make_terms(**{**BASE, "name": "Walk daily"}), cause(OWNER), T0)

    assert c.terms.name == "Walk daily"


def test_only_the_owner_may_edit_and_only_in_draft() -> None:
    c = draft()
    with pytest.raises(Forbidden):
        c.edit(BOB, make_terms(**BASE), cause(BOB), T0)

    c.publish(OWNER, None, cause(OWNER), T0)
    with pytest.raises(ChallengeNotEditable):
        c.edit(OWNER, make_terms(**BASE), cause(OWNER), T0)


def test_publishing_makes_the_owner_the_first_participant_with_the_stake() -> None:
    c = draft()

    assert c.publish(OWNER, None, cause(OWNER), T0) == 500

    assert c.status == ACTIVE
    assert c.participant(OWNER).timezone == "UTC"  # the challenge's own zone by default
    assert c.pool == 500


def test_only_the_owner_may_publish_and_only_before_the_start() -> None:
    with pytest.raises(Forbidden):
        draft().publish(BOB, None, cause(BOB), T0)
    with pytest.raises(ChallengeNotJoinable):
        draft().publish(OWNER, None, cause(OWNER), START)

    c = active()
    with pytest.raises(ChallengeNotJoinable):
        c.publish(OWNER, None, cause(OWNER), T0)


# --- joining -------------------------------------------------------------------------------


def test_a_join_adds_the_participant_and_its_stake_to_the_pool() -> None:
    c = active(BOB)

    assert c.participant(BOB).stake == 500
    assert c.pool == 1_000


def test_joining_twice_returns_false_and_stakes_nothing_more() -> None:
    c = active(BOB)

    assert c.join(BOB, "UTC", cause(BOB), T0) is False

    assert c.collect_events() == []
    assert (len(c.participants), c.pool) == (2, 1_000)


def test_a_draft_and_a_started_challenge_cannot_be_joined() -> None:
    with pytest.raises(ChallengeNotJoinable):
        draft().join(BOB, "UTC", cause(BOB), T0)
    with pytest.raises(ChallengeNotJoinable):
        active().join(BOB, "UTC", cause(BOB), START)


def test_a_private_challenge_is_joined_only_by_the_allow_listed() -> None:
    c = active(visibility="private", allow_list=[BOB])

    with pytest.raises(NotAllowListed):
        c.join(CAROL, "UTC", cause(CAROL), T0)
    assert c.join(BOB, "UTC", cause(BOB), T0) is True


def test_a_full_challenge_refuses_one_more_participant() -> None:
    c = active(BOB, max_participants=2)

    with pytest.raises(ChallengeFull):
        c.join(CAROL, "UTC", cause(CAROL), T0)


def test_a_join_with_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(InvalidField):
        active().join(BOB, "Nowhere/Atlantis", cause(BOB), T0)


# --- cancelling ----------------------------------------------------------------------------


def test_the_owner_may_cancel_a_draft_or_an_active_challenge_before_its_start() -> None:
    c = draft()
    assert c.cancel(OWNER, False, "", cause(OWNER), T0) == []
    assert c.status == CANCELLED

    c = active(BOB)
    returning = c.cancel(OWNER, False, "changed my mind", cause(OWNER), T0)

    assert [p.user_id for p in returning] == [OWNER, BOB]
    [event] = c.collect_events()
    assert (event.stakes_returned, event.penalties_returned) == (1_000, 0)
    assert (c.status, c.pool) == (CANCELLED, 0)


def test_the_owner_may_not_cancel_after_the_start_but_an_admin_may() -> None:
    c = active(BOB)
    with pytest.raises(NotCancellable):
        c.cancel(OWNER, False, "", cause(OWNER), START)
    with pytest.raises(Forbidden):
        c.cancel(BOB, False, "", cause(BOB), T0)

    c.cancel(UUID(int=99), True, "abuse", Cause.admin(UUID(int=99)), END)

    assert c.status == CANCELLED


def test_the_worker_cancels_only_a_started_challenge_with_fewer_than_two_participants() -> None:
    worker = Cause.worker("settlement")
    with pytest.raises(NotCancellable):
        active().cancel(None, False, "", worker, START - timedelta(seconds=1))
    with pytest.raises(NotCancellable):
        active(BOB).cancel(None, False, "", worker, START)

    c = active()
    c.cancel(None, False, "fewer than 2 participants", worker, START)

    assert c.status == CANCELLED


def test_a_cancelled_challenge_cannot_be_cancelled_again() -> None:
    c = draft()
    c.cancel(OWNER, False, "", cause(OWNER), T0)

    with pytest.raises(NotCancellable):
        c.cancel(UUID(int=99), True, "", Cause.admin(UUID(int=99)), T0)


# --- submissions ---------------------------------------------------------------------------


def test_an_auto_mode_submission_is_accepted_at_once_in_its_slot() -> None:
    c = active(BOB)

    made = c.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9)

    assert (made.slot, made.status, made.flags, made.eligible) == ("2026-03-02", "accepted", (), 1)


def test_a_quorum_mode_submission_waits_for_review() -> None:
    c = active(BOB, verification_mode="quorum")

    assert c.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9).status == "pending"


def test_a_non_participant_may_not_submit() -> None:
    with pytest.raises(NotParticipant):
        active(BOB).receive_submission(CAROL, "text", None, cause(CAROL), MONDAY_9)


@pytest.mark.parametrize(
    "at",
    [
        START - timedelta(seconds=1),
        END,
        datetime(2026, 3, 2, 5, 59, tzinfo=UTC),
        datetime(2026, 3, 2, 22, tzinfo=UTC),
    ],
    ids=["before-start", "at-end", "before-window", "window-close"],
)
def test_a_submission_outside_the_challenge_or_its_window_is_refused(at: datetime) -> None:
    with pytest.raises(SubmissionRefused):
        active(BOB).receive_submission(BOB, "text", None, cause(BOB), at)


def test_a_proof_type_the_challenge_does_not_allow_is_refused() -> None:
    c = active(BOB, proof_types=["text"])

    with pytest.raises(ProofTypeNotAllowed):
        c.receive_submission(BOB, "photo", shot("f" * 64), cause(BOB), MONDAY_9)


def test_a_second_submission_in_the_same_slot_is_a_duplicate() -> None:
    c = active(BOB)
    c.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9)

    with pytest.raises(DuplicateSubmission):
        c.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9 + timedelta(hours=5))

    # The next day is another slot.
    assert c.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9 + timedelta(days=1)).slot


def test_a_photo_seen_before_in_the_challenge_is_flagged_and_reviewed_even_in_auto_mode() -> None:
    c = active(BOB, CAROL)
    first = c.receive_submission(BOB, "photo", shot("a" * 64), cause(BOB), MONDAY_9)

    copy = c.receive_submission(CAROL, "photo", shot("a" * 64), cause(CAROL), MONDAY_9)
    fresh = c.receive_submission(OWNER, "photo", shot("b" * 64), cause(OWNER), MONDAY_9)

    assert (first.status, first.flags) == ("accepted", ())
    assert (copy.status, copy.flags) == ("pending", ("duplicate",))
    assert (fresh.status, fresh.flags) == ("accepted", ())


def test_a_submission_id_is_derived_from_challenge_participant_and_slot() -> None:
    a, b = active(BOB), active(BOB)

    made_a = a.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9)
    made_b = b.receive_submission(BOB, "text", None, cause(BOB), MONDAY_9 + timedelta(hours=1))

    assert made_a.submission_id == made_b.submission_id


def test_a_name_with_a_nul_or_control_character_is_refused():
    for bad in ("Run\x00daily", "Run\x1bdaily"):
        with pytest.raises(InvalidField):
            make_terms(
                name=bad,
                starts_at=datetime(2026, 3, 2, tzinfo=UTC),
                ends_at=datetime(2026, 3, 5, tzinfo=UTC),
            )


@pytest.mark.parametrize("by", ["owner", "admin", "worker"])
def test_a_settle_of_a_started_challenge_with_one_participant_cancels_it(by: str) -> None:
    c = active()
    who = {"owner": cause(OWNER), "admin": Cause.admin(UUID(int=99)), "worker": Cause.worker("s")}

    outcome = c.settle(0, timedelta(hours=24), who[by], END + timedelta(days=2))

    assert isinstance(outcome, Cancellation)
    assert [p.user_id for p in outcome.participants] == [OWNER]
    assert (c.status, c.forfeited, c.fee, c.pool) == (CANCELLED, 0, 0, 0)
    assert c.returned == c.terms.entry_stake


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [
        (T0 + timedelta(days=366), T0 + timedelta(days=367)),
        (datetime(9999, 12, 30, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC)),
        (START, START + timedelta(days=367)),
    ],
)
def test_a_start_too_far_ahead_or_a_run_too_long_is_an_invalid_field(
    starts_at: datetime, ends_at: datetime
) -> None:
    with pytest.raises(InvalidField):
        make_terms(now=T0, **{**BASE, "starts_at": starts_at, "ends_at": ends_at})


def test_dates_at_their_bounds_are_accepted() -> None:
    starts_at = T0 + timedelta(days=365)
    terms = make_terms(
        now=T0, **{**BASE, "starts_at": starts_at, "ends_at": starts_at + timedelta(days=366)}
    )

    assert terms.ends_at - terms.starts_at == timedelta(days=366)
