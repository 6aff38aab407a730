"""The HTTP application: ``create_app()`` builds it; ``make run`` serves it with uvicorn.

Routes translate HTTP to one application call or one read-model query and back; domain
errors become problem+json in ``api.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi_offline import FastAPIOffline

from adapters.logs import configure_logging
from adapters.metrics import sample_gauges
from adapters.settings import ServiceSettings
from api import admin_pages, errors, idempotency
from api.bootstrap import Services, build_services
from api.deps import plain_url
from api.middleware import BodySizeLimit, RequestLog, SecurityHeaders
from api.routers import (
    auth,
    challenges,
    clock,
    deposits,
    ops,
    payouts,
    platform,
    submissions,
    wallet,
)

DESCRIPTION = """The PeerPush ledger: tokens (1 token = 1 US cent), wallets and FIFO lots,
challenges with stakes, proofs and peer review, settlement, Stripe deposits and refunds.

Every command answers with the stream `position` of its last event; pass it back as
`min_position` on a query to read your own write. Errors are RFC 9457 problem+json.
"""


def create_app(
    services: Services | None = None,
    *,
    config: ServiceSettings | None = None,
    start_workers: bool | None = None,
) -> FastAPI:
    """The HTTP app over ``services``, or over services built at start-up from ``config`` (the
    settings `peerpush serve` already read; read from the environment when not given)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services or build_services(config)
        if services is None:  # a server's process: its logs go out as LOG_FORMAT says
            configure_logging(built.config.log_format, built.config.log_level)
        app.state.services = built
        workers = built.workers()
        if built.config.serve_runs_workers(start_workers):
            workers.start()
        if built.config.metrics_listen:  # scraped: keep the pool and money gauges fresh
            sample_gauges(built.refresh_gauges, workers.stop)
        try:
            yield
        finally:
            workers.shutdown()
            if services is None:
                built.close()

    # /docs and /redoc with Swagger UI and ReDoc served from the fastapi-offline wheel: they
    # render with no internet (FastAPI's default pages load them from a CDN).
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="PeerPush Ledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(plain_url)],
    )
    errors.install(app)
    idempotency.install(app)

    app.add_middleware(BodySizeLimit)  # pure ASGI: added last, so they run first
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)  # outermost of ours: its line covers the others' answers

    found = routers()
    errors.document(app, found)
    for router in found:
        app.include_router(router, prefix="/v1")
    app.include_router(admin_pages.router)  # HTML for browsers, outside the JSON API
    return app


DOCS_ASSETS = "/docs/assets"


def routers() -> list[APIRouter]:
    """Every router, in the order they appear in /docs.

    Imported by name: a router renamed or removed fails at import, never silently vanishes
    from the API (``tests/api/test_routers.py`` checks each contributes its paths).
    """
    return [
        ops.router,
        wallet.router,
        platform.router,
        clock.router,
        auth.router,
        deposits.router,
        payouts.router,
        challenges.router,
        submissions.router,
    ]
