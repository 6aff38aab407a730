"""The HTTP application: ``create_app()`` builds it; ``make run`` serves it with uvicorn.

Routes translate HTTP to one application call or one read-model query and back; domain
errors become problem+json in ``api.errors``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from adapters.metrics import REQUEST_LATENCY, method_label
from adapters.settings import ServiceSettings
from api import errors, idempotency
from api.bootstrap import Services, build_services
from api.deps import plain_url
from api.middleware import BodySizeLimit, SecurityHeaders
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
        app.state.services = built
        workers = built.workers()
        if built.config.serve_runs_workers(start_workers):
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

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = accepted_request_id(request.headers.get("X-Request-Id"))
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        REQUEST_LATENCY.labels(
            method_label(request.method), path, str(response.status_code)
        ).observe(time.perf_counter() - started)
        response.headers["X-Request-Id"] = request.state.request_id
        return response

    app.add_middleware(BodySizeLimit)  # pure ASGI: added last, so they run first
    app.add_middleware(SecurityHeaders)

    found = routers()
    errors.document(app, found)
    for router in found:
        app.include_router(router, prefix="/v1")
    return app


# rules §7: a client's request id is recorded in permanent, hash-chained events and echoed in a
# header, so only short, plain ids are kept; anything else is replaced by the server's own.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accepted_request_id(sent: str | None) -> str:
    """The client's ``X-Request-Id`` if acceptable, else a new id of the server's."""
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent
    return str(uuid.uuid4())


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
