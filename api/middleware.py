"""Pure ASGI middleware of the public listener: the request's id and log line, request body
limits and browser headers.

Pure ASGI (not ``BaseHTTPMiddleware``): a body can be refused before it is read, streamed
bodies are counted as they arrive, and a request pays no extra task, queue or copy of its
response for passing through (``BaseHTTPMiddleware`` cost ``/v1/health`` about a third of its
rate, docs/performance.md). The limits and headers read the settings per request from the
app's services (built in the lifespan), so a test can switch a running app to production.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.logs import REQUEST_ID
from adapters.metrics import REQUEST_LATENCY, method_label
from adapters.settings import ServiceSettings
from api.errors import problem, route_template

log = logging.getLogger("peerpush.http")

# The one route whose body may carry a photo (multipart), limited by max_upload_bytes.
UPLOAD_ROUTE = re.compile(r"^/v1/challenges/[^/]+/submissions/?$")
DOCS_PATHS = ("/docs", "/redoc")

# JSON answers and our own HTML pages (the simulated checkout: one inline style) load nothing.
STRICT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
)
# /docs and /redoc load Swagger UI / ReDoc from this server (api.app.DOCS_ASSETS), start it
# with an inline script and fetch /openapi.json; ReDoc runs a worker from a blob.
DOCS_POLICY = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"


def config_of(scope: Scope) -> ServiceSettings:
    """The running app's settings; the defaults before the lifespan has built them."""
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    config = getattr(services, "config", None)
    return config if isinstance(config, ServiceSettings) else ServiceSettings.model_construct()


class BodySizeLimit:
    """413 for any body above its route's limit, announced (Content-Length) or streamed.

    A streamed body that passes the limit is answered 413 at once; the app is then told the
    client has gone (``http.disconnect``), and whatever it still tries to send is dropped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = config_of(scope)
        upload = scope["method"] == "POST" and UPLOAD_ROUTE.match(scope["path"])
        limit = config.max_upload_bytes if upload else config.max_body_bytes
        announced = _content_length(scope["headers"])
        if announced is not None and announced > limit:
            await _refuse(limit, scope, receive, send)
            return

        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused, started
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if not started:
                        await _refuse(limit, scope, receive, send)
                    refused = started = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:  # after a refusal the app only fails on the client having gone
                raise


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem(
        413,
        "request_too_large",
        f"request bodies here are at most {limit} bytes",
        headers={"Connection": "close"},
        limit=limit,
    )
    await response(scope, receive, send)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


class SecurityHeaders:
    """Headers that stop browsers framing, sniffing or downgrading what we serve.

    HSTS only in production: development is served over plain http.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(DOCS_PATHS)
        added: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", (DOCS_POLICY if docs else STRICT_POLICY).encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if config_of(scope).production:
            added.append((b"strict-transport-security", HSTS.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in added if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


# rules §7: a client's request id is recorded in permanent, hash-chained events and echoed in a
# header, so only short, plain ids are kept; anything else is replaced by the server's own.
ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accepted_request_id(sent: str | None) -> str:
    """The client's ``X-Request-Id`` if acceptable, else a new id of the server's."""
    if sent is not None and ACCEPTED_REQUEST_ID.fullmatch(sent):
        return sent
    return new_request_id()


def new_request_id() -> str:
    """A random version-4 UUID, drawn from the process's own generator: an id needs to be
    unique, not secret, and ``uuid.uuid4()`` (a system call per request) cost /v1/health
    a twentieth of its time (docs/performance.md)."""
    h = f"{random.getrandbits(122):031x}"  # 122 random bits; the version and variant are fixed
    variant = "89ab"[int(h[15], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[16:19]}-{h[19:31]}"


class RequestLog:
    """Gives each request its id (``X-Request-Id``) and, once answered, one log line and one
    latency sample: request id, user id (set by ``api.deps.current_user``; never an email),
    route template, status and duration.

    The id is in ``request.state.request_id`` for the events' cause and in ``REQUEST_ID`` for
    every log record made while the request runs (commands included).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = accepted_request_id(sent.decode("latin-1") if sent is not None else None)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        status = 500  # unless the app answers: an exception is answered 500 outside
        started = time.perf_counter()

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers: list[Any] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = method_label(scope["method"])
            REQUEST_LATENCY.labels(method, route, str(status)).observe(seconds)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "user_id": state.get("user_id"),
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            REQUEST_ID.reset(token)
