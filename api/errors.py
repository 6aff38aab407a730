"""Every error is RFC 9457 ``application/problem+json`` with a stable ``type`` and ``code``.

Domain refusals map to statuses here, in one place; a 500 says nothing about internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.persistence import database_unreachable
from adapters.rate_limits import RateLimited
from application.ports import PaymentUnavailable
from domain import errors as d
from projections.queries import ReadModelBehind

log = logging.getLogger("peerpush.api")

PROBLEM = "application/problem+json"
TYPE_BASE = "https://peerpush.dev/problems/"
RETRY_AFTER_SECONDS = 2  # a database restart takes about this long

# The body of every error answer, as documented in the OpenAPI (components/schemas/Problem).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details. Some codes add members: `errors` (invalid "
    "request), `needed`/`available` (insufficient funds), `available`/`frozen`/`staked`/"
    "`penalties`/`pending` (wallet not empty), `retry_after` (rate limited), …",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string", "description": TYPE_BASE + "{code}"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable, machine-readable"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}

PROBLEM_DESCRIPTIONS = {
    400: "Malformed request body",
    401: "Missing, expired, tampered or wrong-type bearer token",
    402: "Insufficient funds",
    403: "Not allowed to you",
    404: "Not found (another user's resources are not found either)",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Rate limited: see Retry-After",
    503: "Unavailable for now: see Retry-After",
}

STATUS_BY_ERROR: list[tuple[type[d.DomainError], int]] = [
    (d.InsufficientFunds, 402),
    (d.ProofTooLarge, 413),
    (d.InvalidAmount, 422),
    (d.InvalidField, 422),
    (d.ProofTypeNotAllowed, 415),
    (d.UnsupportedPhoto, 415),
    (d.NotRefundable, 409),
    (d.NotCashoutable, 409),
    (d.NotFound, 404),
    (d.Forbidden, 403),
    (d.Conflict, 409),
]


class ApiError(Exception):
    """An HTTP-level refusal that is not a business rule (auth, limits, uploads)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def problem(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + code,
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(error: d.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 400


def problem_of(error: d.DomainError) -> JSONResponse:
    """A refusal as problem+json: its status, code, message and what it declares besides."""
    wait = error.retry_after
    headers = None if wait is None else {"Retry-After": str(wait)}
    return problem(status_of(error), error.code, str(error), headers=headers, **error.details())


def read_model_behind(detail: str, position: int) -> JSONResponse:
    """503: the read models are behind what the query needs; ask again in a second."""
    headers = {"Retry-After": "1"}
    return problem(503, "read_model_behind", detail, headers=headers, position=position)


def install(app: FastAPI) -> None:
    @app.exception_handler(d.DomainError)
    async def domain_error(_: Request, exc: d.DomainError) -> JSONResponse:
        return problem_of(exc)

    @app.exception_handler(ReadModelBehind)
    async def behind(_: Request, exc: ReadModelBehind) -> JSONResponse:
        return read_model_behind(str(exc), exc.position)

    @app.exception_handler(PaymentUnavailable)
    async def stripe_unavailable(_: Request, exc: PaymentUnavailable) -> JSONResponse:
        return problem(
            503,
            "payment_provider_unavailable",
            "Stripe could not be reached; try again",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return problem(
            429,
            "rate_limited",
            str(exc),
            headers={"Retry-After": str(exc.retry_after)},
            bucket=exc.bucket,
            retry_after=exc.retry_after,
        )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return problem(422, "invalid_request", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "malformed_body",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
        }.get(exc.status_code, "http_error")
        return problem(
            exc.status_code,
            code,
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if database_unreachable(exc):  # down or restarting: try again (a key makes it safe)
            log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
            return problem(
                503,
                "database_unavailable",
                "the service lost its database just now; try again shortly (with the same "
                "Idempotency-Key, a command cannot take effect twice)",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        # One event, with the request's id (the request middleware has finished by now).
        route = route_template(request.scope)
        log.exception(
            "unhandled error",
            extra={
                "request_id": getattr(request.state, "request_id", None),
                "user_id": getattr(request.state, "user_id", None),
                "route": route,
                "error": type(exc).__name__,
            },
        )
        return problem(500, "internal_error", "something went wrong; it has been logged")


def route_template(scope: Mapping[str, Any]) -> str:
    """The matched route's template with the prefix it is mounted under (``/v1/challenges/
    {challenge_id}``), or ``unmatched``: a bounded label, and no id in the logs' routes.

    The route knows its path within its router; the prefix is the request path's leading
    segments before the route's own.
    """
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return "unmatched"
    raw = [s for s in str(scope.get("path", "")).split("/") if s]
    own = [s for s in path.split("/") if s]
    prefix = raw[: max(0, len(raw) - len(own))]
    return "/" + "/".join([*prefix, *own])


def document(app: FastAPI, routers: list[APIRouter]) -> None:
    """Document, on every route, the problem+json answers it can give.

    Derived from each route's dependencies and parameters, so a new route is documented
    without being listed here: 401 behind a bearer token, 403 when admin-only, 422 with any
    input, 409 and 422 with ``Idempotency-Key``, 503 everywhere (``min_position``, a database
    that cannot be reached); plus every 4xx/5xx the route names itself. Call it before the
    routers are included (it is idempotent).
    """
    from api.deps import admin_user, current_user

    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        calls, params = route_inputs(route.dependant)
        names = {p.alias.lower() for p in params}
        statuses = {int(s) for s in route.responses if str(s).isdigit() and int(s) >= 400}
        if current_user in calls:
            statuses.add(401)
        if admin_user in calls:
            statuses.add(403)
        has_body = route.body_field is not None or "requestBody" in (route.openapi_extra or {})
        if has_body:
            statuses.add(400)  # a body that cannot be parsed at all (e.g. not UTF-8)
        if params or has_body:
            statuses.add(422)
        if "idempotency-key" in names:
            statuses |= {409, 422}
        statuses.add(503)  # the database may be unreachable for a moment, on any route
        for status in sorted(statuses):
            key: int | str = str(status) if str(status) in route.responses else status
            entry = route.responses.setdefault(key, {})
            entry.setdefault("description", PROBLEM_DESCRIPTIONS.get(status, "Error"))
            entry.setdefault("content", {})[PROBLEM] = {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
        return app.openapi_schema  # type: ignore[return-value]  # set by generate() just above

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def route_inputs(dependant: Dependant) -> tuple[set[Any], list[Any]]:
    """Every callable a route depends on, and every parameter it reads (recursively)."""
    calls = {dependant.call}
    params = [
        *dependant.path_params,
        *dependant.query_params,
        *dependant.header_params,
        *dependant.cookie_params,
        *dependant.body_params,
    ]
    for sub in dependant.dependencies:
        sub_calls, sub_params = route_inputs(sub)
        calls |= sub_calls
        params += sub_params
    return calls, params
