"""Old lot records leave a wallet's state (rules §1), and old snapshots still load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain import ids
from domain.aggregate import Cause
from domain.errors import UnknownLot
from domain.wallet import Wallet
from domain.wallet_state import LotPart

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REFUND_WINDOW = timedelta(days=90)
DISPUTE_WINDOW = timedelta(days=180)
USER = UUID("00000000-0000-4000-8000-0000000000aa")
CHALLENGE = UUID("00000000-0000-4000-8000-0000000000c1")
WITHDRAWAL = UUID("00000000-0000-4000-8000-0000000000e1")
STRIPE = Cause.stripe("evt_1")
ADMIN = Cause.admin("admin-1")
WORKER = Cause.worker("refunds")


def deposits(w: Wallet, days: range, tokens: int = 10) -> None:
    for day in days:
        w.credit_deposit(f"pi_{day}", tokens, 1, REFUND_WINDOW, STRIPE, T0 + timedelta(days=day))


def test_a_wallet_with_many_old_consumed_lots_keeps_only_the_recent_ones() -> None:
    w = Wallet.open(USER, Cause.user(USER), T0)
    deposits(w, range(300))
    w.lock_stake(CHALLENGE, 3000, Cause.user(USER), T0 + timedelta(days=300))
    w.settle_stake(CHALLENGE, 0, WORKER, T0 + timedelta(days=300))  # forfeited: lots empty
    before = (w.available, w.deposited, w.forfeited, len(w.lots))

    dropped = w.drop_old_lot_records(DISPUTE_WINDOW, WORKER, T0 + timedelta(days=300))

    assert len(dropped) == 121  # deposited on days 0..120: 180 days old or more
    assert before == (0, 3000, 3000, 300)
    assert (w.available, w.deposited, w.forfeited) == before[:3]
    assert len(w.lots) == 179 and w.lots_dropped == 121
    assert min(lot.seq for lot in w.lots.values()) == 121
    # A later lot still gets the next sequence number, never one a dropped lot had.
    w.credit_deposit("pi_new", 5, 1, REFUND_WINDOW, STRIPE, T0 + timedelta(days=301))
    assert w.lot(ids.deposit_lot_id("pi_new")).seq == 300
    # Replaying the stream gives the same state.
    replayed = None
    for event in w.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Wallet)
    assert replayed.lots == w.lots and replayed.lots_dropped == 121


def test_a_lot_with_tokens_a_hold_or_a_recent_date_keeps_its_record() -> None:
    w = Wallet.open(USER, Cause.user(USER), T0)
    deposits(w, range(3))
    w.lock_stake(CHALLENGE, 15, Cause.user(USER), T0 + timedelta(days=3))
    # lot 0 is empty but held by the stake, lot 1 still has tokens, lot 2 too.
    assert w.drop_old_lot_records(DISPUTE_WINDOW, WORKER, T0 + timedelta(days=400)) == ()
    assert len(w.lots) == 3
    # Tokens go back to the held lot: its record was kept for exactly that.
    w.return_holds(CHALLENGE, WORKER, T0 + timedelta(days=401))
    assert w.available == 30


def test_a_lot_younger_than_the_dispute_window_keeps_its_record() -> None:
    w = Wallet.open(USER, Cause.user(USER), T0)
    deposits(w, range(1))
    w.lock_stake(CHALLENGE, 10, Cause.user(USER), T0)
    w.settle_stake(CHALLENGE, 0, WORKER, T0)
    assert w.drop_old_lot_records(DISPUTE_WINDOW, WORKER, T0 + timedelta(days=179)) == ()
    assert len(w.drop_old_lot_records(DISPUTE_WINDOW, WORKER, T0 + timedelta(days=180))) == 1


def test_a_refund_failing_after_its_lot_record_was_dropped_changes_nothing() -> None:
    """Not expected in practice (a failure comes days after the refund, the record goes
    months after the refund window); if it came, nothing is recorded and it is reported."""
    w = Wallet.open(USER, Cause.user(USER), T0)
    deposits(w, range(1))
    lot = ids.deposit_lot_id("pi_0")
    w.request_withdrawal(WITHDRAWAL, 10, Cause.user(USER), T0)
    w.record_refund(WITHDRAWAL, lot, "re_1", WORKER, T0)
    assert w.drop_old_lot_records(DISPUTE_WINDOW, WORKER, T0 + timedelta(days=181)) == (lot,)
    version = w.version
    with pytest.raises(UnknownLot):
        w.fail_refund(WITHDRAWAL, lot, STRIPE, T0 + timedelta(days=182))
    assert w.version == version and w.refunded == 10


def test_a_class_version_2_snapshot_still_loads() -> None:
    w = Wallet.open(USER, Cause.user(USER), T0)
    deposits(w, range(2))
    w.lock_stake(CHALLENGE, 15, Cause.user(USER), T0)
    snapshot = Wallet.Snapshot.take(w)
    state = dict(snapshot.state)
    state["class_version"] = 2
    del state["next_lot_seq"], state["lots_dropped"]
    state["stakes"] = {k: [[p.lot_id, p.tokens] for p in v] for k, v in state["stakes"].items()}
    state["early_losses"] = {"pi_x": ["dp_x", 100]}
    state["write_offs"] = {"re_x": [str(ids.deposit_lot_id("pi_0")), 1, "external_refund"]}
    old = Wallet.Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )

    restored = old.mutate(None)

    assert isinstance(restored, Wallet)
    assert restored.stakes[str(CHALLENGE)] == [
        LotPart(ids.deposit_lot_id("pi_0"), 10),
        LotPart(ids.deposit_lot_id("pi_1"), 5),
    ]
    assert restored.next_lot_seq == 2 and restored.lots_dropped == 0
    assert restored.early_losses["pi_x"].cents == 100
    assert restored.write_offs["re_x"].lot_id == ids.deposit_lot_id("pi_0")
    assert restored.stake_in(CHALLENGE) == 15
