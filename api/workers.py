"""The workers: projections, settlement and withdrawals, as loops shared by every way to run them.

In production each runs as its own process (rules §9): ``peerpush worker
[settlement|withdrawals|all]`` and ``peerpush projections run``. In development ``peerpush
serve`` also runs them as threads of the server (``RUN_WORKERS``, on by default); production's
``serve`` never does, so scaling the API never multiplies the workers. Every copy is safe to run
next to another: a PostgreSQL advisory lock lets one copy work per pass while the others skip,
and the commands are idempotent. Nothing here is state another process needs.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from adapters.settings import ServiceSettings
from api.bootstrap import Services
from api.metrics import SETTLEMENT_FAILURES, WORKER_PASS_FAILURES
from application.receipts import Swept
from application.settlement_worker import SettlementWorker

log = logging.getLogger("peerpush.workers")

# The periodic workers ``peerpush worker`` runs by name ("all" is every one of them).
WORKER_NAMES = ("settlement", "withdrawals", "cashouts")


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
            task()
        except Exception:
            WORKER_PASS_FAILURES.labels(name).inc()
            log.exception("worker %s: pass failed; retried next pass", name)
        stop.wait(interval)


def worker_tasks(
    services: Services, names: Sequence[str] = WORKER_NAMES
) -> list[tuple[str, Callable[[], object]]]:
    """Each named worker's pass, built on the process's services."""
    settlement = SettlementWorker(services.ledger, services.locks)
    withdrawals = services.withdrawals
    passes: dict[str, Callable[[], object]] = {
        "settlement": lambda: settlement_pass(settlement),
        "withdrawals": withdrawals.run_pass,
        "cashouts": services.cashouts.run_pass,
    }
    unknown = [name for name in names if name not in passes]
    if unknown:
        raise ValueError(f"no worker named {', '.join(unknown)}")
    return [(name, passes[name]) for name in names]


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
        interval = self.services.config.worker_interval_seconds
        for name, task in worker_tasks(self.services, self.names):
            self._spawn(name, functools.partial(run_every, name, task, interval, self.stop))

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
    if swept is not None and swept.failed:
        SETTLEMENT_FAILURES.inc(len(swept.failed))
        log.warning("%d challenge(s) failed to settle: %s", len(swept.failed), swept.failed)
    return swept
