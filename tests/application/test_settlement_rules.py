"""Settlement rules that must hold whoever asks for the settle, and a worker no challenge can
stop (SPEC §3, §5)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from domain.challenge import CANCELLED
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


_ = (END, B, create, fund)
