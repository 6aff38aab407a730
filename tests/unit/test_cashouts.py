"""Cash-outs in the wallet (rules §2): which lots may leave, the limits, and what comes back."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import pytest

from domain import ids
from domain.aggregate import Cause
from domain.cashouts import CashoutLimits
from domain.errors import (
    BelowMinimumCashout,
    NotCashoutable,
    OutcomeAlreadyRecorded,
    WalletClosed,
)
from domain.wallet import Wallet
from projections.audit.invariants import problems, totals
from tests.unit.test_wallet import STRIPE, T0, recorded, wallet

ADMIN = Cause.admin("00000000-0000-4000-8000-0000000000ad")
WORKER = Cause.worker("cashouts")
LIMITS = CashoutLimits(minimum=1_000, per_day=50_000, hold=timedelta(days=7))
ADJ1 = UUID("00000000-0000-4000-8000-00000000a001")
ADJ2 = UUID("00000000-0000-4000-8000-00000000a002")
C1 = UUID("00000000-0000-4000-8000-00000000c001")
C2 = UUID("00000000-0000-4000-8000-00000000c002")
WEEK = T0 + timedelta(days=7)


def credited(*amounts: int, deposit: int = 0) -> Wallet:
    """A wallet with a deposit and admin credits (adjustment lots), all made at T0."""
    w = wallet(("pi_a", deposit)) if deposit else wallet()
    for n, tokens in enumerate(amounts):
        w.credit_adjustment((ADJ1, ADJ2)[n], tokens, "prize", ADMIN, T0)
    w.collect_events()
    return w


def conserved(w: Wallet) -> None:
    assert problems([w], []) == []
    t = totals([w], [])
    assert t.credited == t.accounted


def request(w: Wallet, tokens: int, at: datetime = WEEK, cashout_id: UUID = C1) -> list[str]:
    w.request_cashout(cashout_id, tokens, 1, LIMITS, Cause.user(w.user_id), at)
    return recorded(w)


def test_a_cash_out_takes_only_payout_and_adjustment_lots_oldest_first() -> None:
    w = credited(600, 900, deposit=5_000)

    assert request(w, 1_200) == ["CashoutRequested"]

    hold = w.cashout(C1)
    assert hold.lots == [
        [str(ids.adjustment_lot_id(ADJ1)), 600],
        [str(ids.adjustment_lot_id(ADJ2)), 600],
    ]
    assert w.lot(ids.deposit_lot_id("pi_a")).remaining == 5_000
    assert (w.available, w.cashout_pending) == (5_300, 1_200)
    conserved(w)


def test_lots_younger_than_the_hold_cannot_leave_and_the_refusal_says_how_much_could() -> None:
    w = credited(2_000)

    with pytest.raises(NotCashoutable) as refused:
        request(w, 1_000, at=WEEK - timedelta(seconds=1))
    assert refused.value.cashoutable == 0
    assert recorded(w) == []
    assert request(w, 1_000, at=WEEK) == ["CashoutRequested"]


def test_card_money_is_never_cash_out_able() -> None:
    w = credited(deposit=10_000)

    with pytest.raises(NotCashoutable) as refused:
        request(w, 1_000)
    assert refused.value.cashoutable == 0


def test_a_cash_out_below_the_minimum_is_refused() -> None:
    w = credited(2_000)

    with pytest.raises(BelowMinimumCashout):
        request(w, 999)
    assert recorded(w) == []


def test_at_most_the_daily_cap_leaves_in_any_rolling_24_hours() -> None:
    w = credited(60_000)
    request(w, 49_000)

    with pytest.raises(NotCashoutable) as refused:
        request(w, 1_001, cashout_id=C2)
    assert refused.value.cashoutable == 1_000
    assert request(w, 1_001, at=WEEK + timedelta(hours=24), cashout_id=C2) == ["CashoutRequested"]


def test_a_failed_cash_out_does_not_count_against_the_cap_and_returns_its_tokens() -> None:
    w = credited(60_000)
    request(w, 50_000)
    w.fail_cashout(C1, "account_closed", WORKER, WEEK)

    assert recorded(w) == ["CashoutFailed"]
    assert (w.available, w.cashout_pending) == (60_000, 0)
    assert request(w, 50_000, cashout_id=C2) == ["CashoutRequested"]
    conserved(w)


def test_asking_again_with_the_same_id_holds_nothing_more() -> None:
    w = credited(3_000)
    request(w, 1_000)

    assert request(w, 1_000) == []
    assert w.cashout_pending == 1_000


def test_a_settled_cash_out_has_one_outcome() -> None:
    w = credited(3_000)
    request(w, 1_000)
    w.settle_cashout(C1, "tr_1", WORKER, WEEK)

    assert (w.cashout_pending, w.cashed_out) == (0, 1_000)
    with pytest.raises(OutcomeAlreadyRecorded):
        w.fail_cashout(C1, "late", WORKER, WEEK)
    with pytest.raises(OutcomeAlreadyRecorded):
        w.settle_cashout(C1, "tr_1", WORKER, WEEK)
    conserved(w)


def test_partial_reversals_refill_the_lots_in_the_order_they_were_taken() -> None:
    w = credited(600, 900)
    request(w, 1_500)
    w.settle_cashout(C1, "tr_1", WORKER, WEEK)
    w.collect_events()
    first, second = ids.adjustment_lot_id(ADJ1), ids.adjustment_lot_id(ADJ2)

    assert w.reverse_cashout(C1, "trr_1", 400, STRIPE, WEEK) == 400
    assert (w.lot(first).remaining, w.lot(second).remaining) == (400, 0)
    assert w.reverse_cashout(C1, "trr_2", 400, STRIPE, WEEK) == 400
    assert (w.lot(first).remaining, w.lot(second).remaining) == (600, 200)
    assert w.reverse_cashout(C1, "trr_2", 400, STRIPE, WEEK) == 0, "delivered twice"
    assert w.reverse_cashout(C1, "trr_3", 10_000, STRIPE, WEEK) == 700, "capped"
    assert (w.cashed_out, w.available) == (0, 1_500)
    assert recorded(w) == ["CashoutReversed"] * 3
    conserved(w)


def test_a_closed_wallet_cannot_cash_out() -> None:
    w = credited(3_000)
    w.close(ADMIN, T0)

    with pytest.raises(WalletClosed):
        request(w, 1_000)
