"""How fast do the read models catch up with the stream? (issue 3: ≥ 10,000 events/s and
≥ 25 % of the raw read-and-decode rate)

Builds, on PostgreSQL (``DATABASE_URL`` or the embedded server) in a fresh schema migrated with
``adapters.migrations.upgrade`` and dropped at the end, a realistic stream of 200,000 events
(``BENCH_EVENTS`` shrinks it): thousands of users depositing, drafting, publishing and joining
challenges, submitting proofs, voting (rejections charge penalties), settling (fees, payouts,
forfeits), cancelling, withdrawing with refunds (some refused, some failing later), admin
adjustments and card disputes (frozen, won, lost). Aggregates are built in memory with the
domain methods, in simulated time, and saved with ``ledger.save(...)`` once per simulated day,
so generation takes seconds and positions follow business time day by day.

Then, in the same run, it measures (a) the raw rate: every notification read in pages with
``recorder.select_notifications`` and decoded with ``mapper.to_domain_event``; (b) catch-up:
``Projector(...).catch_up()`` from an empty read store (every projection). Printed, not
asserted. ``BENCH_PROFILE=1`` runs the catch-up under cProfile and prints the top functions.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import database_settings, ledger_env
from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from application.ledger import Ledger
from bench.generator import World, generate
from bench.report import record
from projections.runner import Projector

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
PAGE = 5_000  # the projector's batch size: both measurements read the same pages
TARGET_RATE = 10_000  # events/s
TARGET_RATIO = 0.25  # of the raw read-and-decode rate


def read_and_decode(ledger: Ledger) -> int:
    """(a) Every notification, read in pages and decoded: the ceiling for any projector."""
    recorder, to_event = ledger.recorder, ledger.mapper.to_domain_event
    start, count = 0, 0
    while batch := recorder.select_notifications(start, PAGE, inclusive_of_start=False):
        for notification in batch:
            to_event(notification)
        count += len(batch)
        start = batch[-1].id
    return count


def catch_up(db: DatabaseSettings, ledger: Ledger) -> tuple[int, int, Any]:
    """(b) All projections from an empty read store to the head."""
    projector = Projector(db, ledger, batch_size=PAGE)
    profiler = cProfile.Profile() if PROFILE else None
    try:
        if profiler:
            profiler.enable()
        applied = projector.catch_up()
        if profiler:
            profiler.disable()
        return applied, len(projector.projections), profiler
    finally:
        projector.close()


def check(db: DatabaseSettings, world: World) -> str:
    """A sanity line: the journal balances and the balances match the aggregates."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT position FROM journal_postings "
            "GROUP BY position HAVING sum(amount) <> 0) AS e"
        ).fetchone()
        available = conn.execute("SELECT sum(available) FROM wallet_balances").fetchone()
    expected = sum(w.available for w in world.wallets.values())
    same = available is not None and available[0] == expected
    return (
        f"check: {unbalanced[0] if unbalanced else '?'} journal entries not summing to 0; "
        f"Σ available {'=' if same else '≠'} the aggregates' ({expected:,} tokens)"
    )


def main() -> None:
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    try:
        upgrade(db)
        ledger = Ledger(ledger_env(db))
        t0 = time.perf_counter()
        world = generate(ledger, EVENTS)
        generated = time.perf_counter() - t0
        print(
            f"generated {world.saved:,} events ({len(world.wallets):,} wallets, "
            f"{world.saves} saves) in {generated:.1f}s"
        )

        t0 = time.perf_counter()
        read = read_and_decode(ledger)
        raw = read / (time.perf_counter() - t0)
        print(
            f"(a) read + decode     : {raw:>9,.0f} events/s  ({read:,} events, pages of {PAGE:,})"
        )

        t0 = time.perf_counter()
        applied, projections, profiler = catch_up(db, ledger)
        rate = applied / (time.perf_counter() - t0)
        ratio = rate / raw
        print(
            f"(b) projector catch-up: {rate:>9,.0f} events/s  "
            f"({applied:,} events, {projections} projections)"
        )
        print(f"(b)/(a)               : {ratio:>9.0%}")
        print(check(db, world))
        record("catchup", events=applied, rate=rate, raw=raw, ratio=ratio)
        met = rate >= TARGET_RATE and ratio >= TARGET_RATIO
        print(
            f"target ≥ {TARGET_RATE:,} events/s and ≥ {TARGET_RATIO:.0%} of raw: "
            f"{'met' if met else 'MISSED'}"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        elif not met:
            print(
                "hint: BENCH_PROFILE=1 BENCH_EVENTS=50000 python bench/projection_catchup.py "
                "prints where catch-up spends its time (per-row upserts, isinstance chains, "
                "fetches per batch)"
            )
        ledger.close()
    finally:
        drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
