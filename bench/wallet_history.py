"""Does a long history make a wallet slower? (≤ 1.3× a new wallet, warm and cold)

Builds, on PostgreSQL (``DATABASE_URL`` or the embedded server), one wallet with 100,000 past
events spread over ``BENCH_HISTORY_DAYS`` (ten years for 100,000: about 27 events a day, a
very active user), and one with a single deposit, then times the same command (an adjustment
debit of one token, a full load-decide-save) alternately on both. The history is a seeded mix
of what a user's wallet sees: challenges joined (stakes) and settled (stakes back, payout
lots, forfeits), penalties, deposits when tokens run low, admin adjustments (credits and
debits) and refunds to the card. The ledger's clock moves forward as it is built, so most of
the history is older than the dispute window and old lot records are dropped as the ledger
does (rules §1): what stays is the last ``DISPUTE_WINDOW_DAYS`` of activity, as for any
wallet.

Printed as ratios against the new wallet measured in the same run: warm (aggregate cache) and
cold (the same command on a fresh ``Ledger``: snapshot + tail, nothing cached).
"""

from __future__ import annotations

import os
import pickle
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import database_settings, ledger_env
from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from application.ledger import Ledger
from application.ports import AdjustableClock
from bench.report import record
from domain.aggregate import Cause, LedgerAggregate
from domain.wallet import Wallet

HISTORY = int(os.environ.get("BENCH_HISTORY", "100000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))
# About 27 events a day whatever the history's length, so a quick run's wallet has the same
# recent activity (what its state keeps) as a full one's.
DAYS = int(os.environ.get("BENCH_HISTORY_DAYS", str(max(1, HISTORY * 3650 // 100_000))))
COLD = int(os.environ.get("BENCH_COLD", "20"))
SEED = 10


def build_history(app: Ledger, clock: AdjustableClock, user: uuid.UUID) -> Wallet:
    """``HISTORY`` events over ``DAYS`` days, ending now; saved 500 events at a time."""
    rng = random.Random(SEED)
    cause, admin, stripe = Cause.user(user), Cause.admin("bench"), Cause.stripe("bench")
    step = timedelta(days=DAYS) / HISTORY
    settings = app.settings
    wallet = Wallet.open(user, cause, clock.now())
    markers: list[LedgerAggregate] = []
    open_challenges: list[uuid.UUID] = []
    deposits = saved = 0
    while wallet.version < HISTORY:
        at = clock.advance(step)
        roll = rng.random()
        if wallet.available < 300:
            credited = wallet.credit_deposit(
                f"pi_bench_{deposits}",
                5_000,
                settings.token_price_usd_cents,
                settings.refund_window,
                stripe,
                at,
            )
            deposits += 1
            if credited:
                wallet.drop_old_lot_records(settings.dispute_window, stripe, at)
        elif roll < 0.80:  # a challenge joined, or one of the open ones settled
            if open_challenges and (len(open_challenges) >= 3 or roll < 0.40):
                challenge = open_challenges.pop(0)
                stake = wallet.stake_in(challenge)
                outcome = rng.random()
                share = (
                    0
                    if outcome < 0.25
                    else stake
                    if outcome < 0.75
                    else stake + rng.randint(1, stake)
                )
                wallet.settle_stake(challenge, share, cause, at)
            else:
                challenge = uuid.uuid4()
                wallet.lock_stake(challenge, rng.randint(20, 200), cause, at)
                open_challenges.append(challenge)
        elif roll < 0.83 and open_challenges:
            wallet.charge_penalty(open_challenges[0], uuid.uuid4(), rng.randint(1, 20), cause, at)
        elif roll < 0.95:
            adjustment = uuid.uuid4()
            if rng.random() < 0.3:
                marker = wallet.credit_adjustment(
                    adjustment, rng.randint(10, 100), "goodwill", admin, at
                )
                wallet.drop_old_lot_records(settings.dispute_window, admin, at)
            else:
                marker = wallet.debit_adjustment(adjustment, rng.randint(1, 20), "fee", admin, at)
            markers.extend([marker] if isinstance(marker, LedgerAggregate) else [])
        elif roll < 0.952:  # a refund to the card, made at once
            tokens = min(wallet.refundable(at), rng.randint(50, 500))
            if tokens > 0:
                withdrawal = uuid.uuid4()
                for lot, _ in wallet.request_withdrawal(withdrawal, tokens, cause, at):
                    wallet.record_refund(withdrawal, lot, f"re_{uuid.uuid4().hex}", stripe, at)
        if wallet.version - saved >= 500:
            app.save(wallet, *markers)
            markers.clear()
            saved = wallet.version
    app.save(wallet, *markers)
    return wallet


def time_command(app: Ledger, user: uuid.UUID) -> float:
    started = time.perf_counter()
    app.adjust(user, "debit", 1, "bench", uuid.uuid4(), Cause.worker("bench"))
    return time.perf_counter() - started


def describe(app: Ledger, user: uuid.UUID) -> str:
    wallet = app.wallet_of(user)
    size = len(pickle.dumps(wallet, pickle.HIGHEST_PROTOCOL))
    return (
        f"version {wallet.version}, {len(wallet.lots)} lots in state "
        f"({wallet.lots_dropped} dropped), {len(wallet.adjustments)} adjustment ids, "
        f"{len(wallet.deposits)} deposits, {len(wallet.withdrawals)} withdrawals; "
        f"pickled {size / 1024:.1f} KiB"
    )


def main() -> None:
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    try:
        upgrade(db)
        clock = AdjustableClock(datetime.now(UTC) - timedelta(days=DAYS))
        app = Ledger(ledger_env(db), clock=clock)
        old, new = uuid.uuid4(), uuid.uuid4()
        t0 = time.perf_counter()
        build_history(app, clock, old)
        print(f"built a wallet with {HISTORY} events in {time.perf_counter() - t0:.1f}s")
        app.credit_deposit(new, "pi_bench_new", 1_000_000, Cause.worker("bench"))
        app.adjust(old, "credit", 1_000_000, "bench float", uuid.uuid4(), Cause.worker("bench"))
        print(f"old wallet: {describe(app, old)}")
        print(f"new wallet: {describe(app, new)}")
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

        # Cold: the same command on a fresh ledger (nothing cached: the wallet is loaded from
        # its snapshot and the events after it), each wallet in its own fresh ledger.
        cold_old: list[float] = []
        cold_new: list[float] = []
        for _ in range(COLD):
            for user, out in ((old, cold_old), (new, cold_new)):
                fresh = Ledger(ledger_env(db), clock=clock)
                fresh.head()  # its connection opened, as a running process's is
                out.append(time_command(fresh, user))
                fresh.close()
        c_old, c_new = statistics.median(cold_old), statistics.median(cold_new)
        print(f"cold command, new wallet : median {c_new * 1e3:.2f} ms (baseline)")
        print(f"cold command, old wallet : median {c_old * 1e3:.2f} ms  ratio {c_old / c_new:.2f}")
        record(
            "history", events=HISTORY, warm=m_old / m_new, cold=c_old / c_new, new_ms=m_new * 1e3
        )
        worst = max(m_old / m_new, c_old / c_new)
        verdict = "within" if worst <= 1.3 else "OUTSIDE"
        print(f"target ± 30 %: {verdict}")
        app.close()
    finally:
        drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
