"""The HTTP application: ``create_app()`` builds it; ``make run`` serves it with uvicorn.

Routes translate HTTP to one application call or one read-model query and back; domain
errors become problem+json in ``api.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from adapters.settings import ServiceSettings
from api import errors, idempotency
from api.bootstrap import Services, build_services
from api.deps import plain_url
from api.middleware import BodySizeLimit, RequestContext, SecurityHeaders
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
from api.workers import Workers, runs_workers_in_process

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
        app.state.services = built
        workers = Workers(built)
        if runs_workers_in_process(built.config, start_workers):
            workers.start()
        try:
            yield
        finally:
            workers.shutdown()
            if services is None:
                built.close()

    app = FastAPI(
        title="PeerPush Ledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(plain_url)],
    )
    errors.install(app)
    idempotency.install(app)

    # All pure ASGI; the last added runs first: headers, then body limits, then the request's
    # id and latency (a body refused with 413 never reaches the routes).
    app.add_middleware(RequestContext)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(SecurityHeaders)

    found = routers()
    errors.document(app, found)
    for router in found:
        app.include_router(router, prefix="/v1")
    return app


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
