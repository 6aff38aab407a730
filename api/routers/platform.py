"""Admin: revenue, the journal, adjustments, erasing a user, and the raw stream for auditors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminUser, LedgerDep, ServicesDep, request_id, wait_for_position
from api.errors import ApiError
from api.idempotency import Idempotent
from api.schemas import Body, Tokens
from api.threaded_routes import ThreadedRoute
from application.erasure import erase_user
from domain.aggregate import Cause

router = APIRouter(tags=["platform"], route_class=ThreadedRoute)


class AdjustmentIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": "0b6c8a52-2f0e-4a8e-9d3c-6f1f5c1e2a10",
                    "direction": "credit",
                    "tokens": 500,
                    "reason": "goodwill credit for ticket #4211",
                }
            ]
        },
    )

    user_id: UUID
    direction: Literal["credit", "debit"]
    tokens: Tokens
    reason: Annotated[str, Field(min_length=1, max_length=500)]


@router.get("/platform/revenue")
def revenue(
    _: AdminUser,
    services: ServicesDep,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    group_by: Literal["day", "challenge"] = "day",
    min_position: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    wait_for_position(services, min_position)
    rows = services.reads.revenue(from_, to, group_by)
    return {"group_by": group_by, "items": rows}


@router.get("/platform/journal")
def journal(
    _: AdminUser,
    services: ServicesDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    try:
        entries, next_cursor = services.reads.journal(cursor, limit)
    except ValueError:
        raise ApiError(422, "invalid_cursor", "the cursor is not one we issued") from None
    return {"items": entries, "next_cursor": next_cursor}


class AdjustmentOut(BaseModel):
    adjustment_id: UUID
    position: int


@router.post(
    "/admin/adjustments",
    status_code=201,
    response_model=AdjustmentOut,
    responses={
        402: {"description": "a debit beyond the wallet"},
        404: {"description": "no such user"},
    },
)
def adjust(
    body: AdjustmentIn,
    request: Request,
    admin: AdminUser,
    services: ServicesDep,
    ledger: LedgerDep,
    idempotent: Idempotent,
) -> AdjustmentOut:
    """Credit (a new adjustment lot) or debit (FIFO) a user's wallet, with a reason."""
    if services.users.get(body.user_id) is None:
        raise ApiError(404, "not_found", "no such user")

    def stored(adjustment_id: UUID, position: int, _: Sequence[object]) -> AdjustmentOut:
        return AdjustmentOut(adjustment_id=adjustment_id, position=position)

    # The id is the Idempotency-Key's (a retry names the same adjustment), or new.
    with idempotent.operation(body, stored) as adjustment:
        receipt = ledger.adjust(
            body.user_id,
            body.direction,
            body.tokens,
            body.reason,
            adjustment.id,
            Cause.admin(admin.id, request_id(request)),
        )
        return adjustment.answer(stored(adjustment.id, receipt.position, ()))


class ErasedOut(BaseModel):
    id: UUID
    erased_at: datetime


@router.post(
    "/admin/users/{user_id}/erase",
    response_model=ErasedOut,
    responses={
        404: {"description": "no such user"},
        409: {"description": "the wallet still holds tokens or holds (`wallet_not_empty`)"},
    },
)
def erase(user_id: UUID, admin: AdminUser, services: ServicesDep) -> ErasedOut:
    """Erase a user's personal data and end their sessions (rules §7); the ledger is untouched.

    Refused (409 ``wallet_not_empty``, with what remains) while the wallet holds tokens or
    holds. Erasing an erased user again answers the same.
    """
    record = services.users.get(user_id)
    if record is None:
        raise ApiError(404, "not_found", "no such user")
    if not record.erased:
        erase_user(
            services.ledger, services.users, user_id, services.checkouts, Cause.admin(admin.id)
        )
        record = services.users.get(user_id)
    assert record is not None and record.erased_at is not None
    return ErasedOut(id=record.id, erased_at=record.erased_at)


@router.get("/audit/events")
def audit_events(
    _: AdminUser,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The raw stream in position order, decoded, for auditors: each event as
    ``audit export`` writes it."""
    items = services.reads.audit_events(services.ledger, after, limit)
    next_after = items[-1]["position"] if len(items) == limit else None
    return {"items": items, "next_after": next_after}
