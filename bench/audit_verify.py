"""How fast does ``peerpush audit verify`` replay the stream? (issue 5: 1,000,000 events in
≤ 60 s, i.e. ≥ 16,000 events/s, under 1 GiB)

Builds, on PostgreSQL (``DATABASE_URL`` or the embedded server) in a fresh schema, the
realistic stream of ``bench/generator.py`` (users depositing,
challenges with reviews, penalties, settlements and cancellations, withdrawals, adjustments,
disputes; aggregates changed in memory and saved in batches): 1,000,000 events, or
``BENCH_EVENTS``. The projections catch up (so the audit has read models and a stored chain to
compare), then, in the same run:

(a) the raw rate: every event read in batches through a server-side cursor and decoded with
    the ledger's mapper, in one thread — the floor cost of any replay;
(b) ``python -m projections.audit verify --json`` as an auditor runs it, in a child process
    whose peak RSS is read with ``resource.getrusage(RUSAGE_CHILDREN)``.

Printed, not asserted. ``BENCH_SCHEMA=name`` reuses (and keeps) a schema a previous run built.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.database import database_settings, ledger_env  # noqa: E402
from adapters.migrations import upgrade  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from api.audit_cli import decoder  # noqa: E402
from application.ledger import Ledger  # noqa: E402
from bench.generator import generate  # noqa: E402
from bench.report import record  # noqa: E402
from projections.audit.stream import batches, has_table, head, snapshot  # noqa: E402
from projections.runner import Projector  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
REUSE = os.environ.get("BENCH_SCHEMA", "")
TARGET_SECONDS_PER_MILLION = 60
TARGET_RATE = 1_000_000 / TARGET_SECONDS_PER_MILLION
TARGET_RSS_MIB = 1024


def build(db: DatabaseSettings) -> None:
    upgrade(db)
    ledger = Ledger(ledger_env(db))
    try:
        t0 = time.perf_counter()
        world = generate(ledger, EVENTS)
        print(
            f"generated {world.saved:,} events ({len(world.wallets):,} wallets, "
            f"{world.saves:,} saves) in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        del world
        t0 = time.perf_counter()
        projector = Projector(db, ledger)
        try:
            applied = projector.catch_up()
        finally:
            projector.close()
        print(f"projections caught up: {applied:,} events in {time.perf_counter() - t0:.1f}s")
    finally:
        ledger.close()


def read_and_decode(db: DatabaseSettings) -> tuple[int, float]:
    """(a) Every event read through the audit's cursor and decoded, nothing else."""
    decode = decoder()
    t0 = time.perf_counter()
    count = 0
    with snapshot(db) as conn:
        for batch in batches(conn):
            for n in batch:
                decode(n)
            count += len(batch)
    return count, time.perf_counter() - t0


def audit(db: DatabaseSettings) -> tuple[dict[str, Any], float, float]:
    """(b) The auditor's command, in its own process: its report, seconds and peak RSS."""
    env = {**os.environ, "DATABASE_URL": db.url, "DB_SCHEMA": db.schema}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "projections.audit", "verify", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"audit verify failed:\n{done.stderr}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return json.loads(done.stdout), seconds, peak_mib


def main() -> None:
    base = database_settings()
    schema = REUSE or f"bench_{uuid.uuid4().hex[:8]}"
    db = DatabaseSettings.from_url(base.url, schema=schema)
    ensure_schema(base.url, schema)
    try:
        with snapshot(db) as conn:
            existing = head(conn) if REUSE and has_table(conn, "ledger_events") else 0
        if existing:
            print(f"reusing schema {schema!r}: {existing:,} positions")
        else:
            build(db)

        read, seconds = read_and_decode(db)
        raw = read / seconds
        print(f"(a) read + decode, one thread : {raw:>9,.0f} events/s  ({read:,} events)")

        report, seconds, peak = audit(db)
        events = int(report["events"])
        rate = events / seconds
        verdict = "clean" if report["clean"] else f"{len(report['findings'])} findings"
        print(
            f"(b) audit verify (whole CLI)  : {rate:>9,.0f} events/s  ({events:,} events in "
            f"{seconds:.1f}s, {verdict})"
        )
        print(f"(b)/(a)                       : {rate / raw:>9.0%}")
        print(f"peak RSS of audit verify      : {peak:>9,.0f} MiB")
        record("audit", events=events, rate=rate, raw=raw, seconds=seconds, peak_mib=peak)
        per_million = seconds * 1_000_000 / max(events, 1)
        met = rate >= TARGET_RATE and peak < TARGET_RSS_MIB
        print(
            f"target ≥ {TARGET_RATE:,.0f} events/s (1M in ≤ {TARGET_SECONDS_PER_MILLION} s; "
            f"here {per_million:.0f} s per million) and < {TARGET_RSS_MIB} MiB: "
            f"{'met' if met else 'MISSED'}"
        )
    finally:
        if not REUSE:
            drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
