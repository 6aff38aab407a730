"""Peer review (rules §4) and how reviewed submissions count at settlement (rules §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.aggregate import Cause
from domain.challenge import SETTLED, Challenge
from domain.errors import (
    DuplicateVote,
    NotParticipant,
    NotSettleable,
    OwnSubmission,
    VoteRefused,
)
from domain.rules import make_terms
from domain.verification import (
    ACCEPTED,
    EXPIRED,
    PENDING,
    REJECTED,
    ProofFacts,
    Verification,
    votes_needed,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, tzinfo=UTC)  # Monday
END = datetime(2026, 3, 5, tzinfo=UTC)  # three daily slots: Mon, Tue, Wed
DELAY = timedelta(hours=24)
SETTLE_AT = END + DELAY
SUBMITTER = UUID(int=10)
VOTERS = [UUID(int=n) for n in range(11, 16)]
OWNER, BOB, CAROL = UUID(int=1), UUID(int=2), UUID(int=3)
WORKER = Cause.worker("settlement")


def day(n: int) -> datetime:
    """09:00 UTC on the n-th day of the challenge (0 = Monday)."""
    return START + timedelta(days=n, hours=9)


def submitted(eligible: int, quorum_pct: int = 60) -> Verification:
    v = Verification.submit(
        UUID(int=100),
        UUID(int=200),
        SUBMITTER,
        "2026-03-02",
        ProofFacts("text", "k", "text/plain", 10, ""),
        (),
        eligible,
        quorum_pct,
        PENDING if eligible else ACCEPTED,
        Cause.user(SUBMITTER),
        T0,
    )
    v.collect_events()
    return v


def votes(v: Verification, *approvals: bool) -> list[str | None]:
    return [
        v.vote(voter, approve, True, Cause.user(voter), T0)
        for voter, approve in zip(VOTERS, approvals, strict=False)
    ]


# --- quorum arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pct", "eligible", "needed"),
    [
        (60, 4, 3),
        (60, 2, 2),
        (50, 3, 2),
        (50, 2, 1),
        (100, 3, 3),
        (75, 4, 3),
        (51, 2, 2),
        (60, 0, 0),
    ],
)
def test_votes_needed_is_the_ceiling_of_pct_times_eligible_over_100(
    pct: int, eligible: int, needed: int
) -> None:
    assert votes_needed(pct, eligible) == needed


def test_a_submission_is_accepted_when_approvals_reach_the_needed_count() -> None:
    v = submitted(eligible=4)  # needs 3

    assert votes(v, True, True, True) == [None, None, ACCEPTED]


def test_a_submission_is_rejected_once_rejections_exceed_eligible_minus_needed() -> None:
    v = submitted(eligible=4)  # needs 3, so 2 rejections make 3 approvals impossible

    assert votes(v, True, False, False) == [None, None, REJECTED]


def test_with_a_100_percent_quorum_a_single_rejection_rejects() -> None:
    assert votes(submitted(eligible=3, quorum_pct=100), False) == [REJECTED]


def test_with_a_50_percent_quorum_of_two_one_approval_accepts_and_two_rejections_reject() -> None:
    assert votes(submitted(eligible=2, quorum_pct=50), True) == [ACCEPTED]
    assert votes(submitted(eligible=2, quorum_pct=50), False, False) == [None, REJECTED]


def test_with_nobody_to_review_a_submission_needs_no_vote() -> None:
    v = submitted(eligible=0)

    assert (v.needed, v.status) == (0, ACCEPTED)


# --- who may vote --------------------------------------------------------------------------


def test_nobody_votes_on_their_own_submission() -> None:
    with pytest.raises(OwnSubmission):
        submitted(eligible=2).vote(SUBMITTER, True, True, Cause.user(SUBMITTER), T0)


def test_a_non_participant_may_not_vote() -> None:
    with pytest.raises(NotParticipant):
        submitted(eligible=2).vote(VOTERS[0], True, False, Cause.user(VOTERS[0]), T0)


def test_a_second_vote_by_the_same_peer_is_refused_and_not_counted() -> None:
    v = submitted(eligible=4)
    votes(v, True)
    v.collect_events()

    with pytest.raises(DuplicateVote):
        v.vote(VOTERS[0], False, True, Cause.user(VOTERS[0]), T0)

    assert (v.approvals, v.rejections, v.collect_events()) == ([str(VOTERS[0])], [], [])


def test_a_decided_or_closed_submission_takes_no_more_votes() -> None:
    decided = submitted(eligible=1)
    decided.decide(votes(decided, True)[0] or "", 0, Cause.user(VOTERS[0]), T0)
    closed = submitted(eligible=3)
    closed.close(WORKER, T0)

    assert (decided.status, closed.status) == (ACCEPTED, EXPIRED)
    with pytest.raises(VoteRefused):
        decided.vote(VOTERS[1], True, True, Cause.user(VOTERS[1]), T0)
    with pytest.raises(VoteRefused):
        closed.vote(VOTERS[1], True, True, Cause.user(VOTERS[1]), T0)


def test_closing_a_decided_submission_changes_nothing() -> None:
    v = submitted(eligible=1)
    v.decide(REJECTED, 100, WORKER, T0)
    v.collect_events()

    v.close(WORKER, T0)

    assert (v.status, v.penalty, v.collect_events()) == (REJECTED, 100, [])


# --- counting at settlement ----------------------------------------------------------------


def challenge(**changes: Any) -> Challenge:
    """OWNER, BOB and CAROL staked 500 each: a pool of 1,500."""
    terms = {
        "name": "Run daily",
        "starts_at": START,
        "ends_at": END,
        "entry_stake": 500,
        "window_start": "06:00",
        "window_end": "22:00",
        "timezone": "UTC",
        "scope": "challenge_tz",
        "verification_mode": "auto",
        "proof_types": ["text"],
        **changes,
    }
    c = Challenge.draft(UUID(int=200), OWNER, "ABC123", make_terms(**terms), WORKER, T0)
    c.publish(OWNER, None, WORKER, T0)
    c.join(BOB, "UTC", WORKER, T0)
    c.join(CAROL, "UTC", WORKER, T0)
    return c


def submit_days(c: Challenge, user: UUID, *days: int) -> list[UUID]:
    return [
        c.receive_submission(user, "text", None, Cause.user(user), day(n)).submission_id
        for n in days
    ]


def results(c: Challenge, fee_bps: int = 0) -> dict[UUID, tuple[int, int, bool, int]]:
    outcome = c.settle(fee_bps, DELAY, WORKER, SETTLE_AT)
    assert outcome is not None
    return {r.user_id: (r.expected, r.accepted, r.finished, r.share) for r in outcome.results}


def test_a_challenge_cannot_settle_before_its_end_plus_the_delay_or_from_draft() -> None:
    c = challenge()
    with pytest.raises(NotSettleable):
        c.settle(0, DELAY, WORKER, SETTLE_AT - timedelta(microseconds=1))

    draft = Challenge.draft(UUID(int=201), OWNER, "XYZ789", challenge().terms, WORKER, T0)
    with pytest.raises(NotSettleable):
        draft.settle(0, DELAY, WORKER, SETTLE_AT)


def test_settling_twice_is_a_no_op() -> None:
    c = challenge()
    c.settle(0, DELAY, WORKER, SETTLE_AT)
    c.collect_events()

    assert c.settle(0, DELAY, WORKER, SETTLE_AT + DELAY) is None
    assert c.collect_events() == []
    assert (c.status, c.pool) == (SETTLED, 0)


def test_the_grace_lets_a_participant_miss_that_many_slots_and_still_finish() -> None:
    c = challenge(grace=1)
    submit_days(c, OWNER, 0, 1, 2)
    submit_days(c, BOB, 0, 2)
    submit_days(c, CAROL, 1)

    assert results(c) == {
        OWNER: (3, 3, True, 750),
        BOB: (3, 2, True, 750),
        CAROL: (3, 1, False, 0),
    }


def test_without_grace_one_missed_slot_means_not_finishing() -> None:
    c = challenge()
    submit_days(c, OWNER, 0, 1, 2)
    submit_days(c, BOB, 0, 2)

    assert results(c) == {
        OWNER: (3, 3, True, 1_500),
        BOB: (3, 2, False, 0),
        CAROL: (3, 0, False, 0),
    }
    assert (c.returned, c.paid_out, c.forfeited, c.fee) == (500, 1_000, 0, 0)


def test_the_fee_is_taken_before_the_finishers_split_the_rest() -> None:
    c = challenge()
    submit_days(c, OWNER, 0, 1, 2)
    submit_days(c, BOB, 0, 1, 2)

    # 1,500 × 1,000 bps = 150 fee; 1,350 / 2 = 675 each: 500 own stake back, 175 paid out.
    assert results(c, fee_bps=1_000)[BOB] == (3, 3, True, 675)
    assert (c.fee, c.returned, c.paid_out, c.forfeited) == (150, 1_000, 350, 0)


def test_only_accepted_submissions_count_and_pending_ones_are_closed_at_settlement() -> None:
    c = challenge(verification_mode="quorum")
    [bob_monday, bob_tuesday, bob_wednesday] = submit_days(c, BOB, 0, 1, 2)
    c.record_verdict(bob_monday, ACCEPTED, 0, WORKER, day(0))
    c.record_verdict(bob_tuesday, REJECTED, 0, WORKER, day(1))

    outcome = c.settle(0, DELAY, WORKER, SETTLE_AT)

    assert outcome is not None
    assert outcome.pending_submissions == (bob_wednesday,)
    assert {r.user_id: r.accepted for r in outcome.results} == {OWNER: 0, BOB: 1, CAROL: 0}
    assert c.submissions[str(bob_wednesday)].status == EXPIRED


def test_when_nobody_finishes_the_whole_pool_is_forfeited() -> None:
    c = challenge()
    submit_days(c, BOB, 0, 1)

    assert all(not finished for _, _, finished, _ in results(c).values())
    assert (c.forfeited, c.paid_out, c.returned, c.pool) == (1_500, 0, 0, 0)
