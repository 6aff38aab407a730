"""PLACEHOLDER — ``Idempotency-Key`` handling (SPEC §7) is being written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi.responses import JSONResponse

from api.bootstrap import Services


def run_idempotent(
    services: Services,
    user_id: UUID,
    route: str,
    key: str | None,
    body: Any,
    action: Callable[[], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Run ``action`` once per (user, route, key); replay its response for a repeat."""
    status, payload = action()
    return JSONResponse(payload, status_code=status)
