"""Prometheus metrics of this process (a registry of its own, no global state leaks).

The registry and the samples are this adapter's; the HTTP app records requests in it and
exposes it on ``/metrics``, and the workers report through `PROMETHEUS` (the
``WorkerMetrics`` port).

Label values come from fixed sets only (route templates, `METHODS`), so requests a client makes
up cannot grow the metrics without bound. With ``PROMETHEUS_MULTIPROC_DIR`` set (before any
server process starts) every process writes its samples there and the internal listener
(`serve_internal`) adds them up, so several server processes are served as one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from adapters.settings import ConfigError, parse_listen
from application.ledger import CommandOutcome

REGISTRY = CollectorRegistry()
REQUEST_LATENCY = Histogram(
    "peerpush_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "peerpush_command_outcomes_total",
    "Ledger commands by outcome: done, refused (by a rule), conflict (retries spent), failed",
    ["command", "outcome"],
    registry=REGISTRY,
)
COMMAND_RETRIES = Counter(
    "peerpush_command_retries_total",
    "Version conflicts a command was re-run after",
    ["command"],
    registry=REGISTRY,
)
PROJECTION_LAG = Gauge(
    "peerpush_projection_lag_events",
    "Events the read models are behind the stream",
    registry=REGISTRY,
    multiprocess_mode="max",  # every process sees the same stream: the worst reading counts
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The request method as a label value: a standard method, or ``other``."""
    return method if method in METHODS else "other"


def exposed_registry() -> CollectorRegistry:
    """What a scrape sees: every process's samples in multiprocess mode, else this process's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    return registry


def prepare_multiprocess() -> Path:
    """Before server processes start: their shared metrics directory, emptied of old samples.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` if set (one directory per ``peerpush serve``), otherwise
    a new temporary one, exported so the server processes started next inherit it.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="peerpush-metrics-"
    )
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # a previous run's counters would be added to ours
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def serve_for_processes(listen: str, processes: int) -> Path | None:
    """Serve ``/metrics`` on ``listen`` for ``processes`` server processes about to start.

    Several processes share a metrics directory (``PROMETHEUS_MULTIPROC_DIR``, or a new
    temporary one); that temporary directory is returned for the caller to remove once they
    have stopped (None when there is nothing to remove).
    """
    temporary = None
    if processes > 1:
        chosen = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        directory = prepare_multiprocess()
        temporary = None if chosen else directory
    serve_internal(listen)
    return temporary


def serve_internal(listen: str) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` (an internal address, never the public listener).

    Runs on a daemon thread of the calling process; ``shutdown()`` on the result stops it.
    """
    address = parse_listen(listen)
    if address is None:
        raise ConfigError(f"METRICS_LISTEN must be host:port (it is {listen!r})")
    host, port = address
    server, _ = start_http_server(port, addr=host, registry=exposed_registry())
    return server


PAYOUTS_PAUSED = Gauge(
    "peerpush_payouts_paused",
    "1 while PAYOUTS_PAUSED holds the withdrawal and cash-out workers' Stripe calls",
    registry=REGISTRY,
    multiprocess_mode="max",
)

SETTLEMENT_FAILURES = Counter(
    "peerpush_settlement_failures_total",
    "Challenges whose settlement failed in a worker pass (each is retried on the next pass)",
    registry=REGISTRY,
)
WORKER_PASS_FAILURES = Counter(
    "peerpush_worker_pass_failures_total",
    "Worker passes that raised (the worker keeps going; the next pass retries).",
    ["worker"],
    registry=REGISTRY,
)

SETTLEMENT_BACKLOG = Gauge(
    "peerpush_settlement_backlog",
    "Challenges due for settlement that the last settlement pass left unsettled",
    registry=REGISTRY,
    multiprocess_mode="max",
)
IN_FLIGHT_TOKENS = Gauge(
    "peerpush_in_flight_tokens",
    "Tokens held for a withdrawal or cash-out awaiting Stripe's outcome (read models)",
    ["kind"],  # withdrawals | cashouts
    registry=REGISTRY,
    multiprocess_mode="max",
)
IN_FLIGHT_WALLETS = Gauge(
    "peerpush_in_flight_wallets",
    "Wallets with a withdrawal or cash-out awaiting Stripe's outcome (read models)",
    ["kind"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
POOL_CONNECTIONS = Gauge(
    "peerpush_db_pool_connections",
    "Database pool connections of this process: in use, idle, or requests waiting for one",
    ["pool", "state"],  # pool: events | reads | users; state: in_use | idle | waiting
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

# The worker's scheduled audit and reconciliation (rules §8): the alert rules fire on any
# finding or mismatch, and on a run that did not complete.
AUDIT_FINDINGS = Gauge(
    "peerpush_audit_findings",
    "Findings of the last completed audit verify (0 = the stream, chain and read models agree)",
    registry=REGISTRY,
    multiprocess_mode="max",
)
AUDIT_RUNS = Counter(
    "peerpush_audit_runs_total",
    "Scheduled audit runs by result: clean, findings, error",
    ["result"],
    registry=REGISTRY,
)
AUDIT_SECONDS = Gauge(
    "peerpush_audit_duration_seconds",
    "How long the last audit run took",
    registry=REGISTRY,
    multiprocess_mode="max",
)
CHAIN_HEAD_POSITION = Gauge(
    "peerpush_audit_chain_head_position",
    "Stream position of the chain head the last audit computed (and published)",
    registry=REGISTRY,
    multiprocess_mode="max",
)
RECONCILE_MISMATCHES = Gauge(
    "peerpush_reconcile_mismatches",
    "Mismatches between the ledger and Stripe found by the last completed reconciliation",
    registry=REGISTRY,
    multiprocess_mode="max",
)
RECONCILE_RUNS = Counter(
    "peerpush_reconcile_runs_total",
    "Scheduled reconciliation runs by result: ok, mismatches, error",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Gauge(
    "peerpush_reconcile_duration_seconds",
    "How long the last reconciliation took",
    registry=REGISTRY,
    multiprocess_mode="max",
)


def count_command(ended: CommandOutcome) -> None:
    """The ledger's observer: every command counted by name and outcome (bounded labels:
    command names come from the code, outcomes from a fixed set)."""
    COMMANDS.labels(ended.command, ended.outcome).inc()
    if ended.retries:
        COMMAND_RETRIES.labels(ended.command).inc(ended.retries)


# Every fixed label value exported from the start (at 0), so a rate or an alert sees the
# series before its first event.
for _result in ("clean", "findings", "error"):
    AUDIT_RUNS.labels(_result)
for _result in ("ok", "mismatches", "error"):
    RECONCILE_RUNS.labels(_result)
SAMPLE_SECONDS = 5.0


def refresh_gauges(
    pools: Mapping[str, Any],
    lag: Callable[[], int],
    in_flight: Callable[[], Mapping[str, tuple[int, int]]],
) -> None:
    """Sample what a scrape shows now: this process's pool connections (``pools`` by name;
    None for a store without one), the projection lag, the money in flight (wallets and tokens
    by kind). A database that does not answer leaves the last values."""
    for name, pool in pools.items():
        if pool is None:  # the ledger on an in-memory store (tests)
            continue
        stats = pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        POOL_CONNECTIONS.labels(name, "in_use").set(max(0, size - idle))
        POOL_CONNECTIONS.labels(name, "idle").set(idle)
        POOL_CONNECTIONS.labels(name, "waiting").set(stats.get("requests_waiting", 0))
    with contextlib.suppress(Exception):
        PROJECTION_LAG.set(max(0, lag()))
        for kind, (wallets, tokens) in in_flight().items():
            IN_FLIGHT_WALLETS.labels(kind).set(wallets)
            IN_FLIGHT_TOKENS.labels(kind).set(tokens)


def sample_gauges(refresh: Callable[[], None], stop: threading.Event) -> threading.Thread:
    """Call ``refresh`` (`refresh_gauges` on the process's stores) every few seconds until
    ``stop`` (processes with METRICS_LISTEN)."""

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                refresh()
            stop.wait(SAMPLE_SECONDS)

    thread = threading.Thread(target=loop, name="peerpush-gauges", daemon=True)
    thread.start()
    return thread


class PrometheusWorkerMetrics:
    """The workers' ``WorkerMetrics``, as Prometheus samples."""

    def pass_failed(self, worker: str) -> None:
        WORKER_PASS_FAILURES.labels(worker).inc()

    def settlements_failed(self, count: int) -> None:
        SETTLEMENT_FAILURES.inc(count)

    def payouts_paused(self, paused: bool) -> None:
        PAYOUTS_PAUSED.set(1 if paused else 0)

    def settlement_backlog(self, count: int) -> None:
        SETTLEMENT_BACKLOG.set(count)

    def audit_failed(self) -> None:
        AUDIT_RUNS.labels("error").inc()

    def audited(self, findings: int, seconds: float, position: int) -> None:
        AUDIT_RUNS.labels("findings" if findings else "clean").inc()
        AUDIT_FINDINGS.set(findings)
        AUDIT_SECONDS.set(seconds)
        CHAIN_HEAD_POSITION.set(position)

    def reconcile_failed(self) -> None:
        RECONCILE_RUNS.labels("error").inc()

    def reconciled(self, mismatches: int, seconds: float) -> None:
        RECONCILE_RUNS.labels("mismatches" if mismatches else "ok").inc()
        RECONCILE_MISMATCHES.set(mismatches)
        RECONCILE_SECONDS.set(seconds)


PROMETHEUS = PrometheusWorkerMetrics()
