"""The workers: projections, settlement, withdrawals, cash-outs and the scheduled audit and
reconciliation, as loops shared by every way to run them.

In production each runs as its own process (rules §9): ``peerpush worker
[settlement|withdrawals|cashouts|audit|reconcile|all]`` and ``peerpush projections run``. In
development ``peerpush serve`` also runs them as threads of the server (``RUN_WORKERS``, on by
default); production's ``serve`` never does, so scaling the API never multiplies the workers.
Every copy is safe to run next to another: a PostgreSQL advisory lock lets one copy work per
pass while the others skip, and the commands are idempotent. Nothing here is state another
process needs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from adapters.settings import ServiceSettings
from api import metrics
from api.bootstrap import Services, build_watch
from api.metrics import SETTLEMENT_FAILURES, WORKER_PASS_FAILURES
from application.receipts import Swept
from application.settlement_worker import SettlementWorker
from application.watch import AuditRun, MoneyWatch, ReconcileRun

log = logging.getLogger("peerpush.workers")

# The periodic workers ``peerpush worker`` runs by name ("all" is every one of them).
WORKER_NAMES = ("settlement", "withdrawals", "cashouts", "audit", "reconcile")


def runs_workers_in_process(config: ServiceSettings, requested: bool | None = None) -> bool:
    """Whether ``peerpush serve`` runs the workers as threads of the server.

    Only in development (``RUN_WORKERS``, or what the caller asks): in production the workers
    are their own processes, and each API replica running them too would multiply them.
    """
    if config.production:
        return False
    return config.run_workers if requested is None else requested


def run_every(
    name: str, task: Callable[[], object], interval: float, stop: threading.Event
) -> None:
    """The worker loop: one pass every ``interval`` seconds until ``stop`` is set.

    A pass that raises is logged and counted (``peerpush_worker_pass_failures_total``), and the
    loop goes on: the next pass retries whatever was left.
    """
    while not stop.is_set():
        try:
            log_pass(name, task())
        except Exception:
            WORKER_PASS_FAILURES.labels(name).inc()
            log.exception("worker pass failed; retried next pass", extra={"worker": name})
        stop.wait(interval)


def log_pass(name: str, result: object) -> None:
    """One line per pass saying what it did: counts of what it settled, refunded, moved...

    A pass that did nothing is logged at DEBUG (one a second would bury the rest); None
    means another copy held the lock and did the work.
    """
    did: dict[str, Any] = {}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        for key, value in dataclasses.asdict(result).items():
            did[key] = len(value) if isinstance(value, list | tuple) else value
    elif result is None:
        did["worked"] = False
    busy = any(v for k, v in did.items() if k not in ("worked", "paused", "position", "due"))
    log.log(logging.INFO if busy else logging.DEBUG, "worker pass", extra={"worker": name, **did})


def worker_tasks(
    services: Services, names: Sequence[str] = WORKER_NAMES
) -> list[tuple[str, Callable[[], object]]]:
    """Each named worker's pass, built on the process's services."""
    settlement = SettlementWorker(services.ledger, services.locks)
    watch = build_watch(services)
    passes: dict[str, Callable[[], object]] = {
        "settlement": lambda: settlement_pass(settlement),
        "withdrawals": services.withdrawals.run_pass,
        "cashouts": services.cashouts.run_pass,
        "audit": lambda: audit_pass(watch),
        "reconcile": lambda: reconcile_pass(watch),
    }
    unknown = [name for name in names if name not in passes]
    if unknown:
        raise ValueError(f"no worker named {', '.join(unknown)}")
    return [(name, passes[name]) for name in names]


def interval(name: str, config: ServiceSettings) -> float:
    """Seconds between two passes of a worker: ``AUDIT_EVERY`` and ``RECONCILE_EVERY`` for the
    audit and the reconciliation (0: never run), ``WORKER_INTERVAL_SECONDS`` for the others."""
    if name == "audit":
        return config.audit_every.total_seconds()
    if name == "reconcile":
        return config.reconcile_every.total_seconds()
    return config.worker_interval_seconds


class Workers:
    """Worker loops as threads of this process, stopped together by ``stop``."""

    def __init__(
        self,
        services: Services,
        names: Sequence[str] = WORKER_NAMES,
        *,
        projections: bool = True,
    ) -> None:
        self.services = services
        self.names = tuple(names)
        self.projections = projections
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.projections:
            self._spawn("projections", lambda: self.services.projector.run_forever(self.stop))
        for name, task in worker_tasks(self.services, self.names):
            every = interval(name, self.services.config)
            if every > 0:
                self._spawn(name, functools.partial(run_every, name, task, every, self.stop))

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            while not self.stop.is_set():
                try:
                    target()
                    return
                except Exception:
                    log.exception("worker %s crashed; restarting", name)
                    self.stop.wait(1.0)

        thread = threading.Thread(target=guarded, name=f"peerpush-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)


def settlement_pass(worker: SettlementWorker) -> Swept | None:
    """One settlement pass; challenges that failed are counted (they are retried next pass).

    None: another copy of the worker held the lock and did this pass's work.
    """
    swept = worker.run_pass()
    if swept is not None:
        metrics.SETTLEMENT_BACKLOG.set(swept.due - len(swept.settled) - len(swept.cancelled))
    if swept is not None and swept.failed:
        SETTLEMENT_FAILURES.inc(len(swept.failed))
        log.warning(
            "challenges failed to settle",
            extra={"failed": [str(c) for c in swept.failed]},
        )
    return swept


def audit_pass(watch: MoneyWatch) -> AuditRun | None:
    """One scheduled ``audit verify``, exported as metrics (the alert fires on a finding)."""
    try:
        run = watch.audit_pass()
    except Exception:
        metrics.AUDIT_RUNS.labels("error").inc()
        raise
    if run is not None:
        metrics.AUDIT_RUNS.labels("findings" if run.findings else "clean").inc()
        metrics.AUDIT_FINDINGS.set(run.findings)
        metrics.AUDIT_SECONDS.set(run.seconds)
        metrics.CHAIN_HEAD_POSITION.set(run.position)
    return run


def reconcile_pass(watch: MoneyWatch) -> ReconcileRun | None:
    """One scheduled reconciliation with Stripe, exported as metrics."""
    try:
        run = watch.reconcile_pass()
    except Exception:
        metrics.RECONCILE_RUNS.labels("error").inc()
        raise
    if run is not None:
        metrics.RECONCILE_RUNS.labels("mismatches" if run.mismatches else "ok").inc()
        metrics.RECONCILE_MISMATCHES.set(run.mismatches)
        metrics.RECONCILE_SECONDS.set(run.seconds)
    return run
