"""``peerpush reconcile`` against PostgreSQL and the local Stripe-speaking server (rules §6):
charges, refunds, transfers and disputes matched with the ledger by Stripe id, with planted
mismatches of every kind reported and a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from uuid import uuid4

import pytest

from adapters.migrations import upgrade
from adapters.payments import PgLocks
from adapters.payout_accounts import PgPayoutAccounts
from adapters.persistence import DatabaseSettings
from adapters.users import UserStore
from api import cli
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.withdrawals import WithdrawalWorker
from domain.aggregate import Cause
from tests.fakes.stripe_server import API_KEY, FakeStripe
from tests.integration.test_stripe_cashouts import START, Stack

SINCE = "2026-01-01"


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


def deposit(stack: Stack, user: object, cents: int, credited: int | None = None) -> str:
    intent = stack.fake.payment_intent(cents, {"user_id": str(user)})
    if credited != 0:
        stack.ledger.credit_deposit(user, intent, credited or cents, Cause.stripe(f"evt_{intent}"))  # type: ignore[arg-type]
    return intent


def reconcile(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object]]:
    for name, value in {
        "ENV": "development",
        "STRIPE_MODE": "stripe",
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": stack.fake.url,
        "DATABASE_URL": stack.db.url,
        "DB_SCHEMA": stack.db.schema,
    }.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["reconcile", "--since", SINCE, "--json"])
    return code, json.loads(capsys.readouterr().out)


def everything_matching(stack: Stack) -> dict[str, str]:
    """A deposit refunded once, a cash-out partly reversed, a dispute lost: all recorded."""
    user = stack.user()
    paid = deposit(stack, user, 5_000)
    withdrawal_id = uuid4()
    stack.ledger.request_withdrawal(user, withdrawal_id, 1_000, Cause.user(user))
    WithdrawalWorker(stack.ledger, stack.gateway(), PgLocks(stack.db)).run_pass()
    stack.winnings(user, 3_000)
    cashout_id = stack.cash_out(user, 2_000)
    stack.worker().run_pass()
    [transfer] = stack.transfers_of(cashout_id)
    stack.connect().handle(stack.fake.reverse_transfer(str(transfer["id"]), 500))
    disputed = deposit(stack, user, 700)
    opened = stack.fake.dispute(disputed)
    dispute_id = opened["data"]["object"]["id"]
    stack.ledger.open_dispute(user, disputed, dispute_id, Cause.stripe("evt_dp"))
    stack.fake.close_dispute(dispute_id, "lost")
    stack.ledger.close_dispute(user, dispute_id, False, 700, Cause.stripe("evt_dp_closed"))
    return {"user": str(user), "paid": paid, "transfer": str(transfer["id"])}


def test_a_ledger_that_matches_stripe_reconciles_with_exit_0(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    everything_matching(stack)

    code, report = reconcile(stack, monkeypatch, capsys)

    assert report["mismatches"] == [] and code == 0
    matched = report["matched"]
    assert matched["charges"] == {"count": 2, "cents": 5_700}  # type: ignore[index]
    assert matched["refunds"] == {"count": 1, "cents": 1_000}  # type: ignore[index]
    assert matched["transfers"] == {"count": 1, "cents": 1_500}  # type: ignore[index]
    assert matched["disputes"] == {"count": 1, "cents": 700}  # type: ignore[index]


def test_planted_mismatches_are_each_reported_and_exit_non_zero(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    known = everything_matching(stack)
    user = stack.user()
    unrecorded = deposit(stack, user, 900, credited=0)  # paid, never credited
    short = deposit(stack, user, 800, credited=600)  # credited for less than was paid
    outside = stack.fake._create_refund({"payment_intent": known["paid"], "amount": 300})
    withdrawal_id = uuid4()
    held = stack.ledger.request_withdrawal(user, withdrawal_id, 100, Cause.user(user))
    stack.ledger.record_refund(  # a refund the ledger believes in, which Stripe never made
        user, withdrawal_id, held.lots[0][0], "re_ghost", Cause.worker("withdrawals")
    )
    stack.fake.transfers[known["transfer"]]["amount_reversed"] += 100  # reversed, unheard of

    code, report = reconcile(stack, monkeypatch, capsys)

    assert code == 1
    found = {(m["kind"], m["stripe_id"], m["problem"]) for m in report["mismatches"]}  # type: ignore[attr-defined,index]
    assert found == {
        ("charges", unrecorded, "missing_in_ledger"),
        ("charges", short, "amount_differs"),
        ("refunds", outside["id"], "missing_in_ledger"),
        ("refunds", "re_ghost", "missing_at_stripe"),
        ("transfers", known["transfer"], "amount_differs"),
    }


def test_the_text_report_names_each_mismatch(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user = stack.user()
    unrecorded = deposit(stack, user, 900, credited=0)
    for name, value in {
        "ENV": "development",
        "STRIPE_MODE": "stripe",
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": stack.fake.url,
        "DATABASE_URL": stack.db.url,
        "DB_SCHEMA": stack.db.schema,
    }.items():
        monkeypatch.setenv(name, value)

    assert cli.main(["reconcile", "--since", SINCE]) == 1
    out = capsys.readouterr().out
    assert "missing_in_ledger" in out and unrecorded in out
