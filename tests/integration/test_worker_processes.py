"""``peerpush worker`` as the production runs it: processes of their own, sharing with the API
one business time (the test clock's offset in PostgreSQL) and one event store (rules §9).

The test process plays the API: it drafts challenges and requests withdrawals on a ledger whose
clock is the shared test clock, then advances that clock; the workers, separate processes,
see the advance and do the work. What is checked is what a user would notice: each challenge
settled once, each lot refunded once, a stopped worker exiting cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapters.persistence import DatabaseSettings
from adapters.test_clock import PgTestClock
from api.bootstrap import build_ledger
from application.ledger import Ledger
from domain.aggregate import Cause

ROOT = Path(__file__).resolve().parents[2]
SETTLED = "peerpush:Challenge.Settled"
REFUNDED = "peerpush:Wallet.LotRefunded"
WITHDRAWAL_SETTLED = "peerpush:Wallet.WithdrawalSettled"
STAKE = 100
WAIT_SECONDS = 60.0  # a generous bound on work the workers do in well under a second


@pytest.fixture
def clock(pg_settings: DatabaseSettings) -> Iterator[PgTestClock]:
    clock = PgTestClock(pg_settings)
    try:
        yield clock
    finally:
        clock.close()


@pytest.fixture
def ledger(pg_settings: DatabaseSettings, clock: PgTestClock) -> Iterator[Ledger]:
    ledger = build_ledger(pg_settings, clock=clock)  # migrates the schema, test_clock included
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def spawn(
    pg_settings: DatabaseSettings, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start ``peerpush worker WHICH`` on this test's schema; every copy is stopped at the end."""
    started: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": pg_settings.url,
        "DB_SCHEMA": pg_settings.schema,
        "DATA_DIR": str(tmp_path / "data"),
        "STORAGE_DIR": str(tmp_path / "proofs"),
        "STRIPE_MODE": "simulated",
        "WORKER_INTERVAL_SECONDS": "0.1",
        # Logs go to stderr, merged here into the pipe read only for the first line: only
        # warnings, so an unread pipe never fills and blocks the worker.
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }

    def start(which: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", which],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # the worker says so once its loops run
        assert "running" in line, line + process.stdout.read()
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()


def fund(ledger: Ledger, user: UUID, tokens: int) -> str:
    intent = f"pi_{user.hex}"
    price = ledger.settings.token_price_usd_cents
    ledger.credit_deposit(user, intent, tokens * price, Cause.stripe(f"evt_{user.hex}"))
    return intent


def challenge_of_two(ledger: Ledger, clock: PgTestClock) -> UUID:
    """A published challenge with two participants, due a few days from business now."""
    owner, joiner = uuid4(), uuid4()
    for user in (owner, joiner):
        fund(ledger, user, 1_000)
    starts = (clock.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    created = ledger.create_challenge(
        owner,
        Cause.user(owner),
        name="Walk every day",
        starts_at=starts,
        ends_at=starts + timedelta(days=1),
        entry_stake=STAKE,
    )
    ledger.publish(created.challenge_id, owner, Cause.user(owner))
    ledger.join(created.invite_code, joiner, "UTC", Cause.user(joiner))
    return created.challenge_id


def events(ledger: Ledger, topic: str) -> list[UUID]:
    """The originator of every event with ``topic``, in stream order."""
    return [UUID(str(n.originator_id)) for n in ledger._notifications((topic,))]


def wait_for(what: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not what():
        assert time.monotonic() < deadline, "the workers did not do the work"
        time.sleep(0.1)


def test_a_worker_process_settles_a_challenge_when_the_api_advances_the_shared_test_clock(
    ledger: Ledger, clock: PgTestClock, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    challenge_id = challenge_of_two(ledger, clock)
    worker = spawn("settlement")

    # Due in two days of business time and more than two days of wall clock: only the
    # advance, made by this process, can make the worker process settle it.
    clock.advance(timedelta(days=3, hours=1))
    wait_for(lambda: events(ledger, SETTLED) == [challenge_id])

    assert ledger.challenge(challenge_id).status == "settled"
    assert worker.poll() is None


def test_two_copies_of_every_worker_settle_and_refund_each_item_once(
    ledger: Ledger, clock: PgTestClock, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    challenges = [challenge_of_two(ledger, clock) for _ in range(3)]
    spawn("all")
    spawn("all")
    withdrawers = [uuid4() for _ in range(3)]
    for user in withdrawers:
        fund(ledger, user, 500)
        ledger.request_withdrawal(user, uuid4(), 200, Cause.user(user))
    clock.advance(timedelta(days=3, hours=1))

    wait_for(lambda: len(events(ledger, SETTLED)) >= len(challenges))
    wait_for(lambda: len(events(ledger, WITHDRAWAL_SETTLED)) >= len(withdrawers))
    # Both copies go on passing over the same work; a later pass must not add to it.
    for _ in range(2):
        time.sleep(0.5)
        assert sorted(events(ledger, SETTLED)) == sorted(challenges)
        refunded = events(ledger, REFUNDED)
        assert len(refunded) == len(set(refunded)) == len(withdrawers)
        assert len(events(ledger, WITHDRAWAL_SETTLED)) == len(withdrawers)


def test_sigterm_stops_a_worker_which_exits_0(
    ledger: Ledger, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    worker = spawn("all")

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=WAIT_SECONDS) == 0
    assert worker.stdout is not None
    assert "worker stopped" in worker.stdout.read()
