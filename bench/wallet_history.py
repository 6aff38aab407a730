"""Does a long history make a wallet slower? (≤ 1.3× a new wallet, warm and cold)

Builds, on PostgreSQL (``DATABASE_URL`` or the embedded server), one wallet with 100,000 past
events and one with a single deposit, then times the same command (an adjustment debit of one
token, a full load-decide-save) alternately on both. Printed as a ratio against the new
wallet measured in the same run; also the cold load (no cache: snapshot + tail) of each.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import database_settings, ledger_env
from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from application.ledger import Ledger
from bench.report import record
from domain import ids
from domain.aggregate import Cause
from domain.wallet import Wallet

HISTORY = int(os.environ.get("BENCH_HISTORY", "100000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))


def build_history(app: Ledger, user: uuid.UUID) -> None:
    """``HISTORY`` events: deposits (new lots) and many small debits consuming them."""
    cause = Cause.worker("bench")
    wallet = Wallet.open(user, cause, app.clock.now())
    n = 1
    deposit = 0
    while n < HISTORY:
        if wallet.available < 10:
            wallet.credit_deposit(
                f"pi_bench_{deposit}", 2_000, 1, app.settings.refund_window, cause, app.clock.now()
            )
            deposit += 1
        else:
            wallet.debit_adjustment(uuid.uuid4(), 1, "bench history", cause, app.clock.now())
        n += 1
        if n % 500 == 0:
            app.save(wallet)
    app.save(wallet)


def time_command(app: Ledger, user: uuid.UUID) -> float:
    started = time.perf_counter()
    app.adjust(user, "debit", 1, "bench", uuid.uuid4(), Cause.worker("bench"))
    return time.perf_counter() - started


def main() -> None:
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    try:
        upgrade(db)
        app = Ledger(ledger_env(db))
        old, new = uuid.uuid4(), uuid.uuid4()
        t0 = time.perf_counter()
        build_history(app, old)
        print(f"built a wallet with {HISTORY} events in {time.perf_counter() - t0:.1f}s")
        app.credit_deposit(new, "pi_bench_new", 1_000_000, Cause.worker("bench"))
        app.adjust(old, "credit", 1_000_000, "bench float", uuid.uuid4(), Cause.worker("bench"))
        for _ in range(20):  # warm up both
            time_command(app, old)
            time_command(app, new)
        olds, news = [], []
        for _ in range(SAMPLES):
            olds.append(time_command(app, old))
            news.append(time_command(app, new))
        m_old, m_new = statistics.median(olds), statistics.median(news)
        print(f"command on new wallet : median {m_new * 1e3:.2f} ms (baseline)")
        print(f"command on old wallet : median {m_old * 1e3:.2f} ms  ratio {m_old / m_new:.2f}")

        cold_old, cold_new = [], []
        for _ in range(20):
            fresh = Ledger(ledger_env(db))
            for user, out in ((old, cold_old), (new, cold_new)):
                started = time.perf_counter()
                fresh.repository.get(ids.wallet_id(user))
                out.append(time.perf_counter() - started)
            fresh.close()
        c_old, c_new = statistics.median(cold_old), statistics.median(cold_new)
        print(f"cold load, new wallet : median {c_new * 1e3:.2f} ms (baseline)")
        print(f"cold load, old wallet : median {c_old * 1e3:.2f} ms  ratio {c_old / c_new:.2f}")
        record(
            "history", events=HISTORY, warm=m_old / m_new, cold=c_old / c_new, new_ms=m_new * 1e3
        )
        verdict = "within" if m_old / m_new <= 1.3 else "OUTSIDE"
        print(f"target ± 30 %: {verdict}")
        app.close()
    finally:
        drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
