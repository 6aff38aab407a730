"""Cash-outs against PostgreSQL and a local server speaking Stripe's API (rules §2, §6): the
Connect onboarding, one transfer per cash-out whatever crashes or lost answers happen, refused
transfers and reversals giving the tokens back, and payouts paused without losing anything."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from adapters.migrations import upgrade
from adapters.payments import PgCheckoutSessions, PgLocks
from adapters.payout_accounts import PgPayoutAccounts
from adapters.persistence import DatabaseSettings
from adapters.stripe_gateway import StripeGateway
from adapters.users import UserStore
from application.cashouts import Cashouts, CashoutWorker, ConnectEvents, transfer_of
from application.ledger import Ledger
from application.ports import AdjustableClock, RetryLater, Transfer
from application.stripe_events import StripeEvents
from domain.aggregate import Cause
from domain.errors import PayoutAccountNotEnabled
from tests.fakes.stripe_server import API_KEY, FakeStripe

START = datetime(2026, 5, 1, 9, tzinfo=UTC)
ADMIN = Cause.admin("00000000-0000-4000-8000-0000000000ad")


class Crash(BaseException):
    """The worker process dies (not an error anything catches)."""


@dataclass
class Stack:
    ledger: Ledger
    clock: AdjustableClock
    fake: FakeStripe
    db: DatabaseSettings
    users: UserStore
    accounts: PgPayoutAccounts

    def gateway(self, retries: int = 0) -> StripeGateway:
        return StripeGateway(
            api_key=API_KEY,
            webhook_secret=self.fake.webhook_secret,
            connect_webhook_secret="whsec_connect_fake",
            api_base=self.fake.url,
            max_network_retries=retries,
            timeout=5,
        )

    def worker(self, gateway: object | None = None, paused: bool = False) -> CashoutWorker:
        return CashoutWorker(
            self.ledger,
            gateway or self.gateway(),  # type: ignore[arg-type]
            self.accounts,
            PgLocks(self.db),
            paused=lambda: paused,
        )

    def user(self, *, enabled: bool = True) -> UUID:
        """A registered user with a linked Connect account (payouts enabled or not)."""
        record = self.users.register(
            f"{uuid4().hex[:10]}@example.com", uuid4().hex[:12], "pw-12345678"
        )
        gateway = self.gateway()
        account = gateway.create_account(
            user_id=str(record.id), idempotency_key=f"acct:{record.id}"
        )
        self.accounts.link_payout_account(str(record.id), account)
        if enabled:
            self.connect().handle(self.fake.enable_payouts(account))
        return record.id

    def connect(self) -> ConnectEvents:
        return ConnectEvents(self.ledger, self.accounts, livemode=False)

    def winnings(self, user: UUID, tokens: int) -> None:
        """An admin credit a week and a day old: cash-out-able."""
        self.ledger.adjust(user, "credit", tokens, "prize", uuid4(), ADMIN)
        self.clock.advance(timedelta(days=8))

    def cash_out(self, user: UUID, tokens: int) -> UUID:
        cashout_id = uuid4()
        Cashouts(self.ledger, self.accounts).request(user, cashout_id, tokens, Cause.user(user))
        return cashout_id

    def hold(self, user: UUID, cashout_id: UUID) -> object:
        return self.ledger.wallet_of(user).cashout(cashout_id)

    def transfers_of(self, cashout_id: UUID) -> list[dict[str, object]]:
        return [t for t in self.fake.transfers.values() if t["transfer_group"] == str(cashout_id)]


@pytest.fixture
def stack(pg_settings: DatabaseSettings) -> Iterator[Stack]:
    upgrade(pg_settings)
    env = pg_settings.eventsourcing_env(create_table=False)
    clock = AdjustableClock(START, frozen=True)
    ledger = Ledger(env, clock=clock)
    users = UserStore(pg_settings, pool_size=2)
    fake = FakeStripe().start()
    try:
        yield Stack(ledger, clock, fake, pg_settings, users, PgPayoutAccounts(users.pool))
    finally:
        fake.stop()
        users.close()
        ledger.close()


def test_onboarding_links_an_express_account_and_account_updated_enables_payouts(
    stack: Stack,
) -> None:
    user = stack.user(enabled=False)
    account = stack.accounts.payout_account(str(user))
    assert account is not None and not account.payouts_enabled
    link = stack.gateway().onboarding_link(
        account_id=account.account_id,
        refresh_url="https://app.test/payout/refresh",
        return_url="https://app.test/payout/done",
    )
    assert account.account_id in link

    assert stack.connect().handle(stack.fake.enable_payouts(account.account_id)) == (
        "payouts_enabled"
    )
    assert stack.accounts.payout_account(str(user)) == account.__class__(account.account_id, True)
    assert stack.connect().handle(stack.fake.enable_payouts(account.account_id, False)) == (
        "payouts_disabled"
    )


def test_a_connect_event_of_the_other_mode_is_ignored(stack: Stack) -> None:
    user = stack.user(enabled=False)
    account = stack.accounts.payout_account(str(user))
    assert account is not None
    event = {**stack.fake.enable_payouts(account.account_id), "livemode": True}

    assert stack.connect().handle(event) == "ignored_livemode"
    assert not stack.accounts.payout_account(str(user)).payouts_enabled  # type: ignore[union-attr]


def test_no_cash_out_without_an_account_that_can_receive_payouts(stack: Stack) -> None:
    user = stack.user(enabled=False)
    stack.winnings(user, 5_000)

    with pytest.raises(PayoutAccountNotEnabled):
        stack.cash_out(user, 1_000)
    assert stack.ledger.wallet_of(user).cashout_pending == 0


def test_a_cash_out_makes_one_transfer_named_by_our_ids_and_settles(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 2_000)

    done = stack.worker().run_pass()
    again = stack.worker().run_pass()

    assert done.settled == [cashout_id] and again.settled == []
    [call] = stack.fake.transfer_calls()
    assert call.idempotency_key == str(cashout_id)
    assert call.params["transfer_group"] == str(cashout_id)
    assert call.params["metadata"] == {"cashout_id": str(cashout_id), "user_id": str(user)}
    assert call.params["amount"] == "2000"
    wallet = stack.ledger.wallet_of(user)
    [transfer] = stack.transfers_of(cashout_id)
    assert wallet.cashout(cashout_id).transfer_id == transfer["id"]
    assert (wallet.available, wallet.cashout_pending, wallet.cashed_out) == (3_000, 0, 2_000)


def test_a_transfer_stripe_refuses_gives_the_tokens_back(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 2_000)
    stack.fake.transfer_error = "account_closed"

    done = stack.worker().run_pass()

    assert done.failed == [cashout_id]
    wallet = stack.ledger.wallet_of(user)
    assert wallet.cashout(cashout_id).reason == "account_closed"
    assert (wallet.available, wallet.cashout_pending, wallet.cashed_out) == (5_000, 0, 0)


def test_a_lost_answer_retried_with_the_same_key_transfers_once(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 1_500)
    stack.fake.drop_transfer_responses = 1

    done = stack.worker(stack.gateway(retries=2)).run_pass()

    assert done.settled == [cashout_id]
    assert len(stack.transfers_of(cashout_id)) == 1
    keys = {c.idempotency_key for c in stack.fake.transfer_calls()}
    assert keys == {str(cashout_id)} and len(stack.fake.transfer_calls()) == 2


def test_a_lost_answer_is_found_by_its_transfer_group_on_the_next_pass(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 1_500)
    stack.fake.drop_transfer_responses = 1

    first = stack.worker().run_pass()
    second = stack.worker().run_pass()

    assert first.unresolved == [cashout_id] and second.settled == [cashout_id]
    assert len(stack.fake.transfer_calls()) == 1 and len(stack.transfers_of(cashout_id)) == 1


class CrashAfterTransfer:
    """The worker dies right after Stripe made the transfer, before recording it."""

    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def __getattr__(self, name: str) -> object:
        return getattr(self.gateway, name)

    def transfer(self, **kwargs: object) -> Transfer:
        self.gateway.transfer(**kwargs)  # type: ignore[arg-type]
        raise Crash


def test_a_worker_killed_between_the_transfer_and_its_record_transfers_once(
    stack: Stack,
) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 1_000)

    with pytest.raises(Crash):
        stack.worker(CrashAfterTransfer(stack.gateway())).run_pass()
    assert stack.ledger.wallet_of(user).cashout(cashout_id).status == "pending"
    done = stack.worker().run_pass()  # a new process, after the restart

    assert done.settled == [cashout_id]
    assert len(stack.transfers_of(cashout_id)) == 1
    assert len(stack.fake.transfer_calls()) == 1


def test_a_reversed_transfer_returns_the_reversed_tokens_once(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 2_000)
    stack.worker().run_pass()
    [transfer] = stack.transfers_of(cashout_id)

    partial = stack.fake.reverse_transfer(str(transfer["id"]), 500)
    assert stack.connect().handle(partial) == "reversed"
    assert stack.connect().handle(partial) == "already_recorded"
    wallet = stack.ledger.wallet_of(user)
    assert (wallet.available, wallet.cashed_out) == (3_500, 1_500)

    rest = stack.fake.reverse_transfer(str(transfer["id"]))
    assert stack.connect().handle(rest) == "reversed"
    wallet = stack.ledger.wallet_of(user)
    assert (wallet.available, wallet.cashed_out) == (5_000, 0)
    assert len(wallet.cashout(cashout_id).reversals) == 2


def test_a_reversal_before_the_settlement_is_recorded_is_delivered_again(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 2_000)
    made = stack.gateway().transfer(
        account_id=stack.accounts.payout_account(str(user)).account_id,  # type: ignore[union-attr]
        cents=2_000,
        transfer_group=str(cashout_id),
        idempotency_key=str(cashout_id),
        metadata={"cashout_id": str(cashout_id), "user_id": str(user)},
    )

    with pytest.raises(RetryLater):
        stack.connect().handle(stack.fake.reverse_transfer(made.transfer_id, 100))


def test_paused_payouts_hold_the_work_and_resume_it(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 1_000)

    paused = stack.worker(paused=True).run_pass()
    assert paused.paused and stack.fake.transfer_calls() == []
    assert stack.ledger.wallet_of(user).cashout(cashout_id).status == "pending"

    assert stack.worker().run_pass().settled == [cashout_id]


def test_transfers_are_read_back_as_the_application_sees_them(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 1_000)
    stack.worker().run_pass()

    found = stack.gateway().find_transfer(transfer_group=str(cashout_id))
    assert found is not None and found.cents == 1_000
    assert found.metadata["cashout_id"] == str(cashout_id)
    assert stack.gateway().find_transfer(transfer_group=str(uuid4())) is None
    assert isinstance(transfer_of({"id": "tr_1", "metadata": {}}), Transfer)


def test_a_reversal_sent_to_the_platform_webhook_is_handled_the_same_way(stack: Stack) -> None:
    user = stack.user()
    stack.winnings(user, 5_000)
    cashout_id = stack.cash_out(user, 2_000)
    stack.worker().run_pass()
    [transfer] = stack.transfers_of(cashout_id)
    events = StripeEvents(
        stack.ledger, stack.gateway(), PgCheckoutSessions(stack.db), PgLocks(stack.db)
    )

    assert events.handle(stack.fake.reverse_transfer(str(transfer["id"]), 2_000)) == "reversed"
    assert stack.ledger.wallet_of(user).cashed_out == 0
