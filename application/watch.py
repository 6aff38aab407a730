"""Watching the money (rules §8): the worker runs ``audit verify`` and ``reconcile`` on a
schedule, and publishes the chain head outside the database after each clean audit.

Each run is taken by one copy of the worker (an advisory lock) and reports what it found; the
caller exports it as metrics, on which the alert rules fire. A run that fails is logged and
counted by the worker loop and retried at the next tick: it never stops the worker.

The published head is what makes a rewrite of the database visible. Every audit is given the
head published before it as the expected head: a stream rewritten below that position is a
finding even when the stored chain was rewritten to match. A head is published only by a
clean audit, so a tampered stream never replaces the proof of the stream it replaced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from application.ports import Clock, Locks

log = logging.getLogger("peerpush.watch")

AUDIT_LOCK = "audit-watch"
RECONCILE_LOCK = "reconcile-watch"
# Reconciliation compares the last week, leaving out the last half hour, in which a payment
# may be at Stripe while its webhook is still on its way (a mismatch only for a moment).
RECONCILE_WINDOW = timedelta(days=7)
RECONCILE_SETTLE = timedelta(minutes=30)


@dataclass(frozen=True)
class AuditResult:
    """What ``audit verify`` found: how many findings, and the chain head it computed."""

    findings: int
    head: str  # "POSITION:HEX", as ``audit verify`` prints it
    events: int

    @property
    def position(self) -> int:
        return int(self.head.partition(":")[0] or 0)


class Audit(Protocol):
    def __call__(self, expect_head: str | None) -> AuditResult:
        """Verify the stream; ``expect_head`` (``POSITION:HEX``) must be a prefix's head."""
        ...


class Reconcile(Protocol):
    def __call__(self, since: datetime, until: datetime) -> int:
        """Compare the ledger with Stripe for objects created in [since, until): mismatches."""
        ...


class HeadExport(Protocol):
    """Where chain heads are published, outside the database (``CHAIN_HEAD_EXPORT``)."""

    target: str

    def publish(self, document: Mapping[str, Any]) -> None:
        """Replace the published document with this one."""
        ...

    def latest(self) -> dict[str, Any] | None:
        """The document published last, or None if there is none yet."""
        ...


@dataclass(frozen=True)
class AuditRun:
    findings: int
    head: str
    position: int
    seconds: float
    expected: str | None  # the head published before, checked by this run
    published: bool


@dataclass(frozen=True)
class ReconcileRun:
    mismatches: int
    since: datetime
    until: datetime
    seconds: float


class MoneyWatch:
    """The scheduled audit and reconciliation of one worker; one copy runs each at a time."""

    def __init__(
        self,
        audit: Audit,
        reconcile: Reconcile,
        locks: Locks,
        clock: Clock,
        export: HeadExport | None = None,
    ) -> None:
        self.audit, self.reconcile = audit, reconcile
        self.locks, self.clock, self.export = locks, clock, export

    def audit_pass(self) -> AuditRun | None:
        """Verify, checking the last published head; publish the new head if clean.

        None: another copy of the worker held the lock and ran this audit.
        """
        with self.locks.try_hold(AUDIT_LOCK) as mine:
            if not mine:
                return None
            started = time.perf_counter()
            previous = self.export.latest() if self.export else None
            expected = str(previous["head"]) if previous and previous.get("head") else None
            result = self.audit(expected)
            published = False
            if self.export and not result.findings:
                self.export.publish(
                    {
                        "head": result.head,
                        "position": result.position,
                        "events": result.events,
                        "published_at": self.clock.now().isoformat(),
                    }
                )
                published = True
            run = AuditRun(
                result.findings,
                result.head,
                result.position,
                time.perf_counter() - started,
                expected,
                published,
            )
        level = logging.WARNING if run.findings else logging.INFO
        log.log(
            level,
            "audit run",
            extra={
                "findings": run.findings,
                "head": run.head,
                "position": run.position,
                "expected_head": run.expected,
                "published_to": self.export.target if published and self.export else None,
                "duration_ms": round(run.seconds * 1000, 2),
            },
        )
        return run

    def reconcile_pass(self) -> ReconcileRun | None:
        """Reconcile the last week with Stripe (but its last half hour).

        None: another copy of the worker held the lock and ran this reconciliation.
        """
        with self.locks.try_hold(RECONCILE_LOCK) as mine:
            if not mine:
                return None
            started = time.perf_counter()
            now = self.clock.now()
            since, until = now - RECONCILE_WINDOW, now - RECONCILE_SETTLE
            mismatches = self.reconcile(since, until)
            run = ReconcileRun(mismatches, since, until, time.perf_counter() - started)
        log.log(
            logging.WARNING if run.mismatches else logging.INFO,
            "reconcile run",
            extra={
                "mismatches": run.mismatches,
                "since": run.since.isoformat(),
                "until": run.until.isoformat(),
                "duration_ms": round(run.seconds * 1000, 2),
            },
        )
        return run
