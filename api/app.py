"""The HTTP application: ``create_app()`` builds it; ``make run`` serves it with uvicorn.

Routes translate HTTP to one application call or one read-model query and back; domain
errors become problem+json in ``api.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
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
        add_routes(app, router, prefix="/v1")
    add_routes(app, admin_pages.router)  # HTML for browsers, outside the JSON API
    return app


def add_routes(app: FastAPI, router: APIRouter, prefix: str = "") -> None:
    """``router``'s routes, added to the app's own list as `include_router` did before
    FastAPI 0.12x. FastAPI now keeps an included router as one entry that matches a request
    by scanning its routes twice, after every router listed before it: 290 µs of a join's
    CPU in process (docs/performance.md), against one scan of plain routes. The routes keep
    everything they were declared with; the app's own dependencies come first, as when
    included."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: only API routes can be added")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            route_class_override=type(route),
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
        )


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
