"""Rules the API used to hold, now the challenge's and the verification's (rules §4, §5, §7):
who sees a challenge, its outcome label, the duplicate-photo flag, who may vote and who may
settle."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.aggregate import Cause
from domain.challenge import Challenge
from domain.errors import Forbidden, NotSettleable, VoteRefused
from domain.verification import ACCEPTED, PENDING, ProofFacts, Verification
from tests.unit.test_challenge import (
    BOB,
    CAROL,
    DAVE,
    END,
    MONDAY_9,
    OWNER,
    START,
    T0,
    active,
    cause,
    draft,
    shot,
)

DELAY = timedelta(hours=24)
STRANGER = UUID(int=50)
ADMIN = UUID(int=99)


def settled(*joiners: UUID, submitters: tuple[UUID, ...] = ()) -> Challenge:
    c = active(*joiners)
    for day in range((END - START).days):
        for user in submitters:
            c.receive_submission(user, "text", None, cause(user), MONDAY_9 + timedelta(days=day))
    c.settle(0, DELAY, Cause.worker("settlement"), END + DELAY)
    return c


# --- visibility ----------------------------------------------------------------------------


def test_a_draft_is_visible_only_to_its_owner_and_admins() -> None:
    c = draft(visibility="public")

    assert c.is_visible_to(OWNER, is_admin=False)
    assert c.is_visible_to(ADMIN, is_admin=True)
    assert not c.is_visible_to(STRANGER, is_admin=False)


def test_a_published_public_or_unlisted_challenge_is_visible_to_everyone() -> None:
    for visibility in ("public", "unlisted"):
        assert active(visibility=visibility).is_visible_to(STRANGER, is_admin=False)


def test_a_private_challenge_is_visible_to_the_allow_listed_participants_and_admins_only() -> None:
    c = active(BOB, visibility="private", allow_list=[BOB, CAROL])

    assert c.is_visible_to(BOB, is_admin=False)  # participant
    assert c.is_visible_to(CAROL, is_admin=False)  # invited, not joined
    assert c.is_visible_to(ADMIN, is_admin=True)
    assert not c.is_visible_to(DAVE, is_admin=False)


def test_an_invite_code_reveals_the_challenge_to_whoever_may_see_it_except_admin_rights() -> None:
    c = active(visibility="private", allow_list=[CAROL])

    assert c.invite_reveals_to(CAROL) == c.is_visible_to(CAROL, is_admin=False) is True
    assert c.invite_reveals_to(DAVE) == c.is_visible_to(DAVE, is_admin=False) is False


def test_an_admin_acting_on_someone_elses_challenge_acts_as_admin_but_not_on_their_own() -> None:
    c = active()

    assert c.acts_as_admin(ADMIN, is_admin=True)
    assert not c.acts_as_admin(OWNER, is_admin=True)
    assert not c.acts_as_admin(BOB, is_admin=False)


# --- outcome label -------------------------------------------------------------------------


def test_an_open_challenge_has_no_outcome_yet() -> None:
    assert draft().outcome is None
    assert active(BOB).outcome is None


def test_a_cancelled_challenge_shows_cancelled() -> None:
    c = active(BOB)
    c.cancel(OWNER, False, "", cause(OWNER), T0)

    assert c.outcome == "cancelled"


def test_a_settled_challenge_shows_paid_out_when_someone_finished_else_forfeited() -> None:
    assert settled(BOB, submitters=(BOB,)).outcome == "paid_out"
    assert settled(BOB).outcome == "forfeited"


# --- duplicate photos ----------------------------------------------------------------------


def test_only_later_submissions_of_a_photo_are_flagged_as_duplicates() -> None:
    c = active(BOB, CAROL)
    first = c.receive_submission(BOB, "photo", shot("a" * 64), cause(BOB), MONDAY_9)
    copy = c.receive_submission(CAROL, "photo", shot("a" * 64), cause(CAROL), MONDAY_9)

    assert c.photo_flags("a" * 64, first.submission_id) == ()
    assert c.photo_flags("a" * 64, copy.submission_id) == ("duplicate",)
    assert c.photo_flags("a" * 64) == ("duplicate",)  # a new submission of that photo
    assert c.photo_flags("b" * 64) == ()
    assert c.photo_flags("") == ()  # text proofs carry no hash


def test_a_submission_record_knows_its_proof_type_from_its_fingerprint() -> None:
    c = active(BOB)
    photo = c.receive_submission(BOB, "photo", shot("a" * 64), cause(BOB), MONDAY_9)
    text = c.receive_submission(OWNER, "text", None, cause(OWNER), MONDAY_9)

    assert c.submissions[str(photo.submission_id)].proof_type == "photo"
    assert c.submissions[str(text.submission_id)].proof_type == "text"


# --- voting --------------------------------------------------------------------------------


def pending_by_bob() -> Verification:
    v = Verification.submit(
        UUID(int=100),
        UUID(int=200),
        BOB,
        "2026-03-02",
        ProofFacts("text", "k", "text/plain", 4, ""),
        (),
        2,
        100,
        PENDING,
        cause(BOB),
        T0,
    )
    v.collect_events()
    return v


def test_another_participant_who_has_not_voted_may_vote_on_a_pending_submission() -> None:
    v = pending_by_bob()

    assert v.may_vote(CAROL, is_participant=True)
    assert not v.may_vote(BOB, is_participant=True)  # own submission
    assert not v.may_vote(STRANGER, is_participant=False)


def test_a_voter_may_not_vote_twice_and_their_vote_is_remembered() -> None:
    v = pending_by_bob()
    assert v.vote_of(CAROL) is None

    v.vote(CAROL, True, True, cause(CAROL), T0)

    assert v.vote_of(CAROL) == "approve"
    assert not v.may_vote(CAROL, is_participant=True)
    v.vote(OWNER, False, True, cause(OWNER), T0)
    assert v.vote_of(OWNER) == "reject"


def test_nobody_may_vote_on_a_decided_submission() -> None:
    v = pending_by_bob()
    v.decide(ACCEPTED, 0, cause(CAROL), T0)

    assert not v.may_vote(CAROL, is_participant=True)


def test_votes_are_accepted_only_while_the_challenge_runs_until_it_settles() -> None:
    c = active(BOB)
    settles_at = c.settles_at(DELAY)

    assert c.accepts_votes(settles_at - timedelta(microseconds=1), DELAY)
    assert not c.accepts_votes(settles_at, DELAY)
    c.check_votes_accepted(settles_at - timedelta(microseconds=1), DELAY)
    with pytest.raises(VoteRefused):
        c.check_votes_accepted(settles_at, DELAY)
    assert not draft().accepts_votes(T0, DELAY)
    with pytest.raises(VoteRefused):
        draft().check_votes_accepted(T0, DELAY)


# --- settling ------------------------------------------------------------------------------


def test_only_the_owner_an_admin_or_the_worker_may_settle() -> None:
    c = active(BOB)
    at = END + DELAY

    with pytest.raises(Forbidden):
        c.settle(0, DELAY, cause(BOB), at, by=BOB)
    assert c.may_settle(OWNER, is_admin=False)
    assert c.may_settle(ADMIN, is_admin=True)
    assert c.may_settle(None, is_admin=False)
    assert c.settle(0, DELAY, cause(OWNER), at, by=OWNER) is not None


def test_a_stranger_learns_nothing_from_a_refused_settle() -> None:
    c = active(BOB)

    # Not due yet, yet the answer to a non-owner is the same refusal as when due.
    with pytest.raises(Forbidden):
        c.settle(0, DELAY, cause(BOB), T0, by=BOB)
    with pytest.raises(NotSettleable):
        c.settle(0, DELAY, cause(OWNER), T0, by=OWNER)
