"""The withdrawal worker against PostgreSQL and a local server speaking Stripe's API
(rules §2 withdrawals, §6): one refund per (withdrawal, lot), ever; crashes and lost answers
are resumed from what Stripe has; refusals and disputes give the tokens back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from adapters.migrations import upgrade
from adapters.payments import PgLocks
from adapters.persistence import DatabaseSettings
from adapters.stripe_gateway import StripeGateway
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.withdrawals import WithdrawalWorker
from domain.aggregate import Cause
from tests.fakes.stripe_server import API_KEY, FakeStripe

START = datetime(2026, 5, 1, 9, tzinfo=UTC)


@dataclass
class Stack:
    ledger: Ledger
    fake: FakeStripe
    db: DatabaseSettings

    def gateway(self, api_base: str | None = None) -> StripeGateway:
        # No client-side retries: each test decides what a lost answer looks like.
        return StripeGateway(
            api_key=API_KEY,
            webhook_secret=self.fake.webhook_secret,
            api_base=api_base or self.fake.url,
            max_network_retries=0,
            timeout=5,
        )

    def worker(self, api_base: str | None = None) -> WithdrawalWorker:
        return WithdrawalWorker(self.ledger, self.gateway(api_base), PgLocks(self.db))

    def deposit(self, user: UUID, tokens: int) -> str:
        price = self.ledger.settings.token_price_usd_cents
        intent = self.fake.payment_intent(tokens * price, {"user_id": str(user)})
        self.ledger.credit_deposit(user, intent, tokens * price, Cause.stripe(f"evt_{intent}"))
        return intent

    def withdraw(self, user: UUID, tokens: int) -> tuple[UUID, list[UUID]]:
        withdrawal_id = uuid4()
        held = self.ledger.request_withdrawal(user, withdrawal_id, tokens, Cause.user(user))
        return withdrawal_id, [lot for lot, _ in held.lots]

    def outcomes(self, user: UUID, withdrawal_id: UUID) -> dict[UUID, str]:
        hold = self.ledger.wallet_of(user).withdrawals[str(withdrawal_id)]
        return {UUID(lot): hold.outcome(UUID(lot)) for lot in hold.lots}

    def refunds_of(self, withdrawal_id: UUID) -> list[dict[str, object]]:
        return self.fake.refunds_for({"withdrawal_id": str(withdrawal_id)})


@pytest.fixture
def stack(pg_settings: DatabaseSettings) -> Iterator[Stack]:
    upgrade(pg_settings)
    env = pg_settings.eventsourcing_env(create_table=False)
    ledger = Ledger(env, clock=AdjustableClock(START, frozen=True))
    fake = FakeStripe().start()
    try:
        yield Stack(ledger, fake, pg_settings)
    finally:
        fake.stop()
        ledger.close()


def test_each_lot_is_refunded_once_by_several_workers_over_several_passes(stack: Stack) -> None:
    user = uuid4()
    price = stack.ledger.settings.token_price_usd_cents
    stack.deposit(user, 300)
    stack.deposit(user, 500)
    withdrawal_id, lots = stack.withdraw(user, 650)
    workers = [stack.worker() for _ in range(3)]

    threads = [
        threading.Thread(target=lambda w=w: [w.run_pass() for _ in range(3)]) for w in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.worker().run_pass()

    refunds = stack.refunds_of(withdrawal_id)
    assert sorted(r["amount"] for r in refunds) == [300 * price, 350 * price]
    assert len(stack.fake.refund_calls()) == 2
    assert {r["metadata"]["lot_id"] for r in refunds} == {str(lot) for lot in lots}
    assert {r["metadata"]["user_id"] for r in refunds} == {str(user)}
    keys = {call.idempotency_key for call in stack.fake.refund_calls()}
    assert keys == {f"{withdrawal_id}:{lot}" for lot in lots}
    assert set(stack.outcomes(user, withdrawal_id).values()) == {"refunded"}
    wallet = stack.ledger.wallet_of(user)
    assert wallet.withdrawals[str(withdrawal_id)].settled
    assert (wallet.refunded, wallet.withdrawal_pending, wallet.available) == (650, 0, 150)
    hold = wallet.withdrawals[str(withdrawal_id)]
    assert set(hold.refund_ids.values()) == {str(r["id"]) for r in refunds}


def test_a_crash_between_the_refund_call_and_its_record_is_resumed_without_a_second_refund(
    stack: Stack,
) -> None:
    user = uuid4()
    stack.deposit(user, 400)
    withdrawal_id, [lot] = stack.withdraw(user, 400)
    stack.fake.drop_refund_responses = 1  # Stripe refunds, the answer never arrives

    first = stack.worker().run_pass()
    assert first.unresolved == [(withdrawal_id, lot)]
    assert stack.outcomes(user, withdrawal_id) == {lot: "pending"}
    [made] = stack.refunds_of(withdrawal_id)

    resumed = stack.worker().run_pass()  # a fresh process: no memory of the first

    assert resumed.refunded == [(withdrawal_id, lot)]
    assert stack.refunds_of(withdrawal_id) == [made]
    assert len(stack.fake.refund_calls()) == 1  # found by metadata, not made again
    hold = stack.ledger.wallet_of(user).withdrawals[str(withdrawal_id)]
    assert hold.refund_ids[str(lot)] == made["id"]


def test_a_retry_that_finds_nothing_by_metadata_reuses_the_idempotency_key(stack: Stack) -> None:
    user = uuid4()
    stack.deposit(user, 250)
    withdrawal_id, [lot] = stack.withdraw(user, 250)
    stack.fake.drop_refund_responses = 1
    stack.fake.hide_refunds = True  # the look-up misses what Stripe made

    stack.worker().run_pass()
    stack.worker().run_pass()

    calls = stack.fake.refund_calls()
    assert len(calls) == 2 and calls[0].idempotency_key == calls[1].idempotency_key
    [made] = stack.refunds_of(withdrawal_id)  # Stripe replayed the first answer
    assert stack.outcomes(user, withdrawal_id) == {lot: "refunded"}
    hold = stack.ledger.wallet_of(user).withdrawals[str(withdrawal_id)]
    assert hold.refund_ids[str(lot)] == made["id"]


def test_a_refund_stripe_refuses_gives_the_tokens_back_to_the_lot(stack: Stack) -> None:
    user = uuid4()
    price = stack.ledger.settings.token_price_usd_cents
    intent = stack.deposit(user, 300)
    stack.fake.refund_outside(intent, 300 * price)  # already refunded from the Dashboard
    withdrawal_id, [lot] = stack.withdraw(user, 300)

    done = stack.worker().run_pass()

    assert done.refused == [(withdrawal_id, lot)]
    wallet = stack.ledger.wallet_of(user)
    assert (wallet.available, wallet.withdrawal_pending, wallet.refunded) == (300, 0, 0)
    assert wallet.withdrawals[str(withdrawal_id)].settled
    assert stack.refunds_of(withdrawal_id) == []


def test_a_refund_stripe_reports_failed_at_once_is_refused(stack: Stack) -> None:
    user = uuid4()
    stack.deposit(user, 120)
    withdrawal_id, [lot] = stack.withdraw(user, 120)
    stack.fake.refund_status = "failed"

    stack.worker().run_pass()

    assert stack.outcomes(user, withdrawal_id) == {lot: "refused"}
    assert stack.ledger.wallet_of(user).available == 120


def test_a_disputed_lot_gets_no_new_refund_call_and_is_refused_frozen(stack: Stack) -> None:
    user = uuid4()
    intent = stack.deposit(user, 500)
    withdrawal_id, [lot] = stack.withdraw(user, 200)
    stack.ledger.open_dispute(user, intent, "dp_1", Cause.stripe("evt_dispute"))

    stack.worker().run_pass()

    assert stack.fake.refund_calls() == []
    assert stack.outcomes(user, withdrawal_id) == {lot: "refused"}
    wallet = stack.ledger.wallet_of(user)
    assert (wallet.available, wallet.frozen, wallet.withdrawal_pending) == (0, 500, 0)


def test_a_disputed_lot_whose_refund_was_already_made_takes_that_refunds_outcome(
    stack: Stack,
) -> None:
    user = uuid4()
    intent = stack.deposit(user, 500)
    withdrawal_id, [lot] = stack.withdraw(user, 200)
    stack.fake.drop_refund_responses = 1
    stack.worker().run_pass()  # the refund is made; its answer is lost
    stack.ledger.open_dispute(user, intent, "dp_2", Cause.stripe("evt_dispute"))

    stack.worker().run_pass()

    assert len(stack.fake.refund_calls()) == 1
    assert stack.outcomes(user, withdrawal_id) == {lot: "refunded"}
    wallet = stack.ledger.wallet_of(user)
    assert (wallet.refunded, wallet.frozen, wallet.available) == (200, 300, 0)


def test_stripe_unreachable_leaves_the_lot_pending_for_a_later_pass(stack: Stack) -> None:
    user = uuid4()
    stack.deposit(user, 90)
    withdrawal_id, [lot] = stack.withdraw(user, 90)

    down = stack.worker(api_base="http://127.0.0.1:9").run_pass()

    assert down.unresolved == [(withdrawal_id, lot)]
    assert stack.outcomes(user, withdrawal_id) == {lot: "pending"}
    assert stack.worker().run_pass().refunded == [(withdrawal_id, lot)]


def test_only_one_copy_works_at_a_time(stack: Stack) -> None:
    user = uuid4()
    stack.deposit(user, 10)
    stack.withdraw(user, 10)
    locks = PgLocks(stack.db)

    with locks.try_hold("withdrawal-worker") as mine:
        assert mine
        skipped = stack.worker().run_pass()

    assert not skipped.worked
    assert stack.fake.refund_calls() == []
    assert stack.worker().run_pass().worked


def test_paused_payouts_hold_withdrawals_and_resume_them(stack: Stack) -> None:
    user = uuid4()
    stack.deposit(user, 1_000)
    withdrawal_id, _ = stack.withdraw(user, 400)

    paused = WithdrawalWorker(
        stack.ledger, stack.gateway(), PgLocks(stack.db), paused=lambda: True
    ).run_pass()
    assert paused.paused and stack.fake.refund_calls() == []
    assert set(stack.outcomes(user, withdrawal_id).values()) == {"pending"}

    stack.worker().run_pass()
    assert set(stack.outcomes(user, withdrawal_id).values()) == {"refunded"}
