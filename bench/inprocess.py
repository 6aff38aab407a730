"""Commands in process on PostgreSQL, 16 concurrent callers, next to two baselines measured in
the same run (issue 10: group commit):

(a) the ledger: `bench.generator.CommandMix` (joins, deposits, drafts with their publish,
    adjustments, withdrawal requests) through the `Ledger`'s command methods, as the API
    calls them, with group commit (the default) and how many commands shared each commit;
(b) the same with ``GROUP_COMMIT=off`` (each command saved alone, as before group commit),
    and with ``TRUSTED_CACHE=off`` (each command reads its aggregates' new events first);
(c) a plain ``eventsourcing`` application with default settings: each command saves one new
    aggregate (one event, one transaction, the events table's lock included);
(d) ``pgbench`` with the same number of clients, each transaction one single-row INSERT, in
    a scratch database created and dropped here: the ceiling of a commit per row.

Each for ``BENCH_SECONDS``; printed as commands per second and the ratios. Then the round
trips of each kind of command (one at a time, the cache warm; `counting_round_trips` says
what counts), and what each costs when batched as it was in (a).
"""

from __future__ import annotations

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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.database import database_settings, ledger_env  # noqa: E402
from adapters.migrations import upgrade  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from application.ledger import Ledger  # noqa: E402
from bench.generator import CommandMix  # noqa: E402
from bench.report import record  # noqa: E402
from domain.aggregate import Cause  # noqa: E402
from domain.errors import DomainError  # noqa: E402

CALLERS = 16


class Note(Aggregate):
    """The plain application's aggregate: created, with one field, by one event."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class Notes(Application[uuid.UUID]):
    pass


def hammer(callers: int, seconds: float, step: Callable[[random.Random], int]) -> float:
    """Commands per second: ``callers`` threads calling ``step`` until the time is up."""
    done = [0] * callers
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def caller(n: int) -> None:
        rng = random.Random(n)
        try:
            while time.perf_counter() < deadline:
                done[n] += step(rng)
        except BaseException as e:  # a failure must show, not shrink the figure silently
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.perf_counter() - started)


@dataclass
class LedgerRun:
    """The ledger's rate, how many commands shared a commit, and each command's round trips."""

    rate: float
    per_commit: float
    round_trips: dict[str, float]


def ledger_rate(
    db: DatabaseSettings, seconds: float, *, group_commit: bool = True, trusted_cache: bool = True
) -> LedgerRun:
    upgrade(db)
    ledger = Ledger(ledger_env(db), group_commit=group_commit, trusted_cache=trusted_cache)
    try:
        mix = CommandMix(ledger)
        mix.prepare()
        batcher = ledger.group_commit
        if batcher is not None:
            batcher.batches = batcher.commands = 0
        rate = hammer(CALLERS, seconds, mix.step)
        per_commit = batcher.commands / max(batcher.batches, 1) if batcher else 1.0
        counted = group_commit and trusted_cache
        return LedgerRun(rate, per_commit, round_trips(mix) if counted else {})
    finally:
        ledger.close()


@contextmanager
def counting_round_trips(app: Ledger) -> Iterator[Counter[str]]:
    """Round trips to the server, counted where the ledger talks to it: a read of an
    aggregate's events or snapshot, of the stream's head or notifications, a snapshot written
    (one each), and a transaction of events (two: its pipelined statements, then COMMIT)."""
    counts: Counter[str] = Counter()
    patched: list[tuple[object, str]] = []

    def count(target: object, name: str, trips: int) -> None:
        real = getattr(target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts["trips"] += trips
            return real(*args, **kwargs)

        patched.append((target, name))
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
        for target, name in patched:
            delattr(target, name)


def round_trips(mix: CommandMix, samples: int = 20) -> dict[str, float]:
    """Round trips of each kind of command in the mix, one at a time, once the cache is warm
    (a command repeated ``samples`` times first, as a running process has)."""
    ledger, rng = mix.ledger, random.Random(7)

    def user() -> uuid.UUID:
        return rng.choice(mix.user_ids)

    kinds: dict[str, Callable[[], object]] = {
        "join": lambda: ledger.join(rng.choice(mix.challenges), user(), "UTC", Cause.user(user())),
        "deposit": lambda: ledger.credit_deposit(
            user(), f"pi_{rng.getrandbits(64):016x}", 1_000, Cause.user(user())
        ),
        "draft or publish": lambda: mix.draft_and_publish(user()),  # two commands
        "adjustment": lambda: ledger.adjust(user(), "credit", 5, "bench", uuid.uuid4(), mix.admin),
        "withdrawal": lambda: ledger.request_withdrawal(
            user(), uuid.uuid4(), 1, Cause.user(user())
        ),
    }
    found: dict[str, float] = {}

    def repeat(command: Callable[[], object]) -> None:
        for _ in range(samples):
            with suppress(DomainError):  # a refusal read and decided too
                command()

    for kind, command in kinds.items():
        repeat(command)  # warm: what a running process has
        with counting_round_trips(ledger) as counts:
            repeat(command)
        found[kind] = counts["trips"] / samples / (2 if kind == "draft or publish" else 1)
    return found


def plain_rate(db: DatabaseSettings, seconds: float) -> float:
    app = Notes(env=db.eventsourcing_env(create_table=True))
    try:

        def step(_: random.Random) -> int:
            app.save(Note(text="x"))
            return 1

        return hammer(CALLERS, seconds, step)
    finally:
        app.close()


def pgbench_rate(url: str, seconds: int) -> float:
    """pgbench's rate for autocommit single-row INSERTs, ``CALLERS`` clients."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = f"bench_pgbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(url, dbname=name, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int)")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("INSERT INTO t (v) VALUES (1);\n")
        args = ["pgbench", "-n", "-c", str(CALLERS), "-j", "2", "-T", str(seconds)]
        args += ["-f", script.name]
        for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
            if info.get(key):
                args += [flag, str(info[key])]
        env = {**os.environ}
        if info.get("password"):
            env["PGPASSWORD"] = str(info["password"])
        done = subprocess.run([*args, name], capture_output=True, text=True, check=True, env=env)
        os.unlink(script.name)
        found = re.search(r"tps = ([0-9.]+)", done.stdout)
        if not found:
            raise SystemExit(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
        return float(found.group(1))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def measure(seconds: int = 10) -> dict[str, Any]:
    base = database_settings()
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for schema in schemas:
        ensure_schema(base.url, schema)
    try:
        dbs = [DatabaseSettings.from_url(base.url, schema=schema) for schema in schemas]
        ours = ledger_rate(dbs[0], seconds)
        alone = ledger_rate(dbs[1], seconds, group_commit=False)
        plain = plain_rate(dbs[2], seconds)
        untrusted = ledger_rate(dbs[3], seconds, trusted_cache=False)
    finally:
        for schema in schemas:
            drop_schema(base.url, schema)
    raw = pgbench_rate(base.url, seconds)
    # One at a time a command's transaction is its own (2 round trips); batched, it shares
    # them with the other commands of its commit.
    batched = {k: v - 2 + 2 / ours.per_commit for k, v in ours.round_trips.items()}
    return {
        "ledger": ours.rate,
        "per_commit": ours.per_commit,
        "group_commit_off": alone.rate,
        "trusted_cache_off": untrusted.rate,
        "plain": plain,
        "pgbench": raw,
        "round_trips": ours.round_trips,
        "round_trips_batched": batched,
    }


if __name__ == "__main__":
    found = measure(int(os.environ.get("BENCH_SECONDS", "10")))
    record("inprocess", **found)
    print(
        f"ledger mix, {CALLERS} callers   : {found['ledger']:>8,.0f} commands/s, "
        f"{found['per_commit']:.1f} per commit\n"
        f"the same, GROUP_COMMIT=off: {found['group_commit_off']:>8,.0f} commands/s\n"
        f"the same, TRUSTED_CACHE=off: {found['trusted_cache_off']:>8,.0f} commands/s\n"
        f"plain eventsourcing app  : {found['plain']:>8,.0f} commands/s  "
        f"(ledger {found['ledger'] / found['plain']:.2f}×; target ≥ 3×)\n"
        f"pgbench single-row INSERT: {found['pgbench']:>8,.0f} tps  "
        f"(ledger {found['ledger'] / found['pgbench']:.0%}; target ≥ 30 %)\n"
        "round trips per command, one at a time (batched as above):"
    )
    for kind, trips in found["round_trips"].items():
        print(f"  {kind:<16} {trips:5.2f}  ({found['round_trips_batched'][kind]:.2f})")
