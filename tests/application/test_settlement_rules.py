"""Settlement rules that must hold whoever asks for the settle, and a worker no challenge can
stop (rules §3, §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain.aggregate import Cause
from domain.challenge import CANCELLED, SETTLED, Challenge
from domain.errors import InvalidField
from tests.application.test_ledger_commands import (
    ADMIN,
    END,
    SETTLE_AT,
    START,
    T0,
    A,
    B,
    create,
    fund,
    me,
    running,
)
from tests.invariants import assert_ledger_invariants


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(T0, frozen=True)


@pytest.fixture
def app(clock: AdjustableClock) -> Ledger:
    return Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_settling_a_lone_participants_challenge_returns_the_stake_and_books_no_revenue(
    app: Ledger, clock: AdjustableClock, who: str
) -> None:
    made = running(app)
    clock.set(SETTLE_AT + timedelta(hours=1))

    if who == "owner":
        app.settle(made.challenge_id, A, me(A))
    else:
        app.settle(made.challenge_id, ADMIN, Cause.admin(ADMIN), is_admin=True)

    challenge = app.challenge(made.challenge_id)
    wallet = app.wallet_of(A)
    assert (challenge.status, challenge.forfeited, challenge.fee) == (CANCELLED, 0, 0)
    assert (wallet.available, wallet.staked, wallet.forfeited) == (10_000, 0, 0)
    assert [lot.remaining for lot in wallet.lots.values()] == [10_000]
    assert assert_ledger_invariants(app).revenue == 0


def test_a_lone_challenge_settled_by_its_owner_is_not_swept_again(
    app: Ledger, clock: AdjustableClock
) -> None:
    made = running(app)
    clock.set(START + timedelta(minutes=5))

    app.settle(made.challenge_id, A, me(A))
    swept = app.settle_due()

    assert (swept.settled, swept.cancelled) == ((), ())
    assert app.wallet_of(A).available == 10_000
    assert_ledger_invariants(app)


def test_a_challenge_dated_in_year_9999_is_refused_before_anything_is_recorded(
    app: Ledger,
) -> None:
    head = app.head()

    with pytest.raises(InvalidField):
        create(
            app,
            starts_at=datetime(9999, 12, 30, tzinfo=UTC),
            ends_at=datetime.max.replace(tzinfo=UTC),
        )

    assert app.head() == head


def test_the_date_limits_are_settings(
    clock: AdjustableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_START_AHEAD_DAYS", "2")
    app = Ledger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock, settings=LedgerSettings()
    )
    with pytest.raises(InvalidField):
        create(app, starts_at=T0 + timedelta(days=3), ends_at=T0 + timedelta(days=4))
    assert create(app, starts_at=START, ends_at=END).challenge_id


def counting_loads(app: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[UUID]:
    """Every aggregate the application loads from now on, in order."""
    loads: list[UUID] = []
    get = app.repository.get

    def counted(aggregate_id: UUID, **kwargs: Any) -> Any:
        loads.append(aggregate_id)
        return get(aggregate_id, **kwargs)

    monkeypatch.setattr(app.repository, "get", counted)
    return loads


def test_a_worker_pass_loads_only_the_challenges_that_are_due(
    app: Ledger, clock: AdjustableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fund(app, A, 10_000)
    fund(app, B, 10_000)
    full = [running(app, B, entry_stake=10).challenge_id for _ in range(40)]
    lonely = [running(app, entry_stake=10).challenge_id for _ in range(3)]
    later = [
        running(app, B, entry_stake=10, ends_at=END + timedelta(days=3)).challenge_id
        for _ in range(20)
    ]
    loads = counting_loads(app, monkeypatch)

    clock.set(START - timedelta(minutes=1))
    assert app.settle_due() == app.settle_due()
    assert loads == []

    clock.set(START + timedelta(minutes=1))
    swept = app.settle_due()
    assert set(swept.cancelled) == set(lonely) and swept.settled == ()
    assert len(loads) <= 3 * len(lonely)

    loads.clear()
    assert (app.settle_due().cancelled, loads) == ((), [])

    clock.set(SETTLE_AT)
    swept = app.settle_due()
    assert set(swept.settled) == set(full) and swept.cancelled == ()
    assert len(loads) <= 4 * len(full)
    assert all(app.challenge(i).status == SETTLED for i in full)
    assert all(app.challenge(i).status != SETTLED for i in later)
    assert_ledger_invariants(app)


def test_a_join_that_fills_a_challenge_moves_its_due_time_to_the_settlement(
    app: Ledger, clock: AdjustableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = running(app)
    app.settle_due()  # indexed as due at the start, while it has one participant
    fund(app, B, 1_000)
    app.join(made.invite_code, B, "UTC", me(B))
    loads = counting_loads(app, monkeypatch)

    clock.set(START + timedelta(minutes=1))
    assert app.settle_due().cancelled == ()
    assert loads == []
    clock.set(SETTLE_AT)
    assert app.settle_due().settled == (made.challenge_id,)


def test_a_challenge_written_before_the_date_bounds_cannot_stop_the_others(
    clock: AdjustableClock,
) -> None:
    # The stream of an older release, whose terms allowed any date: settling this challenge
    # overflows the calendar (year 9999 + the settlement delay).
    app = Ledger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        clock=clock,
        settings=LedgerSettings.model_construct(max_duration_days=4_000_000),
    )
    poisoned = running(app, B, ends_at=datetime(9999, 12, 31, 23, tzinfo=UTC))
    fine = running(app, B)
    clock.set(SETTLE_AT)

    first = app.settle_due()
    second = app.settle_due()

    assert (first.settled, first.failed) == ((fine.challenge_id,), (poisoned.challenge_id,))
    assert (second.settled, second.failed) == ((), (poisoned.challenge_id,))
    assert app.challenge(fine.challenge_id).status == SETTLED


def test_a_settlement_that_fails_is_counted_skipped_and_retried_on_the_next_pass(
    app: Ledger, clock: AdjustableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = running(app, B).challenge_id
    others = [running(app, B).challenge_id for _ in range(3)]
    settle = Challenge.settle
    failing = {"left": 1}

    def flaky(self: Challenge, *args: Any, **kwargs: Any) -> Any:
        if self.id == broken and failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("poisoned")
        return settle(self, *args, **kwargs)

    monkeypatch.setattr(Challenge, "settle", flaky)
    clock.set(SETTLE_AT)

    first = app.settle_due()
    assert first.failed == (broken,) and set(first.settled) == set(others)
    second = app.settle_due()
    assert (second.failed, second.settled) == ((), (broken,))
    assert_ledger_invariants(app)
