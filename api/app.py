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

from fastapi import Depends, FastAPI, Request, Response

from api import errors
from api.bootstrap import Services, build_services
from api.deps import plain_url
from api.metrics import REQUEST_LATENCY, method_label
from api.middleware import BodySizeLimit, SecurityHeaders
from api.routers import clock, ops, platform, wallet
from api.workers import Workers

DESCRIPTION = """The PeerPush ledger: tokens (1 token = 1 US cent), wallets and FIFO lots,
challenges with stakes, proofs and peer review, settlement, Stripe deposits and refunds.

Every command answers with the stream `position` of its last event; pass it back as
`min_position` on a query to read your own write. Errors are RFC 9457 problem+json.
"""


def create_app(services: Services | None = None, *, start_workers: bool | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services or build_services()
        app.state.services = built
        run = built.config.run_workers if start_workers is None else start_workers
        workers = Workers(built)
        if run:
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


# SPEC §7: a client's request id is recorded in permanent, hash-chained events and echoed in a
# header, so only short, plain ids are kept; anything else is replaced by the server's own.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accepted_request_id(sent: str | None) -> str:
    """The client's ``X-Request-Id`` if acceptable, else a new id of the server's."""
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent
    return str(uuid.uuid4())


def routers() -> list:  # type: ignore[type-arg]
    """Every router, in the order they appear in /docs."""
    found = [ops.router, wallet.router, platform.router, clock.router]
    for module in ("auth", "deposits", "payouts", "challenges", "submissions"):
        try:
            imported = __import__(f"api.routers.{module}", fromlist=["router"])
        except ModuleNotFoundError as e:
            if e.name != f"api.routers.{module}":
                raise
            continue
        found.append(imported.router)
    return found
