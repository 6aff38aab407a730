"""Background work inside the embedded server: projections and the settlement worker.

In production these run as their own processes (``peerpush projections run``,
``peerpush worker``); every copy is safe to run next to another (advisory locks,
idempotent commands), so nothing here is state another process needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from adapters.payments import PgLocks
from api.bootstrap import Services
from api.metrics import PAYOUTS_PAUSED, SETTLEMENT_FAILURES
from application.cashouts import CashoutWorker
from application.ledger import Ledger
from application.receipts import Swept
from application.withdrawals import WithdrawalWorker

log = logging.getLogger("peerpush.workers")


class Workers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn("projections", lambda: self.services.projector.run_forever(self.stop))
        self._spawn("settlement", self._every(lambda: settlement_pass(self.services.ledger)))
        for name, task in extra_tasks(self.services):
            self._spawn(name, self._every(task))

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _every(self, task: Callable[[], object]) -> Callable[[], None]:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    task()
                except Exception:  # a failed pass is retried on the next one
                    log.exception("worker pass failed")
                self.stop.wait(self.services.config.worker_interval_seconds)

        return loop

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


def settlement_pass(ledger: Ledger) -> Swept:
    """One settlement pass; challenges that failed are counted (they are retried next pass)."""
    swept = ledger.settle_due()
    if swept.failed:
        SETTLEMENT_FAILURES.inc(len(swept.failed))
        log.warning("%d challenge(s) failed to settle: %s", len(swept.failed), swept.failed)
    return swept


def extra_tasks(services: Services) -> list[tuple[str, Callable[[], object]]]:
    """Periodic process rules beyond settlement: the withdrawal worker (Stripe refunds) and the
    cash-out worker (Stripe transfers), both holding their work while payouts are paused."""

    def paused() -> bool:
        PAYOUTS_PAUSED.set(1 if services.config.payouts_paused else 0)
        return services.config.payouts_paused

    withdrawals = WithdrawalWorker(
        services.ledger, services.payments, PgLocks(services.db), paused=paused
    )
    cashouts = CashoutWorker(
        services.ledger,
        services.payouts,
        services.payout_accounts,
        PgLocks(services.db),
        paused=paused,
    )
    return [("withdrawals", withdrawals.run_pass), ("cashouts", cashouts.run_pass)]
