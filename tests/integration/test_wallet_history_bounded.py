"""A long history neither slows a wallet nor lets a repeated request through (rules §1).

A command costs the same however long the wallet's history: what the wallet's state keeps
(copied on every command, carried by every snapshot) must not grow with it. Lot records are
dropped after the dispute window, and the ids of admin adjustments live in their own
``UsedId`` markers; a repeated adjustment id still changes nothing, however long after, and
in a process that never saw the first one.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from application.ledger import Ledger
from application.ports import AdjustableClock
from domain import ids
from domain.aggregate import Cause
from domain.wallet import Wallet

START = datetime(2020, 1, 1, 12, tzinfo=UTC)
ADMIN = Cause.admin("admin-1")
STRIPE = Cause.stripe("evt_1")
DISPUTE_WINDOW = timedelta(days=180)


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(START, frozen=True)


def balances(app: Ledger, user: UUID) -> tuple[int, int, int, int]:
    w = app.wallet_of(user)
    return w.version, w.available, w.adjusted_in, w.adjusted_out


def test_a_repeated_adjustment_changes_nothing_after_a_long_history_and_a_restart(
    reopen: Any, clock: AdjustableClock
) -> None:
    app = reopen()
    user = uuid4()
    app.credit_deposit(user, "pi_1", 10_000, STRIPE)
    first = uuid4()
    app.adjust(user, "credit", 500, "goodwill", first, ADMIN)
    app.adjust(user, "credit", 500, "goodwill", first, ADMIN)  # at once: nothing
    assert balances(app, user)[1:] == (10_500, 500, 0)
    debits = [uuid4() for _ in range(250)]  # a long history, over more than a year
    for debit in debits:
        clock.advance(timedelta(days=2))
        app.adjust(user, "debit", 1, "fee", debit, ADMIN)
    before, head = balances(app, user), app.head()
    assert before[1:] == (10_250, 500, 250)
    assert app.wallet_of(user).adjustments == {}

    for again in (first, debits[0], debits[-1]):  # long after, and just now
        app.adjust(user, "debit", 1, "fee", again, ADMIN)
    assert (balances(app, user), app.head()) == (before, head)

    restarted = reopen()  # a new process: its cache never saw these ids
    restarted.adjust(user, "credit", 500, "goodwill", first, ADMIN)
    restarted.adjust(user, "debit", 1, "fee", debits[7], ADMIN)
    assert (balances(restarted, user), restarted.head()) == (before, head)
    # A new id is still applied, once.
    new = uuid4()
    restarted.adjust(user, "debit", 3, "fee", new, ADMIN)
    app.adjust(user, "debit", 3, "fee", new, ADMIN)
    assert balances(reopen(), user)[1:] == (10_247, 500, 253)


def test_an_adjustment_recorded_before_markers_replays_the_same_and_stays_applied_once(
    reopen: Any, clock: AdjustableClock
) -> None:
    """A v1 ``AdjustmentCredited`` row (no ``marked``): upcast, its id still in the state."""
    app = reopen()
    user, old = uuid4(), uuid4()
    app.credit_deposit(user, "pi_1", 1_000, STRIPE)
    wallet = app.wallet_of(user)
    wallet._record(
        Wallet.AdjustmentCredited,
        ADMIN,
        clock.now(),
        adjustment_id=old,
        lot_id=ids.adjustment_lot_id(old),
        tokens=40,
        reason="before markers",
        marked=False,
    )
    [event] = wallet.collect_events()
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    del state["class_version"], state["marked"]  # as a v1 row was written
    v1 = StoredEvent(
        stored.originator_id,
        stored.originator_version,
        stored.topic,
        json.dumps(state, separators=(",", ":")).encode(),
    )
    app.recorder.insert_events([v1])

    restarted = reopen()
    wallet = restarted.wallet_of(user)
    assert wallet.adjustments == {str(old): 40}
    assert (wallet.available, wallet.adjusted_in) == (1_040, 40)
    head = restarted.head()
    restarted.adjust(user, "credit", 40, "again", old, ADMIN)
    restarted.adjust(user, "debit", 40, "again", old, ADMIN)
    assert restarted.head() == head
    assert restarted.wallet_of(user).available == 1_040


def a_busy_wallet(events: int) -> Wallet:
    """``events`` events at a steady pace (about five a day): challenges joined and settled,
    with payout lots, an admin adjustment a day, and deposits when tokens run low."""
    user = UUID(int=events)
    at = START
    w = Wallet.open(user, Cause.user(user), at)
    challenge: UUID | None = None
    n = 0
    while w.version < events:
        at += timedelta(days=1)
        n += 1
        if w.available < 100:
            w.credit_deposit(f"pi_{n}", 1_000, 1, timedelta(days=90), STRIPE, at)
            w.drop_old_lot_records(DISPUTE_WINDOW, STRIPE, at)
        if challenge is not None:
            w.settle_stake(challenge, 0 if n % 4 else 20, Cause.worker("settle"), at)
        challenge = uuid4()
        w.lock_stake(challenge, 10, Cause.user(user), at)
        w.debit_adjustment(uuid4(), 1, "fee", ADMIN, at)
        if n % 7 == 0:
            w.credit_adjustment(uuid4(), 5, "goodwill", ADMIN, at)
            w.drop_old_lot_records(DISPUTE_WINDOW, ADMIN, at)
        w.collect_events()  # saved
    return w


def test_a_wallets_state_does_not_grow_with_its_history() -> None:
    """What every command copies, for 2,000 and 20,000 past events at the same pace: the same
    lot records (the last 180 days'), no adjustment id. Still growing, one small entry per
    deposit: the PaymentIntents credited (``deposits``), hence the 20 % allowed."""
    short, long = a_busy_wallet(2_000), a_busy_wallet(20_000)
    assert long.lots_dropped > 10 * len(long.lots)
    assert abs(len(long.lots) - len(short.lots)) <= 5
    assert short.adjustments == long.adjustments == {}
    small, large = (len(pickle.dumps(w, pickle.HIGHEST_PROTOCOL)) for w in (short, long))
    assert large <= small * 1.2, (small, large)
