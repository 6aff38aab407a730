"""``Idempotency-Key`` handling for mutating routes (SPEC §7).

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
its id from the key's record (`run_creating`): drawn at random when the key is first claimed,
the same for every retry of the key (after an error, a lost commit or a takeover), so a retry
can never make a second one; without a key every request gets a new random id. Nothing the
client sends becomes an id.

A route that passes a *responder* has its response stored in the same transaction as the
command's events (`adapters.atomic_responses`): a crash after the commit leaves the response to
replay, and a failure storing it rolls the events back. Otherwise (a command that saved no
events, or a route without a responder) the response is stored just after the command.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from fastapi.responses import JSONResponse

from adapters.atomic_responses import PendingResponse, Responder, responding
from adapters.users import Outcome
from api.bootstrap import Services
from api.errors import ApiError

log = logging.getLogger("peerpush.api")

MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"


def run_idempotent(
    services: Services,
    user_id: UUID,
    route: str,
    key: str | None,
    body: Any,
    action: Callable[[], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Run ``action`` once per (user, route, key); replay its response for a repeat."""
    return run_creating(services, user_id, route, key, body, lambda _: action())


def run_creating(
    services: Services,
    user_id: UUID,
    route: str,
    key: str | None,
    body: Any,
    action: Callable[[UUID], tuple[int, dict[str, Any]]],
    respond: Responder | None = None,
) -> JSONResponse:
    """Run ``action(operation_id)`` once per (user, route, key); replay its response for a
    repeat. ``operation_id`` is the key's (see the module's docstring), or new without a key.

    With ``respond``, the response a save of the command stores with its events is built by
    ``respond(operation_id, position, saved_aggregates)``; it must answer what ``action``
    answers, and it is what this returns."""
    if key is None:
        status, payload = action(uuid4())
        return JSONResponse(payload, status_code=status)
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key is 1–{MAX_KEY_LENGTH} printable ASCII characters",
        )

    store = services.idempotency
    claim = store.begin(user_id, route, key, request_hash(body))
    if claim.outcome is Outcome.REPLAY:
        assert claim.status is not None
        return JSONResponse(claim.body, status_code=claim.status, headers={REPLAYED_HEADER: "true"})
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

    assert claim.operation_id is not None, "a started claim names its operation"
    pending = PendingResponse(claim, claim.operation_id, respond) if respond else None
    try:
        with responding(pending):
            status, payload = action(claim.operation_id)
    except BaseException:
        try:
            # Keeps the record and its operation id; a response already stored stays.
            store.release(claim)
        except Exception:  # the command's own error matters more; the claim ages out anyway
            log.exception("could not release idempotency key for %s", route)
        raise
    if pending is not None and pending.written is not None:
        status, payload = pending.written
        return JSONResponse(payload, status_code=status)
    if not store.complete(claim, status, payload):
        log.warning("idempotency claim on %s was taken over before it completed", route)
    return JSONResponse(payload, status_code=status)


def request_hash(body: Any) -> str:
    """A stable digest of a request body: key order and formatting do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
