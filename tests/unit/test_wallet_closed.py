"""A closed wallet (its owner erased, rules §7) and refunds that end failed or canceled (§6)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from domain.aggregate import Cause
from domain.errors import WalletClosed
from domain.wallet import Wallet
from projections.audit.invariants import problems, totals
from tests.unit.test_wallet import CHALLENGE, STRIPE, T0, WINDOW, WITHDRAWAL, A, wallet

ERASURE = Cause.worker("erasure")
ADMIN = Cause.admin("00000000-0000-4000-8000-0000000000ad")
SECOND = UUID("00000000-0000-4000-8000-0000000000e2")


def closed(*deposits: tuple[str, int]) -> Wallet:
    w = wallet(*deposits)
    w.close(ADMIN, T0)
    w.collect_events()
    return w


def conserved(w: Wallet) -> None:
    assert problems([w], []) == []
    t = totals([w], [])
    assert t.credited == t.accounted


def test_a_closed_wallet_refuses_stakes_and_withdrawals() -> None:
    w = closed()
    w.credit_deposit("pi_a", 100, 1, WINDOW, STRIPE, T0)

    with pytest.raises(WalletClosed):
        w.lock_stake(CHALLENGE, 10, Cause.user(w.user_id), T0)
    with pytest.raises(WalletClosed):
        w.request_withdrawal(WITHDRAWAL, 10, Cause.user(w.user_id), T0)
    assert w.available == 100


def test_a_late_payment_is_refunded_to_the_card_once_and_what_comes_back_is_unclaimed() -> None:
    w = closed()
    w.credit_deposit("pi_a", 100, 1, WINDOW, STRIPE, T0)

    assert w.request_erasure_refund(WITHDRAWAL, ERASURE, T0) == ((A, 100),)
    assert w.move_unclaimed(ERASURE, T0) == ()  # held for its refund
    w.refuse_refund(WITHDRAWAL, A, "refund_failed", ERASURE, T0)

    assert w.request_erasure_refund(SECOND, ERASURE, T0) == ()  # once only
    assert w.move_unclaimed(ERASURE, T0) == ((A, 100),)
    assert (w.available, w.unclaimed, w.refunded) == (0, 100, 0)
    conserved(w)


def test_a_refund_failing_after_the_closing_ends_unclaimed() -> None:
    w = wallet(("pi_a", 100))
    w.request_withdrawal(WITHDRAWAL, 100, Cause.user(w.user_id), T0)
    w.record_refund(WITHDRAWAL, A, "re_1", Cause.worker("withdrawals"), T0)
    w.close(ADMIN, T0)

    w.fail_refund(WITHDRAWAL, A, STRIPE, T0)
    assert w.available == 100
    # The lot was refunded before the closing, so it gets its one refund now.
    assert w.request_erasure_refund(SECOND, ERASURE, T0) == ((A, 100),)
    w.record_refund(SECOND, A, "re_2", ERASURE, T0)
    w.fail_refund(SECOND, A, STRIPE, T0)
    assert w.request_erasure_refund(UUID(int=3), ERASURE, T0) == ()
    w.move_unclaimed(ERASURE, T0)
    assert (w.available, w.unclaimed, w.refunded) == (0, 100, 0)
    conserved(w)


def test_tokens_past_the_refund_window_or_not_from_a_card_go_straight_to_unclaimed() -> None:
    w = closed(("pi_a", 50))
    w.credit_adjustment(UUID(int=9), 7, "goodwill", ADMIN, T0)
    later = T0 + WINDOW + timedelta(days=1)

    assert w.request_erasure_refund(WITHDRAWAL, ERASURE, later) == ()
    adjustment = next(lot.lot_id for lot in w.lots.values() if lot.source == "adjustment")
    assert w.move_unclaimed(ERASURE, later) == ((A, 50), (adjustment, 7))
    assert (w.available, w.unclaimed) == (0, 57)
    conserved(w)


def test_an_open_wallet_moves_nothing_to_unclaimed() -> None:
    w = wallet(("pi_a", 50))
    assert w.request_erasure_refund(WITHDRAWAL, ERASURE, T0) == ()
    assert w.move_unclaimed(ERASURE, T0) == ()
    assert w.available == 50


def test_an_external_refund_that_fails_later_gives_its_tokens_back() -> None:
    w = wallet(("pi_a", 100), ("pi_b", 40))
    w.write_off(A, "re_ext", "external_refund", 30, STRIPE, T0)
    assert (w.available, w.written_off_total) == (110, 30)

    assert w.reverse_write_off("re_ext", STRIPE, T0) is True
    assert w.reverse_write_off("re_ext", STRIPE, T0) is False  # once
    assert (w.available, w.written_off_total, w.lot(A).remaining) == (140, 0, 100)
    conserved(w)


def test_a_whole_external_refund_failing_reopens_the_lot() -> None:
    w = wallet(("pi_a", 100))
    w.lock_stake(CHALLENGE, 60, Cause.user(w.user_id), T0)
    w.write_off(A, "re_ext", "external_refund", 100, STRIPE, T0)
    assert w.lot(A).written_off and w.lot(A).loss == 60

    w.reverse_write_off("re_ext", STRIPE, T0)
    lot = w.lot(A)
    assert (lot.written_off, lot.loss, lot.remaining, w.available) == (False, 0, 40, 40)
    assert (w.written_off_total, w.staked) == (0, 60)


def test_a_lost_dispute_is_not_reversed_as_a_refund() -> None:
    w = wallet(("pi_a", 100))
    w.open_dispute("pi_a", "dp_1", STRIPE, T0)
    w.lose_dispute("dp_1", 100, STRIPE, T0)
    assert w.reverse_write_off("dp_1", STRIPE, T0) is False


def test_a_snapshot_taken_before_wallets_could_close_still_loads() -> None:
    w = wallet(("pi_a", 100))
    snapshot = Wallet.Snapshot.take(w)
    state = {
        k: v
        for k, v in snapshot.state.items()
        if k
        not in (
            "class_version",
            "closed",
            "unclaimed",
            "erasure_tried",
            "write_offs",
            "reversed_write_offs",
        )
    }
    old = Wallet.Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )

    restored = old.mutate(None)
    assert isinstance(restored, Wallet)
    assert (restored.available, restored.closed, restored.unclaimed) == (100, False, 0)
    restored.close(ADMIN, T0)
    assert restored.move_unclaimed(ERASURE, T0 + WINDOW) == ((A, 100),)


def test_tokens_a_failed_external_refund_gives_back_to_a_disputed_lot_arrive_frozen() -> None:
    """The dispute is still open: what comes back to its lot is frozen until it is decided
    (rules §1), never usable in between (found by the state machine)."""
    w = wallet(("pi_a", 100))
    w.open_dispute("pi_a", "dp_1", STRIPE, T0)
    w.write_off(A, "re_ext", "external_refund", 100, STRIPE, T0)

    w.reverse_write_off("re_ext", STRIPE, T0)

    lot = w.lot(A)
    assert (lot.written_off, lot.frozen, lot.remaining) == (False, True, 100)
    assert (w.available, w.frozen) == (0, 100)
    conserved(w)
