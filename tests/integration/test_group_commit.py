"""Group commit on PostgreSQL: commands batched into one transaction keep every promise a
command saved alone keeps (rules §2: a token is spent once; rules §8: a refused or failed
command changes nothing; nothing is acknowledged before its commit).

Batches are formed on purpose: the first is held inside its insert while the commands under
test queue up behind it (`tests.batching.HeldWriter`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain.aggregate import Cause
from domain.errors import NotRefundable
from tests.batching import HeldWriter, in_threads, joined
from tests.invariants import assert_ledger_invariants

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
STAKE = 700
AFFORDABLE = 5
RACERS = 12


@pytest.fixture
def env(pg_settings: DatabaseSettings) -> dict[str, str]:
    return pg_settings.eventsourcing_env(create_table=True, pool_size=5, max_overflow=20)


def make_ledger(env: dict[str, str]) -> Ledger:
    return Ledger(
        env, clock=AdjustableClock(NOW, frozen=True), settings=LedgerSettings(command_retries=60)
    )


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[Ledger]:
    ledger = make_ledger(env)
    try:
        yield ledger
    finally:
        ledger.close()


def fund(app: Ledger, user: UUID, tokens: int) -> None:
    app.credit_deposit(user, f"pi_{uuid4().hex}", tokens, Cause.stripe(f"evt_{uuid4().hex}"))


def batch_behind_a_held_one(
    app: Ledger, calls: list[Callable[[], Any]], before_release: Callable[[], None] = lambda: None
) -> tuple[HeldWriter, list[Any]]:
    """Run ``calls`` so that their saves queue behind a held batch (a deposit to a bystander)
    and are written together; (result, error) of each."""
    assert app.group_commit is not None
    held = HeldWriter(app.group_commit)
    bystander = held.hold(lambda: fund(app, uuid4(), 1))
    threads, outcomes = in_threads(calls)
    held.wait_queued(len(calls))
    before_release()
    held.released.set()
    joined(bystander + threads)
    return held, outcomes


def test_withdrawals_batched_together_from_one_wallet_spend_each_token_once(app: Ledger) -> None:
    user = uuid4()
    fund(app, user, AFFORDABLE * STAKE)
    others = [uuid4() for _ in range(3)]
    calls = [
        lambda: app.request_withdrawal(user, uuid4(), STAKE, Cause.user(user))
        for _ in range(RACERS)
    ] + [lambda u=u: fund(app, u, 50) for u in others]
    held, outcomes = batch_behind_a_held_one(app, calls)
    # All twelve decided on the same balance and were queued for one batch: one of them is
    # written with the other wallets' deposits, the rest conflict and re-run on fresh state.
    assert held.after[0] == 1 + len(others)
    assert all(error is None for _, error in outcomes[RACERS:])
    assert all(app.wallet_of(u).available == 50 for u in others)
    outcomes = outcomes[:RACERS]
    errors = [error for _, error in outcomes]
    assert all(e is None or isinstance(e, NotRefundable) for e in errors), errors
    assert sum(e is None for e in errors) == AFFORDABLE
    wallet = app.wallet_of(user)
    assert wallet.available == 0 and wallet.withdrawal_pending == AFFORDABLE * STAKE
    assert sum(lot.remaining for lot in wallet.lots.values()) == 0
    positions = [done.position for done, error in outcomes if error is None]
    assert len(set(positions)) == AFFORDABLE  # each its own position
    assert_ledger_invariants(app)


def test_a_command_conflicting_with_another_process_retries_and_the_rest_of_its_batch_lands(
    app: Ledger, env: dict[str, str]
) -> None:
    contested, quiet = uuid4(), uuid4()
    fund(app, contested, 100)
    fund(app, quiet, 100)
    other_process = make_ledger(env)
    try:
        held, outcomes = batch_behind_a_held_one(
            app,
            [lambda: fund(app, contested, 10), lambda: fund(app, quiet, 20)],
            # Both commands decided; another process now changes the contested wallet.
            before_release=lambda: fund(other_process, contested, 1_000),
        )
    finally:
        other_process.close()
    assert [error for _, error in outcomes] == [None, None]
    assert held.after[:2] == [2, 1]  # the batch, then without the command that conflicted
    assert app.wallet_of(contested).available == 1_110  # re-run on the fresh balance
    assert app.wallet_of(quiet).available == 120
    assert_ledger_invariants(app)


def test_a_failure_inside_the_batch_transaction_fails_all_its_commands_and_commits_none(
    app: Ledger, pg_settings: DatabaseSettings
) -> None:
    users = [uuid4() for _ in range(3)]
    for user in users:
        fund(app, user, 500)
    head = app.head()
    table = f'"{pg_settings.schema}".ledger_events'

    def break_the_next_insert() -> None:
        with psycopg.connect(pg_settings.url, autocommit=True) as conn:
            conn.execute(
                f"""CREATE FUNCTION "{pg_settings.schema}".refuse_events() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"""
            )
            conn.execute(
                f"""CREATE TRIGGER refuse_events BEFORE INSERT ON {table} FOR EACH ROW
                EXECUTE FUNCTION "{pg_settings.schema}".refuse_events()"""
            )

    calls = [lambda u=u: app.request_withdrawal(u, uuid4(), 100, Cause.user(u)) for u in users]
    # The held bystanders' own inserts fail too: they are written after the trigger exists.
    held, outcomes = batch_behind_a_held_one(app, calls, before_release=break_the_next_insert)
    with psycopg.connect(pg_settings.url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER refuse_events ON {table}")
    assert held.after[0] == len(users)
    assert all(done is None and "disk full" in str(error) for done, error in outcomes)
    assert app.head() == head  # nothing committed, nothing acknowledged
    for user in users:  # and nothing the batch decided reached the cache
        wallet = app.wallet_of(user)
        assert wallet.available == 500 and not wallet.withdrawals
    done = app.request_withdrawal(users[0], uuid4(), 100, Cause.user(users[0]))
    assert done.position > head and app.wallet_of(users[0]).available == 400
    assert_ledger_invariants(app)


def test_the_switch_turns_group_commit_off(env: dict[str, str]) -> None:
    ledger = Ledger(env, clock=AdjustableClock(NOW, frozen=True), group_commit=False)
    try:
        user = uuid4()
        fund(ledger, user, 300)
        assert ledger.group_commit is None
        assert ledger.wallet_of(user).available == 300
    finally:
        ledger.close()
