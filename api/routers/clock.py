"""The test clock (development only): move business time forward, like Stripe's.

The offset is shared by every process (``adapters.test_clock``), so an advance made here is
the business time of the other API processes and of the workers too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from api.deps import CurrentUser, ServicesDep
from api.errors import ApiError
from api.schemas import Body
from api.threaded_routes import ThreadedRoute
from application.ports import MovableClock

router = APIRouter(prefix="/test-clock", tags=["test clock"], route_class=ThreadedRoute)


class AdvanceIn(Body):
    seconds: Annotated[int, Field(strict=True, gt=0, le=366 * 24 * 3600)]


@router.get("")
def now(_: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    return {"now": services.clock.now().isoformat()}


@router.post("/advance")
def advance(body: AdvanceIn, _: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    clock = services.clock
    if services.config.production or not isinstance(clock, MovableClock):
        raise ApiError(404, "not_found", "there is no test clock in production")
    moved = clock.advance(timedelta(seconds=body.seconds))
    return {"now": moved.isoformat()}
