"""What the audit tests share: a projected schema, a stream with every kind of money event, the
command line run in-process, and the re-import of an export into a fresh store."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import NoneType, UnionType
from typing import Any
from uuid import UUID, uuid4, uuid5

import psycopg
import pytest
from eventsourcing.utils import resolve_topic

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings
from api.cli import main
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from domain.aggregate import Cause
from domain.rules import ChallengeTerms
from domain.verification import ProofFacts
from domain.wallet import Wallet
from projections.runner import Projector

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
NS = UUID("3f0c9a8e-55b1-4c7d-9e2a-6d1b7c4e8f21")
ADMIN = uuid5(NS, "admin")
MINUTE = timedelta(minutes=1)


@dataclass
class Audited:
    """A migrated schema, a ledger writing to it and a projector reading from it."""

    db: DatabaseSettings
    ledger: Ledger
    projector: Projector
    clock: AdjustableClock

    def close(self) -> None:
        self.projector.close()
        self.ledger.close()


def open_audited(db: DatabaseSettings) -> Audited:
    upgrade(db)
    clock = AdjustableClock(START, frozen=True)
    settings = LedgerSettings(platform_fee_bps=500)  # a 5 % fee: revenue has fees too
    ledger = Ledger(db.eventsourcing_env(create_table=False), clock=clock, settings=settings)
    return Audited(db, ledger, Projector(db, ledger), clock)


@contextmanager
def connect(db: DatabaseSettings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        yield conn


def cli(
    db: DatabaseSettings, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    """``peerpush audit ARGS`` against ``db``; returns the exit code and what it printed."""
    mp.setenv("DATABASE_URL", db.url)
    mp.setenv("DB_SCHEMA", db.schema)
    capsys.readouterr()
    code = main(["audit", *args])
    return code, capsys.readouterr().out


def verify_json(
    db: DatabaseSettings, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch, *args: str
) -> tuple[int, dict[str, Any]]:
    code, out = cli(db, capsys, mp, "verify", "--json", *args)
    return code, json.loads(out)


# -- streams ----------------------------------------------------------------------------------


def scenario(a: Audited) -> dict[str, UUID]:
    """Every kind of money event through the ledger's commands, the clock moving between them:
    deposits, a challenge with peer review, a penalty and a settlement with a fee, a cancelled
    challenge, a withdrawal refunded (one refund failing later) and one refused, admin
    adjustments, and disputes won and lost (with a loss)."""
    ledger, clock = a.ledger, a.clock
    users = {name: uuid5(NS, name) for name in ("ada", "bo", "cy", "di")}
    for name, user in users.items():
        ledger.credit_deposit(user, f"pi_{name}", 5_000, Cause.stripe(f"evt_{name}"))
        clock.advance(MINUTE)
    ada, bo, cy, di = users.values()
    start = (clock.now() + timedelta(days=1)).replace(hour=0, minute=0)
    terms = dict(
        starts_at=start,
        ends_at=start + timedelta(days=2),
        entry_stake=1_000,
        window_start="00:00",
        window_end="00:00",
        timezone="UTC",
        verification_mode="quorum",
        penalty_tokens=200,
        proof_types=["text"],
    )
    run = ledger.create_challenge(ada, Cause.user(ada), name="Two mornings", **terms)
    ledger.publish(run.challenge_id, ada, Cause.user(ada))
    for user in (bo, cy, di):
        clock.advance(MINUTE)
        ledger.join(run.invite_code, user, "UTC", Cause.user(user))
    dropped = ledger.create_challenge(bo, Cause.user(bo), name="Never started", **terms)
    ledger.publish(dropped.challenge_id, bo, Cause.user(bo))
    ledger.join(dropped.invite_code, cy, "UTC", Cause.user(cy))
    clock.advance(MINUTE)
    ledger.cancel(dropped.challenge_id, bo, Cause.user(bo), reason="changed my mind")
    proof = ProofFacts("text", "proofs/x", "text/plain", 5, "")
    for day in range(2):
        clock.set(start + timedelta(days=day, hours=8))
        for user in (ada, bo, cy):
            made = ledger.submit(run.challenge_id, user, proof, Cause.user(user))
            for voter in (ada, bo, cy, di):
                if voter == user:
                    continue
                approve = not (user == cy and day == 1)
                if ledger.vote(made.submission_id, voter, approve, Cause.user(voter)).status != (
                    "pending"
                ):
                    break
    clock.set(start + timedelta(days=3, hours=1))
    ledger.settle_due()
    worker = Cause.worker("refunds")
    held = ledger.request_withdrawal(ada, uuid4(), 1_500, Cause.user(ada))
    for lot_id, _tokens in held.lots:
        ledger.record_refund(ada, held.withdrawal_id, lot_id, f"re_{lot_id.hex[:8]}", worker)
    clock.advance(MINUTE)
    ledger.fail_refund(ada, held.withdrawal_id, held.lots[0][0], Cause.stripe("evt_fail"))
    refused = ledger.request_withdrawal(bo, uuid4(), 300, Cause.user(bo))
    ledger.refuse_refund(bo, refused.withdrawal_id, refused.lots[0][0], "card expired", worker)
    admin = Cause.admin(ADMIN, "support-1")
    clock.advance(MINUTE)
    ledger.adjust(cy, "credit", 250, "goodwill", uuid4(), admin)
    ledger.adjust(di, "debit", 40, "duplicate credit", uuid4(), admin)
    clock.advance(MINUTE)
    ledger.open_dispute(di, "pi_di", "dp_di", Cause.stripe("evt_dp_di"))
    ledger.close_dispute(di, "dp_di", False, 5_000, Cause.stripe("evt_dp_di_lost"))
    ledger.open_dispute(cy, "pi_cy", "dp_cy", Cause.stripe("evt_dp_cy"))
    ledger.close_dispute(cy, "dp_cy", True, 0, Cause.stripe("evt_dp_cy_won"))
    clock.advance(MINUTE)
    return users


def open_challenge(a: Audited) -> None:
    """A published challenge still running, with three stakes in its pool, and a refund."""
    ledger, now = a.ledger, a.clock.now()
    owner, *others = (uuid5(NS, f"open-{n}") for n in range(3))
    for user in (owner, *others):
        ledger.credit_deposit(user, f"pi_open_{user.hex[:6]}", 2_000, Cause.stripe("evt_open"))
    start = (now + timedelta(days=1)).replace(hour=0, minute=0)
    made = ledger.create_challenge(
        owner,
        Cause.user(owner),
        name="Still open",
        starts_at=start,
        ends_at=start + timedelta(days=5),
        entry_stake=700,
        window_start="00:00",
        window_end="00:00",
        timezone="UTC",
        verification_mode="quorum",
        penalty_tokens=0,
        proof_types=["text"],
    )
    ledger.publish(made.challenge_id, owner, Cause.user(owner))
    for user in others:
        ledger.join(made.invite_code, user, "UTC", Cause.user(user))
    held = ledger.request_withdrawal(owner, uuid4(), 300, Cause.user(owner))
    for lot_id, _ in held.lots:
        refund = f"re_open_{lot_id.hex[:8]}"
        ledger.record_refund(owner, held.withdrawal_id, lot_id, refund, Cause.worker("refunds"))


def bulk(a: Audited, wallets: int, *, tag: str = "", per_save: int = 25) -> None:
    """About seven events per wallet, fast: wallets changed in memory, saved 25 at a time."""
    cause = Cause.admin(ADMIN, f"bulk{tag}")
    price, window = a.ledger.settings.token_price_usd_cents, a.ledger.settings.refund_window
    batch: list[Wallet] = []
    for n in range(wallets):
        at = a.clock.now()
        wallet = Wallet.open(uuid4(), cause, at)
        wallet.credit_deposit(f"pi_bulk{tag}_{n}", 1_000 + n, price, window, cause, at)
        wallet.credit_adjustment(uuid4(), 7, "bulk credit", cause, at)
        wallet.debit_adjustment(uuid4(), 3, "bulk debit", cause, at)
        withdrawal = uuid4()
        taken = wallet.request_withdrawal(withdrawal, 100, cause, at)
        wallet.record_refund(withdrawal, taken[0][0], f"re_bulk{tag}_{n}", cause, at)
        batch.append(wallet)
        if len(batch) == per_save:
            a.ledger.save(*batch)
            batch = []
            a.clock.advance(timedelta(seconds=1))
    if batch:
        a.ledger.save(*batch)


def skip_positions(db: DatabaseSettings, count: int) -> None:
    """Burn ``count`` positions, as rolled-back inserts do (a gap is not a finding)."""
    with connect(db) as conn:
        for _ in range(count):
            conn.execute(
                "SELECT nextval(pg_get_serial_sequence('ledger_events', 'notification_id'))"
            )


def head(db: DatabaseSettings) -> int:
    with connect(db) as conn:
        return int(conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()[0])


# -- re-importing an export -------------------------------------------------------------------

TERMS = typing.get_type_hints(ChallengeTerms)


def restore(value: Any, hint: Any) -> Any:
    """A plain JSON value back into the type an event field declares."""
    if value is None or hint is Any:
        return value
    if hint is UUID:
        return UUID(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (UnionType, typing.Union):
        options = [h for h in args if h is not NoneType]
        return restore(value, options[0])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(restore(v, args[0]) for v in value)
        return tuple(restore(v, h) for v, h in zip(value, args, strict=True))
    return value


def event_from(record: dict[str, Any]) -> Any:
    """The domain event an export record describes."""
    cls = resolve_topic(record["topic"])
    hints = typing.get_type_hints(cls)
    values = {k: restore(v, hints.get(k, Any)) for k, v in record["fields"].items()}
    if "terms" in values:
        values["terms"] = {k: restore(v, TERMS[k]) for k, v in values["terms"].items()}
    return cls(
        originator_id=UUID(record["originator_id"]),
        originator_version=record["version"],
        timestamp=datetime.fromisoformat(record["timestamp"]),
        **values,
    )


def reimport(ledger: Ledger, lines: Iterable[str], batch: int = 500) -> int:
    """Insert the exported events, re-encoded by the mapper, through the ledger's recorder."""
    pending: list[Any] = []
    count = 0
    for line in lines:
        pending.append(ledger.mapper.to_stored_event(event_from(json.loads(line))))
        if len(pending) == batch:
            ledger.recorder.insert_events(pending)
            count, pending = count + len(pending), []
    if pending:
        ledger.recorder.insert_events(pending)
        count += len(pending)
    return count


POSITION_COLUMNS = {"position", "last_position"}
CHAIN_TABLES = {"chain_head", "chain_checkpoints"}


def read_models(db: DatabaseSettings) -> dict[str, list[tuple[Any, ...]]]:
    """Every projected table's rows without stream positions, in a deterministic order."""
    with connect(db) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE'",
                (db.schema,),
            ).fetchall()
        ]
        out = {}
        for table in sorted(names):
            if table in CHAIN_TABLES or not _projected(table):
                continue
            cur = conn.execute(f"SELECT * FROM {table}")
            keep = [
                i for i, d in enumerate(cur.description or ()) if d.name not in POSITION_COLUMNS
            ]
            out[table] = sorted((tuple(row[i] for i in keep) for row in cur.fetchall()), key=repr)
        return out


def _projected(table: str) -> bool:
    return table.split("_")[0] in ("wallet", "challenge", "revenue", "journal")
