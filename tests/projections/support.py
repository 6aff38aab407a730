"""What the read-model tests share: a projected schema, table dumps, a fast event generator,
and the comparison of every read model with the aggregates it is built from (rules §2, §5, §8).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import psycopg
from psycopg.rows import dict_row

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from domain.balances import FIGURES
from domain.challenge import SETTLED
from domain.wallet import Wallet
from projections.runner import Projector
from tests.invariants import challenges, wallets

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
NS = UUID("5c1f3e0a-8d4b-4a57-9e0c-2b7d6a1f4e83")
ADMIN = uuid5(NS, "admin")
NOT_READ_MODELS = ("ledger_events", "ledger_snapshots", "alembic_version")


@dataclass
class Projected:
    """A migrated schema, a ledger writing to it and a projector reading from it."""

    db: DatabaseSettings
    ledger: Ledger
    projector: Projector
    clock: AdjustableClock

    def close(self) -> None:
        self.projector.close()
        self.ledger.close()


def open_projected(
    db: DatabaseSettings, *, batch_size: int = 5_000, pool_size: int = 5
) -> Projected:
    upgrade(db)
    clock = AdjustableClock(START, frozen=True)
    env = db.eventsourcing_env(create_table=False, pool_size=pool_size, max_overflow=pool_size)
    ledger = Ledger(env, clock=clock)
    return Projected(db, ledger, Projector(db, ledger, batch_size=batch_size), clock)


@contextmanager
def connect(db: DatabaseSettings) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(db.url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        yield conn


def read_model_tables(conn: psycopg.Connection[dict[str, Any]], schema: str) -> list[str]:
    """Every table of the schema that a projection writes (whatever projections exist)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
        (schema,),
    ).fetchall()
    return [
        r["table_name"]
        for r in rows
        if r["table_name"] not in (*NOT_READ_MODELS, "projection_positions")
    ]


def dump(db: DatabaseSettings) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows, in a deterministic order (by every column)."""
    with connect(db) as conn:
        tables = read_model_tables(conn, db.schema)
        assert "wallet_balances" in tables and "journal_postings" in tables, tables
        dumped: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            dumped[table] = sorted((tuple(r.values()) for r in rows), key=repr)
        return dumped


def positions(db: DatabaseSettings) -> dict[str, int]:
    with connect(db) as conn:
        rows = conn.execute("SELECT name, position FROM projection_positions").fetchall()
    return {r["name"]: r["position"] for r in rows}


def assert_same_tables(
    got: dict[str, list[tuple[Any, ...]]], expected: dict[str, list[tuple[Any, ...]]]
) -> None:
    assert got.keys() == expected.keys()
    for table in expected:
        assert len(got[table]) == len(expected[table]), f"{table}: row counts differ"
        assert got[table] == expected[table], f"{table}: rows differ"


def bulk_wallet_events(
    ledger: Ledger, *, wallets_count: int, events_each: int, per_save: int = 10, tag: str = ""
) -> list[UUID]:
    """Many wallet events fast: aggregates changed in memory and saved several at a time.

    Deposits, adjustment credits and debits, a stake and a withdrawal per wallet, so every
    wallet table and the journal get rows. Fewer than 100 events per wallet (the snapshot
    interval) keep the library from reloading each wallet to snapshot it. Returns the users.
    """
    cause = Cause.admin(ADMIN, f"bulk{tag}")
    at = ledger.clock.now()
    price, window = ledger.settings.token_price_usd_cents, ledger.settings.refund_window
    users = [uuid4() for _ in range(wallets_count)]
    batch: list[Wallet] = []
    for n, user in enumerate(users):
        wallet = Wallet.open(user, cause, at)
        for k in range(events_each - 1):
            if k % 3 == 0:
                wallet.credit_deposit(f"pi_{tag}{n}_{k}", 300 + k, price, window, cause, at)
            elif k % 3 == 1:
                wallet.credit_adjustment(uuid4(), 7, "bulk credit", cause, at)
            elif k % 30 == 2:
                wallet.lock_stake(uuid4(), 50, cause, at)
            elif k % 30 == 5:
                wallet.request_withdrawal(uuid4(), 100, cause, at)
            else:
                wallet.debit_adjustment(uuid4(), 3, "bulk debit", cause, at)
        batch.append(wallet)
        if len(batch) == per_save:
            ledger.save(*batch)
            batch = []
    if batch:
        ledger.save(*batch)
    return users


# -- the read models against the aggregates ---------------------------------------------------

BALANCES = (*FIGURES, "closed")


def assert_read_models_match_domain(ledger: Ledger, db: DatabaseSettings) -> None:
    """Every read model says what the aggregates say (the projector must be caught up)."""
    ws = {w.id: w for w in wallets(ledger)}
    cs = {c.id: c for c in challenges(ledger)}
    with connect(db) as conn:
        rows = {
            t: conn.execute(f"SELECT * FROM {t}").fetchall()
            for t in (
                "wallet_balances",
                "wallet_lots",
                "wallet_transactions",
                "challenge_summaries",
                "challenge_participants",
                "revenue_entries",
            )
        }
        unbalanced = conn.execute(
            "SELECT position, sum(amount) AS total FROM journal_postings "
            "GROUP BY position HAVING sum(amount) <> 0"
        ).fetchall()
        accounts = {
            r["account"]: r["balance"]
            for r in conn.execute("SELECT account, balance FROM journal_balances").fetchall()
        }
    _wallets_match(ws, rows)
    _challenges_match(cs, rows)
    assert unbalanced == [], f"journal entries whose postings do not sum to 0: {unbalanced}"
    _journal_matches(ws, cs, accounts)
    revenue = sum(r["tokens"] for r in rows["revenue_entries"])
    platform = sum(c.fee + c.forfeited for c in cs.values() if c.status == SETTLED)
    losses = sum(lot.loss for w in ws.values() for lot in w.lots.values())
    assert revenue == platform - losses, f"revenue {revenue} != {platform} - {losses}"


def _wallets_match(ws: dict[UUID, Wallet], rows: dict[str, list[dict[str, Any]]]) -> None:
    balances = {r["wallet_id"]: r for r in rows["wallet_balances"]}
    assert balances.keys() == ws.keys(), "wallet_balances has other wallets than the stream"
    lots_of: defaultdict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for lot_row in rows["wallet_lots"]:
        lots_of[lot_row["wallet_id"]].append(lot_row)
    txs_of: defaultdict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for tx in rows["wallet_transactions"]:
        txs_of[tx["wallet_id"]].append(tx)
    for wallet_id, w in ws.items():
        row = balances[wallet_id]
        got = {f: row[f] for f in BALANCES}
        expected = {f: getattr(w, f) for f in BALANCES}
        assert got == expected, f"wallet of {w.user_id}: {got} != {expected}"
        assert row["user_id"] == w.user_id and row["lot_count"] == len(w.lots) + w.lots_dropped

        # Rows of lots whose records the wallet dropped (rules §1) stay in the read model.
        lots = [
            r
            for r in sorted(lots_of[wallet_id], key=lambda r: r["seq"])
            if str(r["lot_id"]) in w.lots
        ]
        assert len(lots_of[wallet_id]) - len(lots) == w.lots_dropped
        assert [r["lot_id"] for r in lots] == [UUID(k) for k in w.lots], (
            f"wallet of {w.user_id}: lots out of creation order"
        )
        for lot_row, lot in zip(lots, w.lots.values(), strict=True):
            got = {
                k: lot_row[k]
                for k in ("seq", "source", "amount", "remaining", "frozen", "written_off")
            } | {"loss": lot_row["dispute_loss"], "created_at": lot_row["created_at"]}
            expected = {
                "seq": lot.seq,
                "source": lot.source,
                "amount": lot.amount,
                "remaining": lot.remaining,
                "frozen": lot.frozen,
                "written_off": lot.written_off,
                "loss": lot.loss,
                "created_at": lot.created_at,
            }
            assert got == expected, f"lot {lot.lot_id}: {got} != {expected}"
            if lot.source == "deposit":
                assert lot_row["payment_intent_id"] == lot.payment_intent_id
                assert lot_row["refundable_until"] == lot.refundable_until
                assert (lot_row["cents_paid"], lot_row["token_price"]) == (
                    lot.cents_paid,
                    lot.token_price,
                )

        txs = sorted(txs_of[wallet_id], key=lambda r: r["position"])
        assert sum(t["amount"] for t in txs) == w.available, (
            f"wallet of {w.user_id}: transactions sum to {sum(t['amount'] for t in txs)}, "
            f"available is {w.available}"
        )
        last = txs[-1]["available_after"] if txs else 0
        assert last == w.available, f"wallet of {w.user_id}: last available_after {last}"
        assert all(t["user_id"] == w.user_id for t in txs)


def _challenges_match(cs: dict[UUID, Any], rows: dict[str, list[dict[str, Any]]]) -> None:
    summaries = {r["challenge_id"]: r for r in rows["challenge_summaries"]}
    assert summaries.keys() == cs.keys(), "challenge_summaries has other challenges"
    members: defaultdict[UUID, dict[UUID, dict[str, Any]]] = defaultdict(dict)
    for m in rows["challenge_participants"]:
        members[m["challenge_id"]][m["user_id"]] = m
    for challenge_id, c in cs.items():
        row = summaries[challenge_id]
        ps = c.participants.values()
        got = {
            k: row[k]
            for k in (
                "status",
                "pool",
                "participants",
                "stakes",
                "penalties",
                "fee",
                "forfeited",
                "returned",
                "paid_out",
                "finishers",
                "owner_id",
                "invite_code",
            )
        }
        expected = {
            "status": c.status,
            "pool": c.pool,
            "participants": len(c.participants),
            "stakes": sum(p.stake for p in ps),
            "penalties": sum(p.penalties for p in ps),
            "fee": c.fee,
            "forfeited": c.forfeited,
            "returned": c.returned,
            "paid_out": c.paid_out,
            "finishers": len(c.finishers),
            "owner_id": c.owner_id,
            "invite_code": c.invite_code,
        }
        assert got == expected, f"challenge {challenge_id}: {got} != {expected}"
        got_members = {u: (m["stake"], m["penalties"]) for u, m in members[challenge_id].items()}
        expected_members = {p.user_id: (p.stake, p.penalties) for p in ps}
        assert got_members == expected_members, f"challenge {challenge_id}: participants"


def _journal_matches(ws: dict[UUID, Wallet], cs: dict[UUID, Any], accounts: dict[str, int]) -> None:
    def balance(account: str) -> int:
        return int(accounts.get(account, 0))

    for w in ws.values():
        u = f"user:{w.user_id}"
        got = {
            "available": balance(f"{u}:available"),
            "frozen": balance(f"{u}:frozen"),
            "withdrawal_pending": balance(f"{u}:withdrawal_pending"),
            "cashout_pending": balance(f"{u}:cashout_pending"),
        }
        expected = {k: getattr(w, k) for k in got}
        assert got == expected, f"journal accounts of {w.user_id}: {got} != {expected}"
    in_challenges: defaultdict[str, int] = defaultdict(int)
    for account, amount in accounts.items():
        if account.startswith("challenge:"):
            in_challenges[account.split(":")[1]] += int(amount)
    for challenge_id, c in cs.items():
        held = in_challenges.pop(str(challenge_id), 0)
        assert held == c.pool, f"journal: challenge {challenge_id} holds {held}, pool {c.pool}"
    # Stakes locked for challenges the stream never drafted (bulk-generated events).
    held_by_wallets = {str(k) for w in ws.values() for k in (*w.stakes, *w.penalties)}
    assert set(in_challenges) <= held_by_wallets
    wallets_ = ws.values()
    settled = [c for c in cs.values() if c.status == SETTLED]
    platform = {
        "stripe:clearing": -sum(w.deposited for w in wallets_),
        "stripe:refunds": sum(w.refunded for w in wallets_),
        "stripe:disputes": sum(w.written_off_total for w in wallets_),
        "stripe:transfers": sum(w.cashed_out for w in wallets_),
        "platform:adjustments": sum(w.adjusted_out - w.adjusted_in for w in wallets_),
        "platform:dispute_losses": -sum(lot.loss for w in wallets_ for lot in w.lots.values()),
        "platform:revenue": sum(c.fee + c.forfeited for c in settled),
        "platform:unclaimed": sum(w.unclaimed for w in wallets_),
    }
    got = {k: balance(k) for k in platform}
    assert got == platform, f"journal platform accounts: {got} != {platform}"
    assert sum(accounts.values()) == 0


def later(clock: AdjustableClock, minutes: int = 1) -> datetime:
    clock.advance(timedelta(minutes=minutes))
    return clock.now()
