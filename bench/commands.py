"""How many commands a second does one process write? (issue 10: group commit)

On PostgreSQL (``DATABASE_URL`` or the embedded server), in one run and on the same server:

- pgbench: 16 clients doing raw single-row INSERTs (autocommit) into a scratch database
  created and dropped here — the ceiling of a commit per row;
- a plain ``eventsourcing`` application (default settings: no cache) doing one event per
  command from 16 threads — what the library gives;
- the ledger with ``GROUP_COMMIT`` off and on, 16 threads each, a realistic mix: deposits,
  joins by invite code, withdrawals, admin adjustments and new challenges, on 200 users and
  100 open challenges.

Prints commands per second, the ratios the issue asks for (group commit ≥ 3× the plain
application, ≥ 30 % of pgbench), commands per transaction, and the round trips of each
command (one command at a time; `counting_round_trips` says what counts). Each run lasts
``SECONDS``; the whole script about half a minute.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from adapters.database import database_settings
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain.aggregate import Cause
from domain.errors import DomainError

THREADS = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
USERS = 200
CHALLENGES = 100
PLAIN_AGGREGATES = 1_000
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
MIX = (("deposit", 35), ("join", 25), ("withdraw", 15), ("adjust", 15), ("create", 10))


# -- the ledger's mix -----------------------------------------------------------------------


class Platform:
    """200 funded users and 100 published challenges, and one random command of the mix."""

    def __init__(self, app: Ledger) -> None:
        self.app = app
        self.users = [uuid.uuid4() for _ in range(USERS)]
        self.codes: list[str] = []
        worker = Cause.worker("bench")
        for user in self.users:
            app.credit_deposit(user, f"pi_{user.hex}", 10_000_000, worker)
        for i in range(CHALLENGES):
            owner = self.users[i % USERS]
            created = app.create_challenge(owner, Cause.user(owner), **self.terms(f"Challenge {i}"))
            app.publish(created.challenge_id, owner, Cause.user(owner))
            self.codes.append(created.invite_code)

    @staticmethod
    def terms(name: str) -> dict[str, Any]:
        return dict(
            name=name,
            starts_at=NOW + timedelta(days=1),
            ends_at=NOW + timedelta(days=4),
            entry_stake=1,
            max_participants=USERS,
        )

    def run(self, kind: str, rng: random.Random) -> None:
        app, user = self.app, rng.choice(self.users)
        cause = Cause.user(user)
        if kind == "deposit":
            app.credit_deposit(user, f"pi_{uuid.uuid4().hex}", rng.randint(100, 5_000), cause)
        elif kind == "join":
            app.join(rng.choice(self.codes), user, "UTC", cause)
        elif kind == "withdraw":
            app.request_withdrawal(user, uuid.uuid4(), rng.randint(1, 50), cause)
        elif kind == "adjust":
            direction = rng.choice(("credit", "debit"))
            app.adjust(user, direction, rng.randint(1, 50), "bench", uuid.uuid4(), cause)
        else:
            app.create_challenge(user, cause, **self.terms("bench"))


def ledger_rate(db: DatabaseSettings, group_commit: bool) -> tuple[float, Ledger]:
    app = Ledger(
        db.eventsourcing_env(create_table=True, pool_size=THREADS, max_overflow=THREADS),
        clock=AdjustableClock(NOW, frozen=True),
        settings=LedgerSettings(command_retries=50),
        group_commit=group_commit,
    )
    platform = Platform(app)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]

    def command(rng: random.Random) -> None:
        # A refusal is a command too (a withdrawal above the balance, ...).
        with contextlib.suppress(DomainError):
            platform.run(rng.choice(kinds), rng)

    if app.group_commit is not None:
        app.group_commit.batches = app.group_commit.commands = 0
    return threaded_rate(command), app


# -- the plain eventsourcing application ----------------------------------------------------


class Tally(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    @event("Counted")
    def count_one(self) -> None:
        self.count += 1


class Plain(Application[uuid.UUID]):
    """The library's application, its default settings: one event per command."""


def plain_rate(db: DatabaseSettings) -> float:
    app = Plain(db.eventsourcing_env(create_table=True, pool_size=THREADS, max_overflow=THREADS))
    tallies = [Tally() for _ in range(PLAIN_AGGREGATES)]
    app.save(*tallies)
    ids = [t.id for t in tallies]

    def command(rng: random.Random) -> None:
        tally: Tally = app.repository.get(rng.choice(ids))
        tally.count_one()
        with contextlib.suppress(IntegrityError):  # two threads on one tally: one is refused
            app.save(tally)

    try:
        return threaded_rate(command)
    finally:
        app.close()


def threaded_rate(command: Callable[[random.Random], None]) -> float:
    """Commands per second of THREADS threads running ``command`` for SECONDS."""
    start = threading.Barrier(THREADS + 1)
    counts = [0] * THREADS
    deadline = [0.0]

    def run(i: int) -> None:
        rng = random.Random(i)
        start.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            command(rng)
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + SECONDS
    start.wait()
    for thread in threads:
        thread.join(timeout=SECONDS + 120)
    return sum(counts) / (time.perf_counter() - began)


# -- pgbench --------------------------------------------------------------------------------


def pgbench_rate(base: DatabaseSettings) -> float:
    """Raw single-row INSERTs per second, 16 clients, in a scratch database."""
    name = f"bench_inserts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        scratch = DatabaseSettings(base.host, base.port, base.user, base.password, name)
        with psycopg.connect(scratch.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE rows (id bigserial PRIMARY KEY, body text)")
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write("INSERT INTO rows (body) VALUES ('one row');\n")
            script.flush()
            env = {**os.environ, "PGPASSWORD": base.password or "trust"}
            host = ["-h", base.host, "-p", str(base.port), "-U", base.user]
            command = ["pgbench", *host, "-n", "-c", str(THREADS), "-j", "2"]
            command += ["-T", str(max(1, round(SECONDS))), "-f", script.name, name]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        found = re.search(r"tps = ([0-9.]+)", out.stdout)
        assert found, out.stdout
        return float(found.group(1))
    finally:
        with psycopg.connect(base.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- round trips ----------------------------------------------------------------------------


@contextmanager
def counting_round_trips(app: Ledger) -> Iterator[Counter[str]]:
    """Round trips to the server, counted where the ledger talks to it: a read of an
    aggregate's events or snapshot, of the stream's head or notifications, a snapshot written
    (one each), and a transaction of events (two: its pipelined statements, then COMMIT)."""
    counts: Counter[str] = Counter()
    patched: list[tuple[object, str, Any]] = []

    def count(target: object, name: str, trips: int) -> None:
        real = getattr(target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts["trips"] += trips
            return real(*args, **kwargs)

        patched.append((target, name, real))
        setattr(target, name, counted)

    for name in ("select_events", "max_notification_id", "select_notifications"):
        count(app.recorder, name, 1)
    count(app.recorder, "insert_events", 2)
    if app.snapshots is not None:
        count(app.snapshots.recorder, "select_events", 1)
        count(app.snapshots.recorder, "insert_events", 1)
    try:
        yield counts
    finally:
        for target, name, _ in patched:
            delattr(target, name)


def round_trips(app: Ledger) -> dict[str, float]:
    """Round trips of each command of the mix, one at a time, once the cache is warm."""
    platform = Platform.__new__(Platform)
    platform.app = app
    rng = random.Random(7)
    fresh = [uuid.uuid4() for _ in range(20)]
    for user in fresh:
        app.credit_deposit(user, f"pi_{user.hex}", 1_000_000, Cause.worker("bench"))
    platform.users = fresh
    platform.codes = []
    for _ in range(20):
        created = app.create_challenge(
            fresh[0], Cause.user(fresh[0]), **Platform.terms("round trips")
        )
        app.publish(created.challenge_id, fresh[0], Cause.user(fresh[0]))
        platform.codes.append(created.invite_code)
    found: dict[str, float] = {}
    for kind, _ in MIX:
        samples = 20
        for _ in range(samples):  # warm: what a running process does
            platform.run(kind, rng)
        with counting_round_trips(app) as counts:
            for _ in range(samples):
                platform.run(kind, rng)
        found[kind] = counts["trips"] / samples
    return found


def main() -> None:
    base = database_settings()
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for schema in schemas:
        ensure_schema(base.url, schema)
    try:
        raw = pgbench_rate(base)
        plain = plain_rate(DatabaseSettings.from_url(base.url, schema=schemas[0]))
        off, off_app = ledger_rate(DatabaseSettings.from_url(base.url, schema=schemas[1]), False)
        off_trips = round_trips(off_app)
        off_app.close()
        on, on_app = ledger_rate(DatabaseSettings.from_url(base.url, schema=schemas[2]), True)
        group = on_app.group_commit
        assert group is not None
        per_batch = group.commands / max(group.batches, 1)
        on_trips = round_trips(on_app)
        on_app.close()
    finally:
        for schema in schemas:
            drop_schema(base.url, schema)
    print(f"{THREADS} threads (clients), {SECONDS:.0f} s each")
    print(f"pgbench single-row INSERTs      : {raw:8.0f} /s")
    print(f"plain eventsourcing application : {plain:8.0f} commands/s")
    print(f"ledger, GROUP_COMMIT=off        : {off:8.0f} commands/s")
    print(f"ledger, GROUP_COMMIT=on         : {on:8.0f} commands/s, {per_batch:.1f} per commit")
    print(f"group commit / plain application: {on / plain:.2f}  (target >= 3)")
    print(f"group commit / pgbench          : {on / raw:.2f}  (target >= 0.30)")
    print(f"group commit / GROUP_COMMIT=off : {on / off:.2f}")
    # One at a time, a command's transaction is its own (2 round trips); batched, it shares
    # them with the other commands of its commit.
    print("round trips per command: off, on one at a time, on as batched above")
    for kind, _ in MIX:
        batched = on_trips[kind] - 2 + 2 / per_batch
        print(f"  {kind:9s} {off_trips[kind]:4.1f}  {on_trips[kind]:4.1f}  {batched:4.2f}")


if __name__ == "__main__":
    main()
