"""The one composition root: settings, persistence, every adapter and every application
service, built once for every entry point (the HTTP app, its workers, the command line).

Nothing connects at import time; callers build what they need and close it. Migrations own
the tables, so the application runs with the library's table creation turned off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from adapters.browser_sessions import BrowserSessions
from adapters.cache_follower import CacheFollower
from adapters.database import database_settings, ledger_env
from adapters.head_export import build_head_export
from adapters.logs import log_command
from adapters.metrics import PROMETHEUS, count_command, refresh_gauges
from adapters.migrations import upgrade
from adapters.payments import PgCheckoutSessions, PgLocks, build_payment_gateway
from adapters.payout_accounts import PgPayoutAccounts
from adapters.persistence import DatabaseSettings
from adapters.photos import PillowPhotoInspector
from adapters.proof_store import build_proof_store
from adapters.settings import ServiceSettings, StoreSettings
from adapters.simulated_stripe import SimulatedStripe
from adapters.test_clock import PgTestClock
from adapters.users import IdempotencyStore, Logins, RateLimiter, TokenService, UserStore
from application.cashouts import Cashouts, CashoutWorker, ConnectEvents
from application.ledger import Ledger
from application.ports import (
    CheckoutSessions,
    Clock,
    Locks,
    PaymentGateway,
    PayoutAccounts,
    PayoutGateway,
    ProofStore,
    SystemClock,
)
from application.reconcile import ledger_records, reconcile, wallet_events
from application.settings import LedgerSettings
from application.settlement_worker import SettlementWorker
from application.stripe_events import Deposits, StripeEvents
from application.submissions import Submissions
from application.watch import AuditResult, MoneyWatch
from application.withdrawals import WithdrawalWorker
from application.workers import (
    WORKER_NAMES,
    Task,
    Workers,
    audit_pass,
    chosen,
    reconcile_pass,
    settlement_pass,
)
from projections.audit.chaincheck import parse_head
from projections.audit.verify import verify
from projections.challenge_queries import active_challenges_of
from projections.queries import ReadModels
from projections.runner import Projector
from projections.wallet_view import WalletView


def migrate(db: DatabaseSettings) -> None:
    upgrade(db)


def build_ledger(
    db: DatabaseSettings | None = None,
    *,
    clock: Clock | None = None,
    settings: LedgerSettings | None = None,
    process: StoreSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    run_migrations: bool = True,
) -> Ledger:
    """The ledger over ``db``; the business numbers are read from the environment unless given."""
    process = process or StoreSettings.from_env()
    db = db or database_settings(process)
    if run_migrations:
        migrate(db)
    env = {**ledger_env(db, process), **(extra_env or {})}
    ledger = Ledger(
        env,
        clock=clock,
        settings=settings or LedgerSettings.from_env(),
        group_commit=process.group_commit,
        trusted_cache=process.trusted_cache,
    )
    ledger.observers.extend((log_command, count_command))
    return ledger


def build_projector(db: DatabaseSettings, ledger: Ledger, *, max_waiters: int = 64) -> Projector:
    return Projector(db, ledger, max_waiters=max_waiters)


@dataclass
class Services:
    """Everything the HTTP app and the workers share within one process.

    Nothing here is state another process needs: the ledger, read models, users, tokens,
    limits and idempotency keys all live in PostgreSQL.
    """

    config: ServiceSettings
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
    submissions: Submissions
    checkouts: CheckoutSessions
    locks: Locks
    deposits: Deposits
    stripe_events: StripeEvents
    # The embedded default's stand-in for Stripe, whose checkout pages the API serves; None
    # with the real Stripe (its pages are then 404).
    simulated_stripe: SimulatedStripe | None
    payouts: PayoutGateway  # Stripe Connect: the same Stripe (or simulated Stripe) as payments
    payout_accounts: PayoutAccounts
    cashout_requests: Cashouts
    connect_events: ConnectEvents
    # Drops cached aggregates other processes changed (with TRUSTED_CACHE; started here).
    follower: CacheFollower | None = None

    # The workers that send money out, built here so they hold their work while payouts are
    # paused (PAYOUTS_PAUSED: asked before each pass, exported as a metric).
    withdrawals: WithdrawalWorker = field(init=False)
    cashouts: CashoutWorker = field(init=False)
    wallets: WalletView = field(init=False)
    # Signing in: one check (limits, password) for the JSON API and the admin pages' cookie.
    logins: Logins = field(init=False)
    browser: BrowserSessions = field(init=False)

    def __post_init__(self) -> None:
        wait = self.config.read_wait_seconds
        self.wallets = WalletView(self.reads, self.ledger, self.projector.wait_for, wait)
        self.logins = Logins(self.users, self.limits)
        self.browser = BrowserSessions(
            self.tokens, self.logins, secure=lambda: self.config.production
        )
        self.withdrawals = WithdrawalWorker(
            self.ledger, self.payments, self.locks, paused=self.payouts_paused
        )
        self.cashouts = CashoutWorker(
            self.ledger,
            self.payouts,
            self.payout_accounts,
            self.locks,
            paused=self.payouts_paused,
        )

    def payouts_paused(self) -> bool:
        PROMETHEUS.payouts_paused(self.config.payouts_paused)
        return self.config.payouts_paused

    def workers(self, names: Sequence[str] = WORKER_NAMES, *, projections: bool = True) -> Workers:
        """The named workers (and the projection worker) as threads of this process."""
        follow = self.projector.run_forever if projections else None
        return Workers(
            worker_tasks(self, names),
            self.config.worker_interval_seconds,
            PROMETHEUS,
            follow=follow,
            intervals={name: self.config.worker_interval(name) for name in names},
        )

    def refresh_gauges(self) -> None:
        """Sample what a scrape shows now: pool connections, projection lag, money in flight."""
        datastore = getattr(self.ledger.recorder, "datastore", None)
        refresh_gauges(
            {
                "events": getattr(datastore, "pool", None),
                "reads": self.reads.pool,
                "users": self.users.pool,
            },
            lambda: self.ledger.head() - self.reads.position(),
            self.reads.in_flight,
        )

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        self.projector.close()
        self.reads.close()
        self.users.close()
        self.ledger.close()
        if isinstance(self.clock, PgTestClock):
            self.clock.close()


def build_services(
    config: ServiceSettings | None = None, db: DatabaseSettings | None = None
) -> Services:
    """Every service of one process, from settings read once (here, unless given)."""
    config = config or ServiceSettings.from_env()
    db = db or database_settings(config)
    migrate(db)
    clock = build_clock(config, db)
    ledger = build_ledger(db, clock=clock, process=config, run_migrations=False)
    follower = build_cache_follower(db, ledger) if config.trusted_cache else None
    users = UserStore(db)
    payments = build_payment_gateway(config, db)
    checkouts = PgCheckoutSessions(db)
    locks = PgLocks(db)
    reads = ReadModels(db, pool_size=config.read_pool_size)
    proofs = build_proof_store(config)
    payout_accounts = PgPayoutAccounts(users.pool)
    # Both gateways (Stripe's and the simulated one) implement the payout port too.
    payouts: PayoutGateway = payments  # type: ignore[assignment]  # one object, two ports
    return Services(
        config=config,
        db=db,
        clock=clock,
        ledger=ledger,
        projector=build_projector(db, ledger, max_waiters=config.read_max_waiters),
        reads=reads,
        users=users,
        tokens=TokenService(config, users),
        limits=RateLimiter(
            users, enabled=config.rate_limits, overrides=config.rate_limit_overrides
        ),
        idempotency=IdempotencyStore(users),
        payments=payments,
        proofs=proofs,
        submissions=Submissions(
            ledger,
            proofs,
            partial(active_challenges_of, reads),
            PillowPhotoInspector(config.max_photo_pixels),
        ),
        checkouts=checkouts,
        locks=locks,
        deposits=Deposits(ledger, payments, checkouts, config.base_url),
        stripe_events=StripeEvents(ledger, payments, checkouts, locks),
        simulated_stripe=payments if isinstance(payments, SimulatedStripe) else None,
        payouts=payouts,
        payout_accounts=payout_accounts,
        cashout_requests=Cashouts(ledger, payout_accounts, payouts),
        connect_events=ConnectEvents(
            ledger, payout_accounts, livemode=bool(getattr(payments, "livemode", False))
        ),
        follower=follower,
    )


def build_cache_follower(db: DatabaseSettings, ledger: Ledger) -> CacheFollower:
    """Started: from its return on, every other process's write is heard of."""
    recorder: Any = ledger.recorder
    follower = CacheFollower(db, recorder.events_table_name, recorder.channel_name, ledger.heard_of)
    follower.start()
    return follower


def worker_tasks(services: Services, names: Sequence[str] = WORKER_NAMES) -> list[tuple[str, Task]]:
    """Each named worker's pass, built on the process's services."""
    settlement = SettlementWorker(services.ledger, services.locks)
    watch = build_watch(services)
    passes: dict[str, Task] = {
        "settlement": lambda: settlement_pass(settlement, PROMETHEUS),
        "withdrawals": services.withdrawals.run_pass,
        "cashouts": services.cashouts.run_pass,
        "audit": lambda: audit_pass(watch, PROMETHEUS),
        "reconcile": lambda: reconcile_pass(watch, PROMETHEUS),
    }
    return chosen(passes, names)


def build_clock(config: ServiceSettings, db: DatabaseSettings) -> Clock:
    """Business time: the wall clock in production; in development a test clock whose offset
    every process shares (an advance through one API process moves the workers' time too)."""
    return PgTestClock(db) if config.test_clock_enabled else SystemClock()


def build_watch(services: Services) -> MoneyWatch:
    """The worker's scheduled ``audit verify`` and ``reconcile`` (rules §8), publishing the
    chain head to ``CHAIN_HEAD_EXPORT``."""
    config = services.config
    decode = services.ledger.mapper.to_domain_event

    def audit(expect_head: str | None) -> AuditResult:
        expected = parse_head(expect_head) if expect_head else None
        report = verify(services.db, decode, expect_head=expected)
        return AuditResult(len(report.findings), report.head, report.events)

    def reconcile_window(since: datetime, until: datetime) -> int:
        records = ledger_records(wallet_events(services.ledger))
        return len(reconcile(since, records, services.payments, until=until).mismatches)

    export = build_head_export(
        config.chain_head_export, endpoint_url=config.s3_endpoint_url, region=config.aws_region
    )
    return MoneyWatch(audit, reconcile_window, services.locks, services.clock, export)
