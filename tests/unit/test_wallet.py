"""The wallet aggregate (rules §1, §2, §6): lots, holds, withdrawals, adjustments, disputes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain import ids
from domain.aggregate import Cause
from domain.errors import (
    InsufficientFunds,
    InvalidField,
    NotRefundable,
    OutcomeAlreadyRecorded,
)
from domain.wallet import Wallet
from tests.invariants import check_wallet

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = timedelta(days=90)
USER = UUID("00000000-0000-4000-8000-0000000000aa")
CHALLENGE = UUID("00000000-0000-4000-8000-0000000000c1")
SUBMISSION = UUID("00000000-0000-4000-8000-0000000000d1")
WITHDRAWAL = UUID("00000000-0000-4000-8000-0000000000e1")
ADJUSTMENT = UUID("00000000-0000-4000-8000-0000000000f1")
STRIPE = Cause.stripe("evt_1")
ME = Cause.user(USER, "req-1")
WORKER = Cause.worker("refunds")
A, B, C = (ids.deposit_lot_id(pi) for pi in ("pi_a", "pi_b", "pi_c"))


def wallet(*deposits: tuple[str, int]) -> Wallet:
    """A wallet with the given ``(payment_intent, cents)`` deposits, events collected."""
    w = Wallet.open(USER, ME, T0)
    for pi, cents in deposits:
        w.credit_deposit(pi, cents, 1, WINDOW, STRIPE, T0)
    w.collect_events()
    return w


def recorded(w: Wallet) -> list[str]:
    return [type(e).__name__ for e in w.collect_events()]


def remaining(w: Wallet, *lots: UUID) -> list[int]:
    return [w.lot(lot).remaining for lot in lots]


# --- deposits ------------------------------------------------------------------------------


def test_a_payment_intent_is_credited_once_however_often_it_is_delivered() -> None:
    w = wallet()

    assert w.credit_deposit("pi_a", 1_000, 1, WINDOW, STRIPE, T0) is True
    assert w.credit_deposit("pi_a", 1_000, 1, WINDOW, Cause.stripe("evt_2"), T0) is False

    assert recorded(w) == ["DepositCredited"]
    assert (w.available, w.deposited) == (1_000, 1_000)


def test_a_deposit_buys_whole_tokens_at_the_price_of_the_day_and_remembers_it() -> None:
    w = wallet()
    w.credit_deposit("pi_a", 1_000, 3, WINDOW, STRIPE, T0)

    lot = w.lot(A)
    assert (lot.amount, lot.cents_paid, lot.token_price, lot.source) == (333, 1_000, 3, "deposit")
    assert lot.payment_intent_id == "pi_a"


def test_a_deposit_lot_is_refundable_for_ninety_days_from_its_credit() -> None:
    w = wallet(("pi_a", 500))

    assert w.lot(A).refundable_until == datetime(2026, 5, 30, 12, tzinfo=UTC)


# --- stakes and penalties ------------------------------------------------------------------


def test_a_stake_consumes_the_oldest_lot_first_and_records_the_pairs() -> None:
    w = wallet(("pi_a", 300), ("pi_b", 500))

    w.lock_stake(CHALLENGE, 400, ME, T0)

    [event] = w.collect_events()
    assert isinstance(event, Wallet.StakeLocked)
    assert event.taken == ((A, 300), (B, 100))
    assert remaining(w, A, B) == [0, 400]
    assert (w.available, w.staked) == (400, 400)


def test_a_stake_the_wallet_cannot_afford_is_refused_and_records_nothing() -> None:
    w = wallet(("pi_a", 300))

    with pytest.raises(InsufficientFunds) as refused:
        w.lock_stake(CHALLENGE, 301, ME, T0)

    assert (refused.value.needed, refused.value.available) == (301, 300)
    assert recorded(w) == []
    assert (w.available, w.staked, w.lot(A).remaining) == (300, 0, 300)


def test_a_penalty_is_capped_at_what_is_available() -> None:
    w = wallet(("pi_a", 50))

    assert w.charge_penalty(CHALLENGE, SUBMISSION, 100, ME, T0) == 50

    [event] = w.collect_events()
    assert isinstance(event, Wallet.PenaltyCharged)
    assert (event.tokens, event.taken) == (50, ((A, 50),))
    assert (w.available, w.penalised) == (0, 50)


def test_a_penalty_on_an_empty_wallet_charges_nothing_and_records_nothing() -> None:
    w = wallet()

    assert w.charge_penalty(CHALLENGE, SUBMISSION, 100, ME, T0) == 0
    assert recorded(w) == []


def test_a_cancelled_challenge_returns_stake_and_penalties_to_the_exact_lots() -> None:
    w = wallet(("pi_a", 300), ("pi_b", 500))
    w.lock_stake(CHALLENGE, 400, ME, T0)  # A 300, B 100
    w.charge_penalty(CHALLENGE, SUBMISSION, 150, ME, T0)  # B 150
    w.credit_deposit("pi_c", 1_000, 1, WINDOW, STRIPE, T0)
    w.collect_events()

    assert w.return_holds(CHALLENGE, ME, T0) == (400, 150)

    [event] = w.collect_events()
    assert event.returned == ((A, 300, 0, False), (B, 100, 0, False), (B, 150, 0, False))
    assert remaining(w, A, B, C) == [300, 500, 1_000]
    assert (w.available, w.staked, w.penalised) == (1_800, 0, 0)
    assert w.stakes == {} and w.penalties == {}


def test_a_share_smaller_than_the_stake_refills_lots_in_consumption_order() -> None:
    w = wallet(("pi_a", 300), ("pi_b", 500))
    w.lock_stake(CHALLENGE, 400, ME, T0)  # A 300, B 100

    assert w.settle_stake(CHALLENGE, 350, ME, T0) == (350, 0)

    assert remaining(w, A, B) == [300, 450]
    assert (w.available, w.staked, w.forfeited, w.won) == (750, 0, 50, 0)
    assert len(w.lots) == 2


def test_a_share_larger_than_the_stake_returns_the_stake_and_pays_the_excess_as_a_lot() -> None:
    w = wallet(("pi_a", 300), ("pi_b", 500))
    w.lock_stake(CHALLENGE, 400, ME, T0)

    assert w.settle_stake(CHALLENGE, 650, ME, T0) == (400, 250)

    payout = w.lot(ids.payout_lot_id(CHALLENGE, USER))
    assert (payout.source, payout.amount, payout.remaining) == ("payout", 250, 250)
    assert remaining(w, A, B) == [300, 500]
    assert (w.available, w.won, w.forfeited) == (1_050, 250, 0)


# --- withdrawals ---------------------------------------------------------------------------


def test_a_withdrawal_beyond_the_refundable_lots_is_refused_naming_what_is_refundable() -> None:
    w = wallet(("pi_a", 300))
    w.credit_adjustment(ADJUSTMENT, 500, "goodwill", Cause.admin("boss"), T0)
    w.collect_events()

    with pytest.raises(NotRefundable) as refused:
        w.request_withdrawal(WITHDRAWAL, 400, ME, T0)

    assert (refused.value.requested, refused.value.refundable) == (400, 300)
    assert recorded(w) == []


def test_a_payout_lot_is_never_refundable() -> None:
    w = wallet(("pi_a", 100))
    w.lock_stake(CHALLENGE, 100, ME, T0)
    w.settle_stake(CHALLENGE, 300, ME, T0)  # 100 back to A, 200 as a payout lot

    assert w.refundable(T0) == 100
    with pytest.raises(NotRefundable):
        w.request_withdrawal(WITHDRAWAL, 101, ME, T0)


def test_a_lot_past_its_refund_window_is_not_refundable_but_still_spendable() -> None:
    w = wallet(("pi_a", 300))
    expired = T0 + WINDOW  # the window is half-open: its last instant is just before this

    with pytest.raises(NotRefundable) as refused:
        w.request_withdrawal(WITHDRAWAL, 1, ME, expired)
    assert refused.value.refundable == 0
    assert w.refundable(expired - timedelta(microseconds=1)) == 300

    w.lock_stake(CHALLENGE, 300, ME, expired)
    assert w.available == 0


def withdrawn() -> Wallet:
    """A wallet that asked 400 back: A's 300 and 100 of B's 200 are held."""
    w = wallet(("pi_a", 300), ("pi_b", 200))
    assert w.request_withdrawal(WITHDRAWAL, 400, ME, T0) == ((A, 300), (B, 100))
    w.collect_events()
    return w


def test_a_withdrawal_holds_its_lots_until_each_has_an_outcome() -> None:
    w = withdrawn()

    assert (w.available, w.withdrawal_pending) == (100, 400)
    w.record_refund(WITHDRAWAL, A, "re_a", WORKER, T0)

    assert recorded(w) == ["LotRefunded"]
    assert (w.withdrawal_pending, w.refunded) == (100, 300)
    assert not w.withdrawals[str(WITHDRAWAL)].settled


def test_a_refused_lot_gets_its_tokens_back_and_the_last_outcome_settles_the_withdrawal() -> None:
    w = withdrawn()
    w.record_refund(WITHDRAWAL, A, "re_a", WORKER, T0)
    w.collect_events()

    w.refuse_refund(WITHDRAWAL, B, "card expired", WORKER, T0)

    refused, settled = w.collect_events()
    assert isinstance(refused, Wallet.LotRefundRefused)
    assert isinstance(settled, Wallet.WithdrawalSettled)
    assert (settled.refunded, settled.refused) == (300, 100)
    assert remaining(w, A, B) == [0, 200]
    assert (w.available, w.withdrawal_pending, w.refunded) == (200, 0, 300)


def test_a_second_outcome_for_the_same_lot_is_refused() -> None:
    w = withdrawn()
    w.record_refund(WITHDRAWAL, A, "re_a", WORKER, T0)
    w.collect_events()

    with pytest.raises(OutcomeAlreadyRecorded):
        w.refuse_refund(WITHDRAWAL, A, "late", WORKER, T0)
    with pytest.raises(OutcomeAlreadyRecorded):
        w.record_refund(WITHDRAWAL, A, "re_again", WORKER, T0)
    assert recorded(w) == []


def test_a_refund_failing_later_returns_the_tokens_and_reduces_the_refunded_total() -> None:
    w = withdrawn()
    w.record_refund(WITHDRAWAL, A, "re_a", WORKER, T0)
    w.refuse_refund(WITHDRAWAL, B, "card expired", WORKER, T0)
    w.collect_events()

    assert w.fail_refund(WITHDRAWAL, B, STRIPE, T0) is False  # refused, never refunded
    assert recorded(w) == []
    assert w.fail_refund(WITHDRAWAL, A, STRIPE, T0) is True

    [event] = w.collect_events()
    assert isinstance(event, Wallet.RefundFailed)
    assert (event.tokens, event.refund_id) == (300, "re_a")
    assert remaining(w, A) == [300]
    assert (w.available, w.refunded) == (500, 0)
    assert w.fail_refund(WITHDRAWAL, A, STRIPE, T0) is False  # a failure counts once


# --- adjustments ---------------------------------------------------------------------------


def test_an_adjustment_credit_creates_an_adjustment_lot() -> None:
    w = wallet()
    w.credit_adjustment(ADJUSTMENT, 250, "  goodwill  ", Cause.admin("boss"), T0)

    [event] = w.collect_events()
    assert (event.actor, event.reason) == ("admin:boss", "goodwill")
    lot = w.lot(ids.adjustment_lot_id(ADJUSTMENT))
    assert (lot.source, lot.amount) == ("adjustment", 250)
    assert (w.available, w.adjusted_in) == (250, 250)


def test_an_adjustment_debit_consumes_fifo_and_is_refused_beyond_available() -> None:
    w = wallet(("pi_a", 100), ("pi_b", 100))

    w.debit_adjustment(ADJUSTMENT, 150, "chargeback fee", Cause.admin("boss"), T0)
    assert remaining(w, A, B) == [0, 50]
    assert (w.available, w.adjusted_out) == (50, 150)
    w.collect_events()

    with pytest.raises(InsufficientFunds):
        w.debit_adjustment(UUID(int=2), 51, "too much", Cause.admin("boss"), T0)
    with pytest.raises(InvalidField):
        w.debit_adjustment(UUID(int=3), 1, "   ", Cause.admin("boss"), T0)
    assert recorded(w) == []


# --- disputes ------------------------------------------------------------------------------


def disputed(stake: int, *, cents: int = 1_000) -> Wallet:
    """A wallet whose lot A (``cents`` tokens) is under dispute after staking ``stake``."""
    w = wallet(("pi_a", cents), ("pi_b", 200))
    if stake:
        w.lock_stake(CHALLENGE, stake, ME, T0)
    w.open_dispute("pi_a", "dp_1", STRIPE, T0)
    w.collect_events()
    return w


def test_a_dispute_freezes_what_remains_of_the_lot_and_debits_skip_it() -> None:
    w = disputed(400)

    assert (w.available, w.frozen) == (200, 600)
    w.debit_adjustment(ADJUSTMENT, 150, "fee", Cause.admin("boss"), T0)
    assert remaining(w, A, B) == [600, 50]
    with pytest.raises(InsufficientFunds):
        w.lock_stake(UUID(int=9), 51, ME, T0)


def test_tokens_returned_to_a_frozen_lot_arrive_frozen() -> None:
    w = disputed(400)

    w.return_holds(CHALLENGE, ME, T0)

    assert remaining(w, A) == [1_000]
    assert (w.available, w.frozen, w.staked) == (200, 1_000, 0)


def test_a_won_dispute_unfreezes_the_lot() -> None:
    w = disputed(400)

    w.win_dispute("dp_1", STRIPE, T0)

    assert (w.available, w.frozen) == (800, 0)
    assert w.lot(A).usable


def test_a_lost_dispute_smaller_than_the_remainder_takes_w_and_unfreezes_the_rest() -> None:
    w = disputed(200)  # A holds 800

    w.lose_dispute("dp_1", 500, STRIPE, T0)

    [event] = w.collect_events()
    assert (event.written_off, event.taken, event.loss, event.released) == (500, 500, 0, 300)
    assert remaining(w, A) == [300]
    assert (w.available, w.frozen, w.written_off_total) == (500, 0, 500)
    assert w.lot(A).usable and w.lot(A).loss == 0


def test_a_lost_dispute_beyond_the_remainder_books_the_rest_as_loss_recovered_first() -> None:
    w = disputed(700)  # A holds 300

    w.lose_dispute("dp_1", 500, STRIPE, T0)
    assert (w.lot(A).remaining, w.lot(A).loss, w.frozen, w.available) == (0, 200, 0, 200)

    w.return_holds(CHALLENGE, ME, T0)  # 700 come back: 200 recover the loss, 500 refill

    assert (w.lot(A).remaining, w.lot(A).loss) == (500, 0)
    assert (w.available, w.written_off_total) == (700, 500)


def test_a_lost_dispute_for_the_whole_amount_writes_the_lot_off() -> None:
    w = disputed(400, cents=1_000)  # A holds 600

    w.lose_dispute("dp_1", 5_000, STRIPE, T0)  # w is capped at the lot's 1,000

    [event] = w.collect_events()
    assert (event.written_off, event.taken, event.loss, event.lot_closed) == (1_000, 600, 400, True)
    assert w.lot(A).written_off and not w.lot(A).frozen
    assert (w.available, w.frozen, w.written_off_total) == (200, 0, 1_000)

    w.return_holds(CHALLENGE, ME, T0)  # all 400 only reduce the loss

    assert (w.lot(A).remaining, w.lot(A).loss, w.available) == (0, 0, 200)


def test_a_write_off_counts_tokens_at_the_lots_own_price() -> None:
    w = wallet()
    w.credit_deposit("pi_a", 2_000, 2, WINDOW, STRIPE, T0)  # 1,000 tokens at 2 cents
    w.open_dispute("pi_a", "dp_1", STRIPE, T0)

    w.lose_dispute("dp_1", 1_501, STRIPE, T0)  # 1,501 // 2 = 750 tokens

    assert (w.lot(A).remaining, w.written_off_total, w.available) == (250, 750, 250)


def test_a_dispute_arriving_before_its_deposit_freezes_the_lot_when_it_is_credited() -> None:
    w = wallet()

    w.open_dispute("pi_a", "dp_early", STRIPE, T0)
    assert recorded(w) == ["DisputeRecorded"]
    assert w.frozen == 0

    w.credit_deposit("pi_a", 700, 1, WINDOW, STRIPE, T0)

    assert recorded(w) == ["DepositCredited", "LotFrozen"]
    assert (w.available, w.frozen) == (0, 700)
    assert w.disputes == {"dp_early": str(A)} and w.early_disputes == {}


def test_a_dispute_lost_before_its_deposit_arrives_writes_the_deposit_off_when_credited():
    wallet = Wallet.open(uuid4(), Cause.stripe("evt"), T0)
    wallet.open_dispute("pi_early", "dp_1", Cause.stripe("evt"), T0)
    wallet.lose_dispute("dp_1", 400, Cause.stripe("evt"), T0)
    wallet.credit_deposit("pi_early", 1_000, 1, timedelta(days=90), Cause.stripe("evt"), T0)
    lot = next(iter(wallet.lots.values()))
    assert (lot.remaining, lot.frozen, lot.written_off) == (600, False, False)
    assert (wallet.available, wallet.frozen, wallet.written_off_total) == (600, 0, 400)


def test_a_dispute_won_before_its_deposit_arrives_leaves_the_deposit_usable():
    wallet = Wallet.open(uuid4(), Cause.stripe("evt"), T0)
    wallet.open_dispute("pi_early", "dp_1", Cause.stripe("evt"), T0)
    wallet.win_dispute("dp_1", Cause.stripe("evt"), T0)
    wallet.credit_deposit("pi_early", 1_000, 1, timedelta(days=90), Cause.stripe("evt"), T0)
    assert (wallet.available, wallet.frozen) == (1_000, 0)


def test_an_adjustment_is_marked_used_and_one_remembered_by_an_old_event_is_applied_once():
    """New adjustments return the marker a repeat is found by (``UsedId``: the application
    saves it with the wallet); an id the wallet remembers from a v1 event stays applied once."""
    wallet = Wallet.open(uuid4(), Cause.admin("a"), T0)
    credit, debit, old = uuid4(), uuid4(), uuid4()
    marker = wallet.credit_adjustment(credit, 500, "goodwill", Cause.admin("a"), T0)
    assert marker is not None and marker.id == ids.used_id(wallet.id, "adjustment", str(credit))
    marker = wallet.debit_adjustment(debit, 200, "correction", Cause.admin("a"), T0)
    assert marker is not None and marker.id == ids.used_id(wallet.id, "adjustment", str(debit))
    assert wallet.adjustments == {}, "new adjustment ids are not kept in the wallet's state"
    wallet._record(
        Wallet.AdjustmentCredited,
        Cause.admin("a"),
        T0,
        adjustment_id=old,
        lot_id=ids.adjustment_lot_id(old),
        tokens=50,
        reason="before markers",
        marked=False,
    )
    assert wallet.credit_adjustment(old, 50, "again", Cause.admin("a"), T0) is None
    assert wallet.debit_adjustment(old, 50, "again", Cause.admin("a"), T0) is None
    assert (wallet.available, wallet.adjusted_in, wallet.adjusted_out) == (350, 550, 200)


def test_a_lost_dispute_on_a_lot_refunded_outside_our_flow_is_wholly_a_platform_loss() -> None:
    w = wallet(("pi_a", 1_000), ("pi_b", 300))
    w.write_off(A, "re_1", "external_refund", 1_000, STRIPE, T0)
    w.collect_events()

    w.open_dispute("pi_a", "dp_1", STRIPE, T0)
    w.lose_dispute("dp_1", 1_000, STRIPE, T0)

    [frozen, written_off] = w.collect_events()
    assert isinstance(frozen, Wallet.LotFrozen) and frozen.tokens == 0
    assert isinstance(written_off, Wallet.LotWrittenOff)
    assert (written_off.written_off, written_off.taken, written_off.loss) == (1_000, 0, 1_000)
    assert (w.lot(A).remaining, w.lot(A).loss, w.lot(A).written_off) == (0, 1_000, True)
    assert (w.available, w.frozen, w.written_off_total) == (300, 0, 2_000)
    assert not w.lot(A).frozen and not w.disputes
    check_wallet(w)


def test_a_won_dispute_on_a_lot_refunded_outside_our_flow_changes_no_balance() -> None:
    w = wallet(("pi_a", 1_000))
    w.write_off(A, "re_1", "external_refund", 1_000, STRIPE, T0)
    w.open_dispute("pi_a", "dp_1", STRIPE, T0)

    w.win_dispute("dp_1", STRIPE, T0)

    assert (w.available, w.frozen, w.lot(A).remaining, w.lot(A).loss) == (0, 0, 0, 0)
    assert not w.lot(A).frozen and not w.disputes
