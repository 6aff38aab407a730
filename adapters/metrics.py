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

import os
import tempfile
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from adapters.settings import ConfigError, parse_listen

REGISTRY = CollectorRegistry()
REQUEST_LATENCY = Histogram(
    "peerpush_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "peerpush_command_outcomes_total",
    "Mutating requests by outcome",
    ["route", "outcome"],
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


class PrometheusWorkerMetrics:
    """The workers' ``WorkerMetrics``, as Prometheus samples."""

    def pass_failed(self, worker: str) -> None:
        WORKER_PASS_FAILURES.labels(worker).inc()

    def settlements_failed(self, count: int) -> None:
        SETTLEMENT_FAILURES.inc(count)

    def payouts_paused(self, paused: bool) -> None:
        PAYOUTS_PAUSED.set(1 if paused else 0)


PROMETHEUS = PrometheusWorkerMetrics()
