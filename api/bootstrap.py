"""The one composition root: settings, persistence and the ledger, for every entry point.

Nothing connects at import time; callers build what they need and close it. Migrations own
the tables, so the application runs with the library's table creation turned off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.atomic_responses import RECORDER_TOPIC
from adapters.migrations import upgrade
from adapters.payments import build_payment_gateway
from adapters.payout_accounts import PgPayoutAccounts
from adapters.persistence import DatabaseSettings, resolve_database_url
from adapters.proof_store import build_proof_store
from adapters.users import IdempotencyStore, RateLimiter, TokenService, UserStore
from api.config import ApiConfig
from application.ledger import Ledger
from application.ports import (
    AdjustableClock,
    Clock,
    PaymentGateway,
    PayoutAccounts,
    PayoutGateway,
    ProofStore,
    SystemClock,
)
from application.settings import LedgerSettings
from projections.queries import ReadModels
from projections.runner import Projector


def database_settings(schema: str | None = None) -> DatabaseSettings:
    """``DATABASE_URL`` if set, otherwise the embedded PostgreSQL under ``./.data``."""
    url = resolve_database_url()
    return DatabaseSettings.from_url(url, schema=schema or os.environ.get("DB_SCHEMA", "public"))


def ledger_env(db: DatabaseSettings, *, create_table: bool = False) -> dict[str, str]:
    env = db.eventsourcing_env(create_table=create_table)
    # Idempotent responses are stored in the events' own transaction (SPEC §7).
    env["APPLICATION_RECORDER_TOPIC"] = RECORDER_TOPIC
    for key in ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW", "AGGREGATE_CACHE_MAXSIZE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def migrate(db: DatabaseSettings) -> None:
    upgrade(db)


def build_ledger(
    db: DatabaseSettings | None = None,
    *,
    clock: Clock | None = None,
    settings: LedgerSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    run_migrations: bool = True,
) -> Ledger:
    db = db or database_settings()
    if run_migrations:
        migrate(db)
    env = {**ledger_env(db), **(extra_env or {})}
    return Ledger(env, clock=clock, settings=settings or LedgerSettings.from_env())


def build_projector(db: DatabaseSettings, ledger: Ledger) -> Projector:
    return Projector(db, ledger)


@dataclass
class Services:
    """Everything the HTTP app and the workers share within one process.

    Nothing here is state another process needs: the ledger, read models, users, tokens,
    limits and idempotency keys all live in PostgreSQL.
    """

    config: ApiConfig
    db: DatabaseSettings
    clock: Clock
    ledger: Ledger
    projector: Projector
    reads: ReadModels
    users: UserStore
    tokens: TokenService
    limits: RateLimiter
    idempotency: IdempotencyStore
    payments: PaymentGateway
    proofs: ProofStore
    payouts: PayoutGateway  # Stripe Connect: the same Stripe (or simulated Stripe) as payments
    payout_accounts: PayoutAccounts

    def close(self) -> None:
        self.projector.close()
        self.reads.close()
        self.users.close()
        self.ledger.close()


def build_services(config: ApiConfig | None = None, db: DatabaseSettings | None = None) -> Services:
    config = config or ApiConfig.from_env()
    db = db or database_settings()
    migrate(db)
    clock: Clock = AdjustableClock() if config.test_clock_enabled else SystemClock()
    ledger = build_ledger(db, clock=clock, run_migrations=False)
    users = UserStore(db)
    payments = build_payment_gateway(config, users)
    return Services(
        config=config,
        db=db,
        clock=clock,
        ledger=ledger,
        projector=build_projector(db, ledger),
        reads=ReadModels(db),
        users=users,
        tokens=TokenService(config, users),
        limits=RateLimiter(users, enabled=config.rate_limits_enabled),
        idempotency=IdempotencyStore(users),
        payments=payments,
        proofs=build_proof_store(config),
        payouts=payments,  # type: ignore[arg-type]  # both gateways implement both ports
        payout_accounts=PgPayoutAccounts(users.pool),
    )
