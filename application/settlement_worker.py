"""The settlement worker's pass, once across every copy (rules §4, §9).

``Ledger.settle_due`` is idempotent (a settled challenge is not settled again), but each copy
of the worker keeps its own index of due challenges: two copies would both load, and both try
to settle, every due challenge. A PostgreSQL advisory lock lets one copy work per pass while the
others skip it, as the withdrawal worker does.
"""

from __future__ import annotations

from application.ledger import Ledger
from application.ports import Locks
from application.receipts import Swept

LOCK_NAME = "settlement-worker"


class SettlementWorker:
    """Settles what is due and cancels what cannot run; one copy at a time works."""

    def __init__(self, ledger: Ledger, locks: Locks) -> None:
        self.ledger, self.locks = ledger, locks

    def run_pass(self) -> Swept | None:
        """What this pass did, or None when another copy held the lock (it did the work)."""
        with self.locks.try_hold(LOCK_NAME) as mine:
            if not mine:
                return None
            return self.ledger.settle_due()
