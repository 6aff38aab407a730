"""Prometheus metrics of this process (a registry of its own, no global state leaks)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
)
SETTLEMENT_FAILURES = Counter(
    "peerpush_settlement_failures_total",
    "Challenges whose settlement failed in a worker pass (each is retried on the next pass)",
    registry=REGISTRY,
)
