"""Commands in process on PostgreSQL, 16 concurrent callers, next to two baselines measured in
the same run:

(a) the ledger: `bench.generator.CommandMix` (joins, deposits, drafts with their publish,
    adjustments, withdrawal requests) through the `Ledger`'s command methods, as the API
    calls them;
(b) a plain ``eventsourcing`` application with default settings: each command saves one new
    aggregate (one event, one transaction, the events table's lock included);
(c) ``pgbench`` with the same number of clients, each transaction one single-row INSERT, in
    a scratch database created and dropped here.

Each for ``BENCH_SECONDS``; printed as commands per second and the ratios.
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
from collections.abc import Callable
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

CALLERS = 16


class Note(Aggregate):
    """The plain application's aggregate: created, with one field, by one event."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class Notes(Application):
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


def ledger_rate(db: DatabaseSettings, seconds: float) -> float:
    upgrade(db)
    ledger = Ledger(ledger_env(db))
    try:
        mix = CommandMix(ledger)
        mix.prepare()
        return hammer(CALLERS, seconds, mix.step)
    finally:
        ledger.close()


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
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for schema in schemas:
        ensure_schema(base.url, schema)
    try:
        ours = ledger_rate(DatabaseSettings.from_url(base.url, schema=schemas[0]), seconds)
        plain = plain_rate(DatabaseSettings.from_url(base.url, schema=schemas[1]), seconds)
    finally:
        for schema in schemas:
            drop_schema(base.url, schema)
    raw = pgbench_rate(base.url, seconds)
    return {"ledger": ours, "plain": plain, "pgbench": raw}


if __name__ == "__main__":
    found = measure(int(os.environ.get("BENCH_SECONDS", "10")))
    record("inprocess", **found)
    print(
        f"ledger mix, {CALLERS} callers   : {found['ledger']:>8,.0f} commands/s\n"
        f"plain eventsourcing app  : {found['plain']:>8,.0f} commands/s  "
        f"(ledger {found['ledger'] / found['plain']:.2f}×; target ≥ 3×)\n"
        f"pgbench single-row INSERT: {found['pgbench']:>8,.0f} tps  "
        f"(ledger {found['ledger'] / found['pgbench']:.0%}; target ≥ 30 %)"
    )
