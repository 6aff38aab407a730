"""Every error is RFC 9457 ``application/problem+json`` with a stable ``type`` and ``code``.

Domain refusals map to statuses here, in one place; a 500 says nothing about internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.rate_limits import RateLimited
from domain import errors as d

log = logging.getLogger("peerpush.api")

PROBLEM = "application/problem+json"
TYPE_BASE = "https://peerpush.dev/problems/"

STATUS_BY_ERROR: list[tuple[type[d.DomainError], int]] = [
    (d.InsufficientFunds, 402),
    (d.InvalidAmount, 422),
    (d.InvalidField, 422),
    (d.ProofTypeNotAllowed, 415),
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


def install(app: FastAPI) -> None:
    @app.exception_handler(d.DomainError)
    async def domain_error(_: Request, exc: d.DomainError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(exc, d.InsufficientFunds):
            extra = {"needed": exc.needed, "available": exc.available}
        elif isinstance(exc, d.NotRefundable):
            extra = {"requested": exc.requested, "refundable": exc.refundable}
        return problem(status_of(exc), exc.code, str(exc), **extra)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return problem(429, "rate_limited", str(exc),
                       headers={"Retry-After": str(exc.retry_after)},
                       bucket=exc.bucket, retry_after=exc.retry_after)

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
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return problem(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "something went wrong; it has been logged")
