"""Ledger commands on the in-memory event store (rules §2–5, §8): one atomic save each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application.ledger import Ledger
from application.ports import AdjustableClock
from application.receipts import ChallengeCreated
from domain.aggregate import Cause
from domain.challenge import ACTIVE, CANCELLED, DRAFT, SETTLED
from domain.errors import InsufficientFunds, NotFound, VoteRefused
from domain.verification import ProofFacts
from tests.invariants import assert_ledger_invariants

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, tzinfo=UTC)  # Monday: three daily slots until Thursday 00:00
END = datetime(2026, 3, 5, tzinfo=UTC)
SETTLE_AT = END + timedelta(hours=24)
ADMIN = UUID(int=99)
# Ids chosen so the lowest (C) never finishes and B (2) gets any extra token before A (3).
A, B, C = UUID(int=3), UUID(int=2), UUID(int=1)
TEXT = ProofFacts("text", "proofs/k", "text/plain", 10, "")


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(T0, frozen=True)


@pytest.fixture
def app(clock: AdjustableClock) -> Ledger:
    return Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


def me(user: UUID) -> Cause:
    return Cause.user(user, f"req-{user.int}")


def fund(app: Ledger, user: UUID, *cents: int) -> None:
    for n, amount in enumerate(cents):
        app.credit_deposit(user, f"pi_{user.int}_{n}", amount, Cause.stripe(f"evt_{user.int}_{n}"))


def lots(app: Ledger, user: UUID) -> list[tuple[str, int, int]]:
    return [(lot.source, lot.amount, lot.remaining) for lot in app.wallet_of(user).lots.values()]


def create(app: Ledger, owner: UUID = A, **changes: Any) -> ChallengeCreated:
    terms: dict[str, Any] = {
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
    return app.create_challenge(owner, me(owner), **terms)


def running(app: Ledger, *joiners: UUID, **changes: Any) -> ChallengeCreated:
    """A published challenge owned by A, joined by ``joiners`` (all funded 10,000)."""
    for user in (A, *joiners):
        if user not in _funded(app):
            fund(app, user, 10_000)
    made = create(app, **changes)
    app.publish(made.challenge_id, A, me(A))
    for user in joiners:
        app.join(made.invite_code, user, "UTC", me(user))
    return made


def _funded(app: Ledger) -> set[UUID]:
    users = set()
    for user in (A, B, C):
        try:
            app.wallet_of(user)
            users.add(user)
        except NotFound:
            pass
    return users


def topics_since(app: Ledger, position: int) -> list[str]:
    return [
        n.topic.removeprefix("peerpush:")
        for n in app.recorder.select_notifications(position + 1, 1_000)
    ]


def submit_days(
    app: Ledger, clock: AdjustableClock, cid: UUID, plan: dict[UUID, list[int]]
) -> dict[tuple[UUID, int], UUID]:
    """Submit on the given days (0 = Monday) at 09:00; returns the submission ids."""
    made: dict[tuple[UUID, int], UUID] = {}
    for n in range(3):
        clock.set(max(clock.now(), START + timedelta(days=n, hours=9)))
        for user, days in plan.items():
            if n in days:
                made[(user, n)] = app.submit(cid, user, TEXT, me(user)).submission_id
    return made


# --- publish and join ----------------------------------------------------------------------


def test_a_publish_the_owner_cannot_stake_fails_and_saves_nothing(app: Ledger) -> None:
    fund(app, A, 100)
    made = create(app)
    before = app.head()

    with pytest.raises(InsufficientFunds) as refused:
        app.publish(made.challenge_id, A, me(A))

    assert (refused.value.needed, refused.value.available) == (500, 100)
    assert app.head() == before
    assert app.challenge(made.challenge_id).status == DRAFT
    assert app.challenge(made.challenge_id).participants == {}
    assert (app.wallet_of(A).available, app.wallet_of(A).staked) == (100, 0)
    assert_ledger_invariants(app)


def test_a_publish_by_an_owner_without_a_wallet_opens_none(app: Ledger) -> None:
    made = create(app)

    with pytest.raises(InsufficientFunds):
        app.publish(made.challenge_id, A, me(A))

    with pytest.raises(NotFound):
        app.wallet_of(A)
    assert_ledger_invariants(app)


def test_a_join_locks_the_stake_in_the_same_save(app: Ledger) -> None:
    made = running(app)
    fund(app, B, 200, 10_000)
    before = app.head()

    joined = app.join(made.invite_code.lower(), B, "Europe/Paris", me(B))

    assert joined.joined and joined.position == app.head()
    assert topics_since(app, before) == ["Challenge.Joined", "Wallet.StakeLocked"]
    assert lots(app, B) == [("deposit", 200, 0), ("deposit", 10_000, 9_700)]
    assert app.challenge(made.challenge_id).pool == 1_000
    assert app.join(made.invite_code, B, "UTC", me(B)).joined is False
    assert (app.wallet_of(B).staked, app.challenge(made.challenge_id).pool) == (500, 1_000)
    assert_ledger_invariants(app)


def test_a_join_the_user_cannot_stake_changes_neither_challenge_nor_wallet(app: Ledger) -> None:
    made = running(app)
    fund(app, B, 499)
    before = app.head()

    with pytest.raises(InsufficientFunds):
        app.join(made.invite_code, B, "UTC", me(B))

    assert app.head() == before
    assert not app.challenge(made.challenge_id).is_participant(B)
    assert app.wallet_of(B).available == 499
    assert_ledger_invariants(app)


# --- votes and penalties -------------------------------------------------------------------


def test_a_rejecting_vote_charges_the_penalty_into_the_pool_in_one_save(
    app: Ledger, clock: AdjustableClock
) -> None:
    made = running(app, B, C, verification_mode="quorum", penalty_tokens=100)
    clock.set(START + timedelta(hours=9))
    submission = app.submit(made.challenge_id, A, TEXT, me(A)).submission_id
    before = app.head()

    counted = app.vote(submission, B, False, me(B))  # eligible 2, needed 2: one "no" decides

    assert (counted.status, counted.rejections, counted.needed) == ("rejected", 1, 2)
    assert sorted(topics_since(app, before)) == [
        "Challenge.SubmissionDecided",
        "Verification.Decided",
        "Verification.VoteCast",
        "Wallet.PenaltyCharged",
    ]
    assert counted.position == app.head()
    assert (app.wallet_of(A).available, app.wallet_of(A).penalised) == (9_400, 100)
    assert app.challenge(made.challenge_id).pool == 1_600
    assert app.verification(submission).penalty == 100
    assert_ledger_invariants(app)


def test_a_cancellation_returns_stakes_and_penalties_to_the_exact_lots(
    app: Ledger, clock: AdjustableClock
) -> None:
    fund(app, A, 300, 10_000)
    made = running(app, B, verification_mode="quorum", penalty_tokens=150)
    clock.set(START + timedelta(hours=9))
    submission = app.submit(made.challenge_id, A, TEXT, me(A)).submission_id
    app.vote(submission, B, False, me(B))  # eligible 1, needed 1: rejected, 150 charged
    assert lots(app, A) == [("deposit", 300, 0), ("deposit", 10_000, 9_650)]

    app.cancel(made.challenge_id, ADMIN, Cause.admin(ADMIN, "req-x"), is_admin=True)

    assert lots(app, A) == [("deposit", 300, 300), ("deposit", 10_000, 10_000)]
    assert lots(app, B) == [("deposit", 10_000, 10_000)]
    wallet = app.wallet_of(A)
    assert (wallet.available, wallet.staked, wallet.penalised) == (10_300, 0, 0)
    assert (app.challenge(made.challenge_id).status, app.challenge(made.challenge_id).pool) == (
        CANCELLED,
        0,
    )
    assert_ledger_invariants(app)


# --- settlement ----------------------------------------------------------------------------


def test_settlement_returns_own_stakes_to_their_lots_and_pays_only_the_excess(
    app: Ledger, clock: AdjustableClock
) -> None:
    fund(app, A, 200, 10_000)
    made = running(app, B, C, entry_stake=333)  # pool 999
    submit_days(app, clock, made.challenge_id, {A: [0, 1, 2], B: [0, 1, 2], C: [0]})
    clock.set(SETTLE_AT)

    app.settle(made.challenge_id, A, me(A))

    # 999 // 2 = 499 remainder 1: B (id 2) gets 500, A (id 3) 499; each 333 back to its lots.
    assert lots(app, A) == [
        ("deposit", 200, 200),
        ("deposit", 10_000, 10_000),
        ("payout", 166, 166),
    ]
    assert lots(app, B) == [("deposit", 10_000, 10_000), ("payout", 167, 167)]
    assert lots(app, C) == [("deposit", 10_000, 9_667)]
    assert (app.wallet_of(A).won, app.wallet_of(B).won, app.wallet_of(C).forfeited) == (
        166,
        167,
        333,
    )
    challenge = app.challenge(made.challenge_id)
    assert (challenge.status, challenge.pool, challenge.returned, challenge.paid_out) == (
        SETTLED,
        0,
        666,
        333,
    )
    assert challenge.finishers == [str(A), str(B)]
    assert_ledger_invariants(app)


def test_when_nobody_finishes_the_whole_pool_goes_to_revenue(
    app: Ledger, clock: AdjustableClock
) -> None:
    made = running(app, B)
    submit_days(app, clock, made.challenge_id, {A: [0, 1], B: [2]})
    clock.set(SETTLE_AT)

    app.settle(made.challenge_id, None, Cause.worker("settlement"))

    assert app.challenge(made.challenge_id).forfeited == 1_000
    assert [app.wallet_of(u).available for u in (A, B)] == [9_500, 9_500]
    assert assert_ledger_invariants(app).revenue == 1_000


def test_the_settlement_worker_cancels_underfilled_and_settles_due_challenges_once(
    app: Ledger, clock: AdjustableClock
) -> None:
    fund(app, A, 20_000)
    full = running(app, B)
    lonely = create(app)
    app.publish(lonely.challenge_id, A, me(A))
    assert app.wallet_of(A).staked == 1_000

    clock.set(START + timedelta(hours=1))
    first = app.settle_due()
    assert (first.settled, first.cancelled) == ((), (lonely.challenge_id,))
    assert app.wallet_of(A).staked == 500

    clock.set(SETTLE_AT)
    second = app.settle_due()
    assert (second.settled, second.cancelled) == ((full.challenge_id,), ())
    head = app.head()

    third = app.settle_due()
    assert (third.settled, third.cancelled, third.position) == ((), (), head)
    assert app.head() == head
    assert app.challenge(full.challenge_id).status == SETTLED
    assert_ledger_invariants(app)


def test_pending_submissions_are_closed_at_settlement_and_count_as_not_accepted(
    app: Ledger, clock: AdjustableClock
) -> None:
    made = running(app, B, verification_mode="quorum")
    subs = submit_days(app, clock, made.challenge_id, {A: [0, 1, 2], B: [0, 1, 2]})
    for n in range(3):
        app.vote(subs[(A, n)], B, True, me(B))
    for n in range(2):
        app.vote(subs[(B, n)], A, True, me(A))
    clock.set(SETTLE_AT)

    app.settle(made.challenge_id, None, Cause.worker("settlement"))

    assert app.verification(subs[(B, 2)]).status == "expired"
    assert app.challenge(made.challenge_id).finishers == [str(A)]
    assert lots(app, A)[-1] == ("payout", 500, 500)
    with pytest.raises(VoteRefused):
        app.vote(subs[(B, 2)], A, True, me(A))
    assert_ledger_invariants(app)


def test_votes_close_when_settlement_is_due_even_before_it_runs(
    app: Ledger, clock: AdjustableClock
) -> None:
    made = running(app, B, verification_mode="quorum")
    subs = submit_days(app, clock, made.challenge_id, {B: [0]})
    clock.set(SETTLE_AT)

    with pytest.raises(VoteRefused):
        app.vote(subs[(B, 0)], A, True, me(A))

    assert app.challenge(made.challenge_id).status == ACTIVE
    assert app.verification(subs[(B, 0)]).approvals == []
    assert_ledger_invariants(app)


# --- receipts and audit fields -------------------------------------------------------------


def test_every_event_names_its_actor_and_request_and_carries_business_time(
    app: Ledger, clock: AdjustableClock
) -> None:
    steps: list[tuple[int, int, Cause, datetime]] = []

    def step(cause: Cause, at: datetime, command: Any) -> int:
        clock.set(at)
        before = app.head()
        position = command(cause).position
        steps.append((before, position, cause, at))
        return position

    cid: list[UUID] = []
    code: list[str] = []

    def made(cause: Cause) -> Any:
        receipt = create(app)
        cid.append(receipt.challenge_id)
        code.append(receipt.invite_code)
        return receipt

    positions = [
        step(Cause.stripe("evt_a"), T0, lambda c: app.credit_deposit(A, "pi_a", 5_000, c)),
        step(
            Cause.stripe("evt_b"),
            T0 + timedelta(minutes=1),
            lambda c: app.credit_deposit(B, "pi_b", 5_000, c),
        ),
        step(me(A), T0 + timedelta(minutes=2), made),
        step(me(A), T0 + timedelta(minutes=3), lambda c: app.publish(cid[0], A, c)),
        step(me(B), T0 + timedelta(minutes=4), lambda c: app.join(code[0], B, "UTC", c)),
        step(me(A), START + timedelta(hours=9), lambda c: app.submit(cid[0], A, TEXT, c)),
        step(me(B), START + timedelta(hours=10), lambda c: app.submit(cid[0], B, TEXT, c)),
        step(Cause.worker("settlement", "sweep"), SETTLE_AT, lambda c: app.settle(cid[0], None, c)),
    ]

    assert positions == sorted(set(positions)) and positions[-1] == app.head()
    for before, after, cause, at in steps:
        notifications = app.recorder.select_notifications(before + 1, 1_000, stop=after)
        assert notifications
        for event in map(app.mapper.to_domain_event, notifications):
            assert (event.actor, event.request_id) == (cause.actor, cause.request_id)
            assert event.timestamp == at
    assert_ledger_invariants(app)


def test_a_repeated_deposit_long_after_its_lots_were_spent_records_nothing(
    app: Ledger, clock: AdjustableClock
) -> None:
    """A webhook delivered again months later must not write anything, not even the dropping
    of old lot records (found by the state machine: 'a repeated delivery recorded events')."""
    fund(app, A, 100)
    [(lot_id, _)] = app.request_withdrawal(A, UUID(int=7), 100, me(A)).lots
    app.record_refund(A, UUID(int=7), lot_id, "re_1", Cause.stripe("evt_re"))
    clock.set(T0 + app.settings.dispute_window + timedelta(days=1))
    head = app.head()

    fund(app, A, 100)  # the same PaymentIntent, delivered again

    assert app.head() == head
    assert app.wallet_of(A).available == 0
