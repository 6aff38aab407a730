"""``Idempotency-Key`` on mutating routes: the HTTP side of ``application.idempotency``.

Routes take the key as one dependency, `Idempotent`: it knows the caller, the header and the
route (its template with the request's path parameters, e.g. ``POST /wallet/withdrawals``: the
strings keys have always been stored under); the route opens an `operation` around its one
application call and answers through it. A replay never reaches the route's code: it is
raised as `Replayed` and answered by the handler `install` registers, marked
``Idempotent-Replayed: true``. Every route that takes a key goes through `Idempotent`.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentUser, ServicesDep
from application.idempotency import IdempotentCommand, Replayed, Respond

__all__ = ["REPLAYED_HEADER", "Idempotent", "Respond", "install", "route_key"]

REPLAYED_HEADER = "Idempotent-Replayed"


def replayed_response(replay: Replayed) -> JSONResponse:
    """The response first given for the key, again."""
    return JSONResponse(replay.body, status_code=replay.status, headers={REPLAYED_HEADER: "true"})


def install(app: FastAPI) -> None:
    """Answer a replayed request with the response stored for its key."""

    @app.exception_handler(Replayed)
    async def replayed(_: Request, exc: Replayed) -> JSONResponse:
        return replayed_response(exc)


def route_key(request: Request) -> str:
    """The route a key is scoped to: method and path template, the template's parameters
    filled in from the request (``POST /challenges/{id}/publish`` with that id), without the
    ``/v1`` prefix. An id is written in its canonical form (an upper-case or unhyphenated
    spelling of it is the same challenge, and the same key)."""
    route = request.scope["route"]
    params = {name: _canonical(value) for name, value in request.path_params.items()}
    path = str(route.path).removeprefix("/v1").format(**params)
    return f"{request.method} {path}"


def _canonical(value: Any) -> str:
    try:
        return str(UUID(str(value)))
    except ValueError:
        return str(value)


async def idempotent_request(
    request: Request,
    response: Response,
    services: ServicesDep,
    user: CurrentUser,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> IdempotentCommand:
    """The command's idempotency context. Async because it only builds an object: as a plain
    ``def`` it cost every command request a trip to the threadpool and back."""
    status = getattr(request.scope["route"], "status_code", None) or 200

    def answered(status: int) -> None:
        response.status_code = status

    return IdempotentCommand(
        services.idempotency, user.id, route_key(request), status, idempotency_key, answered
    )


Idempotent = Annotated[IdempotentCommand, Depends(idempotent_request)]
