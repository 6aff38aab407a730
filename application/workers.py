"""The workers: projections, settlement, withdrawals, cash-outs and the scheduled audit and
reconciliation, as loops shared by every way to run them (rules §9).

In production each runs as its own process: ``peerpush worker
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from application.ports import WorkerMetrics
from application.receipts import Swept
from application.settlement_worker import SettlementWorker
from application.watch import AuditRun, MoneyWatch, ReconcileRun

log = logging.getLogger("peerpush.workers")

# The periodic workers ``peerpush worker`` runs by name ("all" is every one of them).
WORKER_NAMES = ("settlement", "withdrawals", "cashouts", "audit", "reconcile")

Task = Callable[[], object]


def run_every(
    name: str, task: Task, interval: float, stop: threading.Event, metrics: WorkerMetrics
) -> None:
    """The worker loop: one pass every ``interval`` seconds until ``stop`` is set.

    A pass that raises is logged and counted (``metrics.pass_failed``), and the loop goes on:
    the next pass retries whatever was left.
    """
    while not stop.is_set():
        try:
            log_pass(name, task())
        except Exception:
            metrics.pass_failed(name)
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


def settlement_pass(worker: SettlementWorker, metrics: WorkerMetrics) -> Swept | None:
    """One settlement pass; challenges that failed are counted (they are retried next pass).

    None: another copy of the worker held the lock and did this pass's work.
    """
    swept = worker.run_pass()
    if swept is not None:
        metrics.settlement_backlog(swept.due - len(swept.settled) - len(swept.cancelled))
    if swept is not None and swept.failed:
        metrics.settlements_failed(len(swept.failed))
        log.warning(
            "challenges failed to settle",
            extra={"failed": [str(c) for c in swept.failed]},
        )
    return swept


def audit_pass(watch: MoneyWatch, metrics: WorkerMetrics) -> AuditRun | None:
    """One scheduled ``audit verify``, reported as metrics (the alert fires on a finding)."""
    try:
        run = watch.audit_pass()
    except Exception:
        metrics.audit_failed()
        raise
    if run is not None:
        metrics.audited(run.findings, run.seconds, run.position)
    return run


def reconcile_pass(watch: MoneyWatch, metrics: WorkerMetrics) -> ReconcileRun | None:
    """One scheduled reconciliation with Stripe, reported as metrics."""
    try:
        run = watch.reconcile_pass()
    except Exception:
        metrics.reconcile_failed()
        raise
    if run is not None:
        metrics.reconciled(run.mismatches, run.seconds)
    return run


def chosen(passes: Mapping[str, Task], names: Sequence[str]) -> list[tuple[str, Task]]:
    """The named workers' passes, in the order asked; an unknown name is refused."""
    unknown = [name for name in names if name not in passes]
    if unknown:
        raise ValueError(f"no worker named {', '.join(unknown)}")
    return [(name, passes[name]) for name in names]


class Workers:
    """Worker loops as threads of this process, stopped together by ``stop``.

    ``follow`` is the projection worker (it follows the stream until ``stop`` is set), when
    this process runs it too. A worker passes every ``interval`` seconds, or as often as
    ``intervals`` names for it (the audit's ``AUDIT_EVERY``...); 0 means it never runs.
    """

    def __init__(
        self,
        tasks: Sequence[tuple[str, Task]],
        interval: float,
        metrics: WorkerMetrics,
        *,
        follow: Callable[[threading.Event], object] | None = None,
        intervals: Mapping[str, float] | None = None,
    ) -> None:
        self.tasks = tuple(tasks)
        self.interval = interval
        self.intervals = dict(intervals or {})
        self.metrics = metrics
        self.follow = follow
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.tasks)

    def start(self) -> None:
        if self.follow is not None:
            self._spawn("projections", functools.partial(self.follow, self.stop))
        for name, task in self.tasks:
            every = self.intervals.get(name, self.interval)
            if every > 0:
                loop = functools.partial(run_every, name, task, every, self.stop, self.metrics)
                self._spawn(name, loop)

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def run_until_stopped(self, poll: float = 1.0) -> None:
        """Start, then wait until ``stop`` is set (a signal handler sets it), then shut down."""
        try:
            self.start()
            while not self.stop.wait(poll):
                pass
        finally:
            self.shutdown()

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
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
