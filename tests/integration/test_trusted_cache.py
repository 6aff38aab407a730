"""Commands decided on a process's cached aggregates (``TRUSTED_CACHE``), with two processes.

Each ``Ledger`` here stands for a process with its own aggregate cache, on one schema. One
process changes what the other has cached; the other then runs a command on its stale cache.
Whatever the cache held, the outcome must be the one fresh state gives: a save decided on an
old version is refused by the events table and re-run, an aggregate read but not changed is
checked before the answer, and a refusal is decided again on fresh state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.persistence import DatabaseSettings
from api.bootstrap import build_cache_follower
from application.ledger import CommandOutcome, Ledger
from application.ports import AdjustableClock
from application.turns import Turns
from domain import ids
from domain.aggregate import Cause
from domain.challenge import CANCELLED
from domain.errors import ChallengeNotJoinable, InsufficientFunds, NotRefundable
from tests.invariants import assert_ledger_invariants

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
STAKE = 300


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(NOW, frozen=True)


@pytest.fixture
def two(pg_settings: DatabaseSettings, clock: AdjustableClock) -> Iterator[tuple[Ledger, Ledger]]:
    env = pg_settings.eventsourcing_env(create_table=True)
    a, b = Ledger(env, clock=clock), Ledger(env, clock=clock)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def fund(app: Ledger, user: UUID, tokens: int, n: int = 0) -> None:
    app.credit_deposit(user, f"pi_{user.hex}_{n}", tokens, Cause.stripe(f"evt_{user.hex}_{n}"))


def reads_of(app: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The aggregates whose events ``app`` reads from the store from now on, in order."""
    reads: list[object] = []
    select = app.recorder.select_events

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[0] if args else kwargs.get("originator_id"))
        return select(*args, **kwargs)

    monkeypatch.setattr(app.recorder, "select_events", counted)
    return reads


def published(app: Ledger, owner: UUID) -> Any:
    fund(app, owner, STAKE)
    created = app.create_challenge(
        owner,
        Cause.user(owner),
        name="Cold showers",
        starts_at=NOW + timedelta(days=1),
        ends_at=NOW + timedelta(days=4),
        entry_stake=STAKE,
        max_participants=10,
    )
    app.publish(created.challenge_id, owner, Cause.user(owner))
    return created


def test_a_join_on_a_challenge_another_process_changed_lands_once_after_the_other(
    two: tuple[Ledger, Ledger],
) -> None:
    a, b = two
    created = published(a, uuid4())
    first, second = uuid4(), uuid4()
    for user in (first, second):
        fund(a, user, STAKE)
    a.wallet_of(second)  # process a caches the challenge and the wallet ...
    a.challenge(created.challenge_id)
    b.join(created.invite_code, first, "UTC", Cause.user(first))  # ... then b changes one

    joined = a.join(created.invite_code, second, "UTC", Cause.user(second))

    assert joined.joined
    challenge = b.challenge(created.challenge_id)
    assert {str(first), str(second)} <= set(challenge.participants)
    assert challenge.pool == 3 * STAKE
    assert b.wallet_of(second).staked == STAKE
    assert_ledger_invariants(b)


def test_a_refusal_decided_on_a_stale_wallet_is_decided_again_on_fresh_state(
    two: tuple[Ledger, Ledger],
) -> None:
    a, b = two
    user = uuid4()
    fund(a, user, 100)
    a.request_withdrawal(user, uuid4(), 1, Cause.user(user))  # a caches the 100-token wallet
    fund(b, user, 1_000, n=1)  # b credits 1,000 more; a's cache has not seen it

    held = a.request_withdrawal(user, uuid4(), 500, Cause.user(user))

    assert sum(tokens for _, tokens in held.lots) == 500
    assert b.wallet_of(user).available == 100 - 1 + 1_000 - 500
    with pytest.raises(NotRefundable):  # and a real refusal still stands
        a.request_withdrawal(user, uuid4(), 10_000, Cause.user(user))


def test_a_rejoin_through_a_process_that_missed_the_cancellation_is_refused(
    two: tuple[Ledger, Ledger],
) -> None:
    """The re-join changes nothing, so no save proves the cached challenge current: it is
    read again before the answer, which is then the cancelled challenge's."""
    a, b = two
    owner, user = uuid4(), uuid4()
    created = published(a, owner)
    fund(a, user, STAKE)
    a.join(created.invite_code, user, "UTC", Cause.user(user))  # a caches user as joined
    b.cancel(created.challenge_id, owner, Cause.user(owner), reason="rained off")

    with pytest.raises(ChallengeNotJoinable):
        a.join(created.invite_code, user, "UTC", Cause.user(user))

    assert a.challenge(created.challenge_id).status == CANCELLED
    assert (a.wallet_of(user).available, a.wallet_of(user).staked) == (STAKE, 0)
    assert_ledger_invariants(a)


def test_a_command_on_cached_aggregates_reads_nothing_from_the_store(
    two: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two
    created = published(a, uuid4())
    user = uuid4()
    fund(a, user, 2 * STAKE)  # the wallet is in a's cache as its deposit saved it
    reads = reads_of(a, monkeypatch)
    a.join(created.invite_code, user, "UTC", Cause.user(user))

    assert reads == []
    assert a.wallet_of(user).staked == STAKE  # (this read, outside a command, goes to the store)
    assert reads == [ids.wallet_id(user)]


def test_with_the_trusted_cache_off_every_command_reads_its_aggregates_first(
    pg_settings: DatabaseSettings, clock: AdjustableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Ledger(pg_settings.eventsourcing_env(create_table=True), clock=clock, trusted_cache=False)
    try:
        user = uuid4()
        fund(app, user, 100)
        reads = reads_of(app, monkeypatch)
        app.adjust(user, "debit", 1, "fee", uuid4(), Cause.worker("test"))
        assert ids.wallet_id(user) in reads
    finally:
        app.close()


def test_a_process_hears_of_another_process_s_writes_and_decides_without_a_conflict(
    two: tuple[Ledger, Ledger], pg_settings: DatabaseSettings
) -> None:
    """Without the follower, a's command on the wallet b changed would first fail on its
    version and run again; with it, a has dropped its stale copy and runs once."""
    a, b = two
    user = uuid4()
    fund(a, user, 100)
    ended: list[CommandOutcome] = []
    a.observers.append(ended.append)
    follower = build_cache_follower(pg_settings, a)
    try:
        written = b.adjust(user, "credit", 50, "goodwill", uuid4(), Cause.worker("test"))
        deadline = time.monotonic() + 30  # a bound for a busy machine, not a timing assumption
        while follower.position < written.position and time.monotonic() < deadline:
            time.sleep(0.01)
        assert follower.position >= written.position, "the follower never heard of b's write"

        a.adjust(user, "debit", 120, "fee", uuid4(), Cause.worker("test"))
    finally:
        follower.close()

    assert [(e.command, e.outcome, e.retries) for e in ended] == [("adjust", "done", 0)]
    assert b.wallet_of(user).available == 100 + 50 - 120


def test_without_hearing_of_it_the_stale_decision_is_retried_once(
    two: tuple[Ledger, Ledger],
) -> None:
    a, b = two
    user = uuid4()
    fund(a, user, 100)
    ended: list[CommandOutcome] = []
    a.observers.append(ended.append)
    b.adjust(user, "credit", 50, "goodwill", uuid4(), Cause.worker("test"))

    a.adjust(user, "debit", 120, "fee", uuid4(), Cause.worker("test"))

    assert [(e.command, e.outcome, e.retries) for e in ended] == [("adjust", "done", 1)]
    assert b.wallet_of(user).available == 100 + 50 - 120


def test_joins_racing_for_one_challenge_in_one_process_take_turns_and_none_runs_twice(
    pg_settings: DatabaseSettings, clock: AdjustableClock
) -> None:
    """Without turns, each of the racers that lost a round on the challenge's version ran
    again (most of the work thrown away); with them, each decides once, on what the previous
    one saved. (The turns' wait is made long here so a slow machine cannot time one out.)"""
    app = Ledger(pg_settings.eventsourcing_env(create_table=True), clock=clock)
    app.turns = Turns(wait_seconds=120)
    try:
        created = published(app, uuid4())
        joiners = [uuid4() for _ in range(8)]
        for user in joiners:
            fund(app, user, STAKE)
        ended: list[CommandOutcome] = []
        app.observers.append(ended.append)
        barrier = threading.Barrier(len(joiners))

        def join(user: UUID) -> None:
            barrier.wait()
            app.join(created.invite_code, user, "UTC", Cause.user(user))

        threads = [threading.Thread(target=join, args=(u,)) for u in joiners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)

        assert [(e.outcome, e.retries) for e in ended] == [("done", 0)] * len(joiners)
        challenge = app.challenge(created.challenge_id)
        assert {str(u) for u in joiners} <= set(challenge.participants)
        assert challenge.pool == STAKE * (len(joiners) + 1)
    finally:
        app.close()


def test_a_turn_not_given_back_in_time_is_not_waited_for() -> None:
    turns = Turns(stripes=1, wait_seconds=0.05)
    mine: list[threading.RLock] = []
    turns.take("challenge", mine)
    theirs: list[threading.RLock] = []
    other = threading.Thread(target=turns.take, args=("challenge", theirs))
    other.start()
    other.join(timeout=60)

    assert not other.is_alive() and theirs == []  # went on without the turn
    turns.give_back(mine)
    turns.take("challenge", theirs)
    assert len(theirs) == 1
    turns.give_back(theirs)


def test_a_join_refused_for_want_of_tokens_leaves_nothing_of_it_in_the_cache(
    two: tuple[Ledger, Ledger],
) -> None:
    """The join is applied to the challenge (taken out of the cache, no copy) before the
    wallet refuses the stake; that changed challenge must not go back into the cache, or the
    user's next join would find them already in and lock nothing."""
    a, _ = two
    created = published(a, uuid4())
    user = uuid4()
    fund(a, user, STAKE - 1)
    a.challenge(created.challenge_id)  # cached

    with pytest.raises(InsufficientFunds):
        a.join(created.invite_code, user, "UTC", Cause.user(user))
    fund(a, user, 1, n=1)
    joined = a.join(created.invite_code, user, "UTC", Cause.user(user))

    assert joined.joined
    assert a.wallet_of(user).staked == STAKE
    assert a.challenge(created.challenge_id).pool == 2 * STAKE
    assert_ledger_invariants(a)
