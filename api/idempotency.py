"""``Idempotency-Key`` handling for mutating routes (SPEC §7).

With a key, scoped to the user and the route and kept 24 h:

- the same key and body → the first response again (status and body), marked
  ``Idempotent-Replayed: true``;
- the same key with another body → 422 ``idempotency_key_reused``;
- the same key while the first request still runs → 409 ``idempotency_key_in_use``
  (``Retry-After: 1``); a claim left ``running`` for 60 s is taken to be abandoned and the next
  request runs the command again — money commands derive their ids from the key, so the ledger
  refuses or repeats the same effect rather than making a second one;
- an error raised by the command (a domain refusal, a 4xx/5xx) *releases* the key: nothing was
  stored, so the client may fix the cause (e.g. deposit more) and retry with the same key.

The stored response is written just after the command's events, not in their transaction (the
event store and this table are different connections); the derived ids above are what make a
crash between the two harmless. Without a key the command simply runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi.responses import JSONResponse

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
    if key is None:
        status, payload = action()
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

    try:
        status, payload = action()
    except BaseException:
        try:
            store.release(claim)
        except Exception:  # the command's own error matters more; the claim ages out anyway
            log.exception("could not release idempotency key for %s", route)
        raise
    if not store.complete(claim, status, payload):
        log.warning("idempotency claim on %s was taken over before it completed", route)
    return JSONResponse(payload, status_code=status)


def request_hash(body: Any) -> str:
    """A stable digest of a request body: key order and formatting do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
