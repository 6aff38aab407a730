"""Races on PostgreSQL: joins against a cancellation, votes against a settlement (rules §3).

A cancellation saves the challenge with every participant's wallet, and a settlement saves the
challenge, every participant's wallet and every still-pending verification, so a racing join
or vote conflicts on a version: it is retried before the cancellation/settlement or refused,
and can never land after it. These tests run the races for real, on one schema, with threads
(and, for the votes, two ``Ledger`` objects, as two processes would be). Last, concurrent
reads of one cached aggregate while it is fast-forwarded must never see it half updated.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain import ids
from domain.aggregate import Cause
from domain.challenge import CANCELLED, SETTLED, Challenge
from domain.errors import ChallengeNotJoinable, ConcurrencyConflict, VoteRefused
from domain.verification import ACCEPTED, EXPIRED, PENDING, REJECTED, ProofFacts, Verification
from tests.invariants import assert_ledger_invariants, wallets

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
STARTS = datetime(2026, 3, 2, tzinfo=UTC)
ENDS = datetime(2026, 3, 5, tzinfo=UTC)
SETTLES = ENDS + timedelta(hours=24)
DEPOSIT = 1_000
STAKE = 300
JOINERS = 50
STRAGGLE = 1.5
TORN_READ_JOINS = 100
TORN_READERS = 2
TEXT_PROOF = ProofFacts("text", "proof", "text/plain", 5, "")


@pytest.fixture
def race_env(pg_settings: DatabaseSettings) -> dict[str, str]:
    """A pool big enough that the racing threads wait on the events table, not for a
    connection (and small enough to leave room on a shared server)."""
    return pg_settings.eventsourcing_env(create_table=True, pool_size=10, max_overflow=40)


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(NOW, frozen=True)


@pytest.fixture
def app(race_env: dict[str, str], clock: AdjustableClock) -> Iterator[Ledger]:
    ledger = Ledger(race_env, clock=clock, settings=LedgerSettings(command_retries=200))
    try:
        yield ledger
    finally:
        ledger.close()


def race(calls: list[Callable[[], Any]]) -> list[tuple[Any, BaseException | None]]:
    """Run every call in its own thread, all released at once; (result, error) per call."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            outcomes[i] = (call(), None)
        except BaseException as e:  # reported to the test below, never swallowed
            outcomes[i] = (None, e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a racing command never finished"
    return outcomes


class Countdown:
    """Set once ``n`` things happened (or a generous timeout passed): a racer's starting gun."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()
        self._done = threading.Event()

    def tick(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left <= 0:
                self._done.set()

    def wait(self) -> None:
        self._done.wait(timeout=10)


def positions(app: Ledger, topics: tuple[str, ...]) -> list[tuple[int, UUID, str]]:
    """(position, originator, topic) of every event with one of ``topics``."""
    return [(n.id, n.originator_id, n.topic) for n in app._notifications(topics)]


def fund(app: Ledger, user: UUID, tokens: int) -> None:
    app.credit_deposit(user, f"pi_{user.hex}", tokens, Cause.stripe(f"evt_{user.hex}"))


def test_joins_racing_a_cancellation_land_before_it_with_their_stake_returned_or_change_nothing(
    app: Ledger,
) -> None:
    owner = uuid4()
    fund(app, owner, DEPOSIT)
    created = app.create_challenge(
        owner,
        Cause.user(owner),
        name="Cold showers",
        starts_at=STARTS,
        ends_at=ENDS,
        entry_stake=STAKE,
        max_participants=JOINERS + 1,
    )
    app.publish(created.challenge_id, owner, Cause.user(owner))
    joiners = [uuid4() for _ in range(JOINERS)]
    for user in joiners:
        fund(app, user, DEPOSIT)
    before = {user: app.wallet_of(user) for user in joiners}

    # Some joiners go first; once they are in, the owner cancels while others join at the
    # same moment, head-on, and the last ones straggle in during and after the cancellation.
    early, head_on = JOINERS * 2 // 5, JOINERS * 2 // 5
    gun = Countdown(early)
    straggle = random.Random(7)
    waits = [0.0] * (early + head_on) + [
        straggle.uniform(0, STRAGGLE) for _ in range(JOINERS - early - head_on)
    ]

    def join(user: UUID, i: int) -> Callable[[], Any]:
        def attempt() -> Any:
            if i >= early:
                gun.wait()
                time.sleep(waits[i])
            joined = app.join(created.invite_code, user, "UTC", Cause.user(user))
            gun.tick()
            return joined

        return attempt

    def cancel() -> Any:
        gun.wait()
        return app.cancel(created.challenge_id, owner, Cause.user(owner), reason="rained off")

    outcomes = race([*(join(u, i) for i, u in enumerate(joiners)), cancel])

    cancelled, cancel_error = outcomes[-1]
    assert cancel_error is None, cancel_error
    challenge = app.challenge(created.challenge_id)
    assert challenge.status == CANCELLED
    assert challenge.pool == 0
    join_outcomes = outcomes[:-1]
    joined = {u for u, (_, error) in zip(joiners, join_outcomes, strict=True) if error is None}
    assert len(joined) >= early
    for result, error in join_outcomes:
        if error is None:
            assert result.joined and result.position < cancelled.position
        else:
            assert isinstance(error, ChallengeNotJoinable | ConcurrencyConflict), repr(error)
    assert set(challenge.participants) == {str(u) for u in (*joined, owner)}
    assert challenge.returned == STAKE * (len(joined) + 1)

    for user in joiners:
        wallet = app.wallet_of(user)
        assert (wallet.available, wallet.staked) == (DEPOSIT, 0), user
        assert wallet.stake_in(created.challenge_id) == 0
        # Back in the very lot it came from, which is whole again.
        assert wallet.lots == before[user].lots
        if user in joined:
            assert wallet.version == before[user].version + 2  # staked, then given back
        else:
            assert wallet.version == before[user].version  # nothing changed at all
    owner_wallet = app.wallet_of(owner)
    assert (owner_wallet.available, owner_wallet.staked) == (DEPOSIT, 0)
    assert not any(w.stake_in(created.challenge_id) for w in wallets(app)), "a stranded stake"

    # In the stream: every join is before the cancellation, every stake taken is given back.
    cancel_at = positions(app, (Challenge.Cancelled.TOPIC,))[0][0]
    joins = positions(app, (Challenge.Joined.TOPIC,))
    assert len(joins) == len(joined) + 1
    assert all(at < cancel_at for at, _, _ in joins)
    locked = positions(app, ("peerpush:Wallet.StakeLocked",))
    returned = positions(app, ("peerpush:Wallet.HoldsReturned",))
    assert {w for _, w, _ in locked} == {w for _, w, _ in returned}
    assert {w for _, w, _ in locked} == {ids.wallet_id(u) for u in (*joined, owner)}
    assert_ledger_invariants(app)


PARTICIPANTS = 5
DAYS = 3
VOTE_PAUSE = 0.1


def test_votes_racing_a_settlement_land_before_it_or_are_refused(
    app: Ledger, clock: AdjustableClock, race_env: dict[str, str]
) -> None:
    users = [uuid4() for _ in range(PARTICIPANTS)]
    owner = users[0]
    for user in users:
        fund(app, user, DEPOSIT)
    created = app.create_challenge(
        owner,
        Cause.user(owner),
        name="Read every day",
        starts_at=STARTS,
        ends_at=ENDS,
        entry_stake=STAKE,
        verification_mode="quorum",
        quorum_pct=60,
        penalty_tokens=50,
        proof_types=["text"],
    )
    challenge_id = created.challenge_id
    app.publish(challenge_id, owner, Cause.user(owner))
    for user in users[1:]:
        app.join(created.invite_code, user, "UTC", Cause.user(user))
    submissions: dict[UUID, UUID] = {}  # submission -> submitter
    for day in range(DAYS):
        clock.set(STARTS + timedelta(days=day, hours=9))
        for user in users:
            made = app.submit(challenge_id, user, TEXT_PROOF, Cause.user(user))
            submissions[made.submission_id] = user
    clock.set(SETTLES)

    # The voters' process still sees a second before the settlement time.
    voters_app = Ledger(
        race_env,
        clock=AdjustableClock(SETTLES - timedelta(seconds=1), frozen=True),
        settings=LedgerSettings(command_retries=200),
    )
    try:
        votes = [
            (submission, voter, voter.int % 3 != 0)
            for submission, submitter in submissions.items()
            for voter in users
            if voter != submitter
        ]

        # Settlement starts once a quarter of the votes have landed; voters pause between
        # votes, as people do, so it finds a moment to land while votes are still coming.
        some_voted = Countdown(len(votes) // 4)

        def voter(user: UUID) -> Callable[[], Any]:
            mine = [(s, approve) for s, who, approve in votes if who == user]
            jitter = random.Random(user.int)
            jitter.shuffle(mine)

            def cast_all() -> list[tuple[UUID, Any, BaseException | None]]:
                results: list[tuple[UUID, Any, BaseException | None]] = []
                for submission, approve in mine:
                    try:
                        counted = voters_app.vote(submission, user, approve, Cause.user(user))
                        results.append((submission, counted, None))
                        some_voted.tick()
                    except (VoteRefused, ConcurrencyConflict) as e:
                        results.append((submission, None, e))
                    time.sleep(jitter.uniform(0, VOTE_PAUSE))
                return results

            return cast_all

        def settle() -> Any:
            some_voted.wait()
            return app.settle(challenge_id, owner, Cause.user(owner))

        outcomes = race([*(voter(u) for u in users), settle])
    finally:
        voters_app.close()

    settled, settle_error = outcomes[-1]
    assert settle_error is None, settle_error
    (settled_at, _, _), *_ = positions(app, (Challenge.Settled.TOPIC,))
    assert settled.position >= settled_at  # the save's last event (a wallet or a closure)
    landed = refused = 0
    for results, error in outcomes[:-1]:
        assert error is None, error
        for _, counted, refusal in results:
            if refusal is None:
                landed += 1
                assert counted.position < settled_at
            else:
                refused += 1
    assert landed + refused == len(votes)

    review_topics = (Verification.VoteCast.TOPIC, Verification.Decided.TOPIC)
    reviewed = positions(app, review_topics)
    assert all(at < settled_at for at, _, _ in reviewed), "a vote landed after settlement"
    assert sum(1 for _, _, topic in reviewed if topic == Verification.VoteCast.TOPIC) == landed
    # The submissions still pending were closed in the settlement's own save.
    closures = positions(app, (Verification.Closed.TOPIC,))
    assert all(settled_at < at <= settled.position for at, _, _ in closures)

    challenge = app.challenge(challenge_id)
    assert challenge.status == SETTLED and challenge.pool == 0
    settled_event = next(
        e for e in app.events.get(challenge_id) if isinstance(e, Challenge.Settled)
    )
    closed = set(settled_event.closed_submissions)
    for submission in submissions:
        verification = app.verification(submission)
        assert verification.status in (ACCEPTED, REJECTED, EXPIRED)
        assert (verification.status == EXPIRED) == (submission in closed)
        assert challenge.submissions[str(submission)].status == verification.status
        assert verification.status != PENDING
    assert len(closed) == len(closures)
    # The pool was divided on the verdicts as they stood when it was settled.
    for result in settled_event.results:  # (user, expected, accepted, ...)
        user_id, got = result[0], result[2]
        assert got == sum(
            1
            for s, who in submissions.items()
            if who == user_id and app.verification(s).status == ACCEPTED
        )
    for user in users:
        assert app.wallet_of(user).staked == 0
    assert_ledger_invariants(app)


def test_commands_reading_an_aggregate_while_it_is_fast_forwarded_never_see_it_torn(
    app: Ledger,
) -> None:
    """The aggregate cache is fast-forwarded in place; a reader copying it meanwhile must get
    every event whole (never "dictionary changed size", never state ahead of its version)."""
    owner = uuid4()
    fund(app, owner, DEPOSIT)
    created = app.create_challenge(
        owner,
        Cause.user(owner),
        name="Free for all",
        starts_at=STARTS,
        ends_at=ENDS,
        entry_stake=0,
        max_participants=500,
    )
    app.publish(created.challenge_id, owner, Cause.user(owner))
    base = app.challenge(created.challenge_id).version - 1  # events other than joins
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                challenge = app.challenge(created.challenge_id)
            except Exception as e:  # collected and failed below
                problems.append(repr(e))
                continue
            if len(challenge.participants) != challenge.version - base:
                problems.append(f"{len(challenge.participants)} at v{challenge.version}")

    readers = [threading.Thread(target=read) for _ in range(TORN_READERS)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, mid-copy and mid-event
    for reader in readers:
        reader.start()
    try:
        for _ in range(TORN_READ_JOINS):
            user = uuid4()
            app.join(created.invite_code, user, "UTC", Cause.user(user))
    finally:
        done.set()
        for reader in readers:
            reader.join(timeout=30)
        sys.setswitchinterval(switch_interval)
    assert problems == []
