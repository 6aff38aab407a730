"""Operations: liveness, readiness, metrics, version."""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PAYOUTS_PAUSED, PROJECTION_LAG, ServicesDep, exposed_registry
from api.errors import problem
from api.threaded_routes import ThreadedRoute

router = APIRouter(tags=["ops"], route_class=ThreadedRoute)

MAX_READY_LAG = 10_000


@router.get("/health")
async def health() -> dict[str, str]:  # no I/O: answered on the event loop
    return {"status": "ok"}


@router.get(
    "/ready", responses={503: {"description": "the database is unreachable or read models lag"}}
)
def ready(services: ServicesDep) -> Any:
    try:
        # The read models' small pool first: it fails fast while the database is away,
        # where the event store's client retries for a long while.
        position = services.reads.position()
        head = services.ledger.head()
    except Exception:
        return problem(503, "not_ready", "the database is not reachable")
    lag = max(0, head - position)
    PROJECTION_LAG.set(lag)
    paused = services.config.payouts_paused  # withdrawals and cash-outs wait (PAYOUTS_PAUSED)
    PAYOUTS_PAUSED.set(1 if paused else 0)
    if services.config.production:  # the stream's head and lag are for operators' metrics
        if lag > MAX_READY_LAG:
            return problem(503, "not_ready", "the read models are far behind")
        # Named only while paused: operators must see it; the public learns nothing else.
        return {"status": "ready", "payouts_paused": True} if paused else {"status": "ready"}
    if lag > MAX_READY_LAG:
        return problem(503, "not_ready", "the read models are far behind", lag=lag)
    return {
        "status": "ready",
        "head": head,
        "read_models_position": position,
        "lag": lag,
        "payouts_paused": paused,
    }


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        404: {"description": "in production: metrics are on the internal METRICS_LISTEN only"},
    },
)
def metrics(services: ServicesDep) -> Response:
    """Development only; production serves metrics on the internal listener (METRICS_LISTEN)."""
    if services.config.production:
        return problem(404, "not_found", "Not Found")
    with contextlib.suppress(Exception):  # metrics must be served even if the DB is down
        services.refresh_gauges()
    return Response(generate_latest(exposed_registry()), media_type=CONTENT_TYPE_LATEST)


@router.get("/version")
def get_version() -> dict[str, str]:
    try:
        v = version("peerpush-ledger")
    except PackageNotFoundError:
        v = "0+unknown"
    return {"name": "peerpush-ledger", "version": v, "api": "v1"}
