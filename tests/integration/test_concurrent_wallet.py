"""One wallet, many racing debits, on PostgreSQL: it never spends a token twice (rules §2).

Stakes and withdrawals both debit the wallet's lots; each save carries the wallet's next
version, so of two debits that read the same balance one conflicts and is re-run on the new
balance. Whatever the interleaving — threads of one process, or several processes each with
its own ``Ledger`` — exactly the affordable debits succeed and the rest are refused cleanly.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest

from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain import ids
from domain.aggregate import Cause
from domain.errors import DomainError, InsufficientFunds, NotRefundable
from tests.invariants import assert_ledger_invariants

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
STAKE = 700
AFFORDABLE = 10
RETRIES = 100
PROCESSES = 4
ATTEMPTS_PER_PROCESS = 5


@pytest.fixture
def env(pg_settings: DatabaseSettings) -> dict[str, str]:
    return pg_settings.eventsourcing_env(create_table=True, pool_size=5, max_overflow=25)


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[Ledger]:
    ledger = Ledger(
        env,
        clock=AdjustableClock(NOW, frozen=True),
        settings=LedgerSettings(command_retries=RETRIES),
    )
    try:
        yield ledger
    finally:
        ledger.close()


def open_challenges(app: Ledger, count: int) -> list[str]:
    """``count`` published challenges with an entry stake of STAKE; their invite codes."""
    codes = []
    for i in range(count):
        owner = uuid4()
        app.credit_deposit(owner, f"pi_owner_{owner.hex}", STAKE, Cause.stripe(f"evt_o{i}"))
        created = app.create_challenge(
            owner,
            Cause.user(owner),
            name=f"Challenge {i}",
            starts_at=NOW + timedelta(days=1),
            ends_at=NOW + timedelta(days=4),
            entry_stake=STAKE,
        )
        app.publish(created.challenge_id, owner, Cause.user(owner))
        codes.append(created.invite_code)
    return codes


def debit(app: Ledger, user: UUID, kind: str, target: str) -> str:
    """One racing debit: join the challenge ``target`` or withdraw STAKE tokens."""
    if kind == "join":
        app.join(target, user, "UTC", Cause.user(user))
    else:
        app.request_withdrawal(user, uuid5(user, target), STAKE, Cause.user(user))
    return kind


def assert_never_overdrawn(app: Ledger, user: UUID) -> None:
    """Replay the wallet version by version: no state of it ever spent what it did not hold."""
    wallet_id = ids.wallet_id(user)
    head = app.wallet_of(user).version
    for version in range(1, head + 1):
        wallet = app.repository.get(wallet_id, version=version)
        assert wallet.available >= 0, f"version {version}: available {wallet.available}"
        assert all(0 <= lot.remaining <= lot.amount for lot in wallet.lots.values())


def assert_spent_exactly_once(app: Ledger, user: UUID, succeeded: int) -> None:
    wallet = app.wallet_of(user)
    assert succeeded == AFFORDABLE
    assert wallet.available == 0
    assert wallet.staked + wallet.withdrawal_pending == AFFORDABLE * STAKE
    assert sum(lot.remaining for lot in wallet.lots.values()) == 0
    assert_never_overdrawn(app, user)
    assert_ledger_invariants(app)


def test_racing_stakes_and_withdrawals_on_one_wallet_spend_each_token_once(app: Ledger) -> None:
    user = uuid4()
    app.credit_deposit(user, "pi_racer", AFFORDABLE * STAKE, Cause.stripe("evt_racer"))
    codes = open_challenges(app, AFFORDABLE)
    attempts = [("join", code) for code in codes] + [
        ("withdraw", f"w{i}") for i in range(AFFORDABLE)
    ]
    barrier = threading.Barrier(len(attempts))
    outcomes: list[tuple[str, BaseException | None]] = []
    lock = threading.Lock()

    def attempt(kind: str, target: str) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            error: BaseException | None = None
            try:
                debit(app, user, kind, target)
            except BaseException as e:  # judged below, never swallowed
                error = e
            with lock:
                outcomes.append((kind, error))

        return run

    threads = [threading.Thread(target=attempt(k, t)) for k, t in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert len(outcomes) == len(attempts)
    for kind, error in outcomes:
        if error is not None:
            refusal = InsufficientFunds if kind == "join" else NotRefundable
            assert isinstance(error, refusal), repr(error)
    succeeded = sum(1 for _, error in outcomes if error is None)
    assert_spent_exactly_once(app, user, succeeded)
    wallet = app.wallet_of(user)
    joins_won = sum(1 for kind, error in outcomes if kind == "join" and error is None)
    assert wallet.staked == joins_won * STAKE
    assert len(wallet.withdrawals) == succeeded - joins_won


def debit_in_a_process(
    env: dict[str, str],
    user: UUID,
    attempts: list[tuple[str, str]],
    start: Any,
    results: Any,
) -> None:
    """A separate process (a second API server): its own Ledger on the same schema.

    Reports ``(kind, target, outcome)`` per attempt, then ``None`` when done.
    """
    try:
        app = Ledger(
            env,
            clock=AdjustableClock(NOW, frozen=True),
            settings=LedgerSettings(command_retries=RETRIES),
        )
    except Exception as e:
        start.abort()
        results.put(("start", "", f"unexpected {type(e).__name__}: {e}"))
        results.put(None)
        return
    try:
        start.wait(timeout=60)
        for kind, target in attempts:
            try:
                debit(app, user, kind, target)
                results.put((kind, target, "ok"))
            except DomainError as e:
                results.put((kind, target, type(e).__name__))
            except Exception as e:  # reported to the parent, which fails the test
                results.put((kind, target, f"unexpected {type(e).__name__}: {e}"))
    finally:
        app.close()
        results.put(None)


def test_racing_debits_from_several_processes_spend_each_token_once(
    app: Ledger, env: dict[str, str]
) -> None:
    user = uuid4()
    app.credit_deposit(user, "pi_racer", AFFORDABLE * STAKE, Cause.stripe("evt_racer"))
    total = PROCESSES * ATTEMPTS_PER_PROCESS
    codes = open_challenges(app, total // 2)
    attempts = [("join", code) for code in codes] + [
        ("withdraw", f"w{i}") for i in range(total - len(codes))
    ]
    # Every process gets a mix of joins and withdrawals.
    shares = [attempts[i::PROCESSES] for i in range(PROCESSES)]

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    # The tables exist already (as when migrations own them): processes starting together
    # must not race to create them.
    child_env = {
        **env,
        "CREATE_TABLE": "n",
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "2",
    }
    processes = [
        context.Process(target=debit_in_a_process, args=(child_env, user, share, start, results))
        for share in shares
    ]
    for process in processes:
        process.start()
    reported = []
    try:
        finished = 0
        while finished < PROCESSES:
            report = results.get(timeout=90)
            if report is None:
                finished += 1
            else:
                reported.append(report)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * PROCESSES

    refusals = {"join": "InsufficientFunds", "withdraw": "NotRefundable"}
    for kind, target, outcome in reported:
        assert outcome in ("ok", refusals.get(kind)), (kind, target, outcome)
    assert sorted((kind, target) for kind, target, _ in reported) == sorted(attempts)
    succeeded = sum(1 for *_, outcome in reported if outcome == "ok")
    assert_spent_exactly_once(app, user, succeeded)
