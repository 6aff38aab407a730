"""``Idempotency-Key`` handling for mutating routes (rules §7).

With a key, scoped to the user and the route and kept 24 h:

- the same key and body → the first response again (status and body), marked
  ``Idempotent-Replayed: true``;
- the same key with another body → 422 ``idempotency_key_reused``;
- the same key while the first request still runs → 409 ``idempotency_key_in_use``
  (``Retry-After: 1``); a claim left ``running`` for 60 s is taken to be abandoned and the next
  request runs the command again;
- an error raised by the command (a domain refusal, a 4xx/5xx) *releases* the key: no response
  was stored, so the client may fix the cause (e.g. deposit more) and retry with the same key.

A command that creates something (a withdrawal, an adjustment, a checkout, a challenge) takes
its id from the key's record (`Operation.id`): drawn at random when the key is first claimed,
the same for every retry of the key (after an error, a lost commit or a takeover), so a retry
can never make a second one; without a key every request gets a new random id. Nothing the
client sends becomes an id.

A route that passes a *responder* has its response stored in the same transaction as the
command's events (`adapters.atomic_responses`): a crash after the commit leaves the response to
replay, and a failure storing it rolls the events back. Otherwise (a command that saved no
events, such as a re-join, or a route without a responder: the deposit checkout, whose effect
is at Stripe) the response is stored just after the command.

Routes take the key as one dependency, `Idempotent`: it knows the caller, the header and the
route (its template with the request's path parameters, e.g. ``POST /wallet/withdrawals``: the
strings keys have always been stored under); the route opens an `operation` around its one
application call and answers through it. A replay never reaches the route's code: it is
raised as `Replayed` and answered by the handler `install` registers. Every route that takes a
key goes through `Idempotent`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.atomic_responses import PendingResponse, responding
from adapters.users import Claim, IdempotencyStore, Outcome
from api.deps import CurrentUser, ServicesDep
from api.errors import ApiError

log = logging.getLogger("peerpush.api")

MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"


def claim_key(store: IdempotencyStore, user_id: UUID, route: str, key: str, body: Any) -> Claim:
    """Claim (user, route, key) for ``body``: a started claim, or the answer a repeat gets
    (`Replayed`, 422 for another body, 409 while the first still runs)."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key is 1–{MAX_KEY_LENGTH} printable ASCII characters",
        )
    claim = store.begin(user_id, route, key, request_hash(body))
    if claim.outcome is Outcome.REPLAY:
        assert claim.status is not None
        raise Replayed(claim.status, claim.body)
    if claim.outcome is Outcome.MISMATCH:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    if claim.outcome is Outcome.RUNNING:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed",
            headers={"Retry-After": "1"},
        )
    return claim


class Replayed(Exception):
    """Not an error: a repeated request, to be answered with the response first given for its
    key (by the handler `install` registers)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers={REPLAYED_HEADER: "true"})


def install(app: FastAPI) -> None:
    """Answer a replayed request with the response stored for its key."""

    @app.exception_handler(Replayed)
    async def replayed(_: Request, exc: Replayed) -> JSONResponse:
        return exc.response()


Answer = TypeVar("Answer", bound=BaseModel)

# (operation id, last position, aggregates saved) -> the response, or None when this save is
# not one the response can be built from (it is then stored after the command).
Respond = Callable[[UUID, int, Sequence[object]], BaseModel | None]


@dataclass
class Operation:
    """One run of a command under a claimed key (or without a key): its id, and the answer
    (with its status) stored for the key."""

    id: UUID
    status: int
    response: Response | None = None
    store: IdempotencyStore | None = None
    claim: Claim | None = None
    build: Respond | None = None
    pending: PendingResponse | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.claim is not None and self.build is not None:
            self.pending = PendingResponse(self.claim, self.id, self._stored)

    def _stored(self, operation_id: UUID, position: int, saved: Sequence[object]) -> Any:
        # A save writes events only when the command changed something, so a response built
        # here carries the route's own status (a join's 201, not a re-join's 200).
        assert self.build is not None
        built = self.build(operation_id, position, saved)
        return None if built is None else (self.status, built.model_dump(mode="json"))

    def answer(self, answer: Answer, status: int | None = None) -> Answer:
        """The route's answer, with ``status`` when it depends on the outcome (the route's
        status otherwise): stored for the key unless the command's save stored one, in which
        case that one (the same, built from what the save wrote) is the answer."""
        written = self.pending.written if self.pending is not None else None
        if written is not None:
            status, answer = written[0], type(answer).model_validate(written[1])
        elif status is None:
            status = self.status
        if self.response is not None:
            self.response.status_code = status
        if written is not None or self.claim is None or self.store is None:
            return answer
        if not self.store.complete(self.claim, status, answer.model_dump(mode="json")):
            log.warning(
                "idempotency claim on %s was taken over before it completed", self.claim.route
            )
        return answer


@dataclass
class IdempotentRequest:
    """A mutating request's ``Idempotency-Key`` (maybe none), its caller and its route."""

    store: IdempotencyStore
    user_id: UUID
    route: str
    status: int
    key: str | None
    response: Response | None = None

    @contextmanager
    def operation(
        self, body: BaseModel | None, respond: Respond | None = None
    ) -> Iterator[Operation]:
        """Claim the key for ``body`` (None: a route without a body) and run the block once
        per key: a repeat is replayed (`Replayed`) before the block. The block's error gives
        the key back (no answer was stored), and the block answers through `Operation.answer`.

        With ``respond``, the save of the command stores ``respond(id, position, saved)`` with
        its events (`adapters.atomic_responses`)."""
        if self.key is None:
            yield Operation(uuid4(), self.status, self.response)
            return
        # The JSON form, as the routes hashed their bodies before this dependency (a
        # datetime's ISO form, not ``str()``'s), so a key stored then still matches.
        fingerprint = {} if body is None else body.model_dump(mode="json")
        claim = claim_key(self.store, self.user_id, self.route, self.key, fingerprint)
        assert claim.operation_id is not None, "a started claim names its operation"
        operation = Operation(
            claim.operation_id, self.status, self.response, self.store, claim, respond
        )
        try:
            with responding(operation.pending):
                yield operation
        except BaseException:
            try:
                self.store.release(claim)
            except Exception:  # the command's own error matters more; the claim ages out anyway
                log.exception("could not release idempotency key for %s", self.route)
            raise


def route_key(request: Request) -> str:
    """The route a key is scoped to: method and path template, the template's parameters
    filled in from the request (``POST /challenges/{id}/publish`` with that id), without the
    ``/v1`` prefix. Exactly the strings keys were stored under before this dependency: the
    routes typed them with the parsed id, so an id is written in its canonical form (an
    upper-case or unhyphenated spelling of it is the same challenge, and the same key)."""
    route = request.scope["route"]
    params = {name: _canonical(value) for name, value in request.path_params.items()}
    path = str(route.path).removeprefix("/v1").format(**params)
    return f"{request.method} {path}"


def _canonical(value: Any) -> str:
    try:
        return str(UUID(str(value)))
    except ValueError:
        return str(value)


def idempotent_request(
    request: Request,
    response: Response,
    services: ServicesDep,
    user: CurrentUser,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> IdempotentRequest:
    status = getattr(request.scope["route"], "status_code", None) or 200
    return IdempotentRequest(
        services.idempotency, user.id, route_key(request), status, idempotency_key, response
    )


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]


def request_hash(body: Any) -> str:
    """A stable digest of a request body: key order and formatting do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
