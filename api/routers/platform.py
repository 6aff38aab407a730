"""Admin: revenue, the journal, adjustments, erasing a user, and the raw stream for auditors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from adapters.payments import PgCheckoutSessions
from api.deps import AdminUser, ServicesDep, wait_for_position
from api.errors import ApiError
from api.idempotency import run_creating
from api.routers.wallet import request_id
from api.schemas import Body, Tokens
from application.erasure import erase_user
from domain.aggregate import Cause

router = APIRouter(tags=["platform"])


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
    rows = services.reads.revenue(from_, to, group_by)  # type: ignore[arg-type]
    return {"group_by": group_by, "items": _jsonable(rows)}


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
    return {"items": _jsonable(entries), "next_cursor": next_cursor}


@router.post(
    "/admin/adjustments",
    status_code=201,
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
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Credit (a new adjustment lot) or debit (FIFO) a user's wallet, with a reason."""
    if services.users.get(body.user_id) is None:
        raise ApiError(404, "not_found", "no such user")

    def act(adjustment_id: UUID) -> tuple[int, dict[str, Any]]:
        # The id is the Idempotency-Key's (a retry names the same adjustment), or new.
        receipt = services.ledger.adjust(
            body.user_id,
            body.direction,
            body.tokens,
            body.reason,
            adjustment_id,
            Cause.admin(admin.id, request_id(request)),
        )
        return respond(adjustment_id, receipt.position, ())

    def respond(
        adjustment_id: UUID, position: int, _: Sequence[object]
    ) -> tuple[int, dict[str, Any]]:
        return 201, {"adjustment_id": str(adjustment_id), "position": position}

    return run_creating(
        services,
        admin.id,
        "POST /admin/adjustments",
        idempotency_key,
        body.model_dump(mode="json"),
        act,
        respond,
    )


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
    """Erase a user's personal data and end their sessions (SPEC §7); the ledger is untouched.

    Refused (409 ``wallet_not_empty``, with what remains) while the wallet holds tokens or
    holds. Erasing an erased user again answers the same.
    """
    record = services.users.get(user_id)
    if record is None:
        raise ApiError(404, "not_found", "no such user")
    if not record.erased:
        erase_user(
            services.ledger,
            services.users,
            user_id,
            PgCheckoutSessions(services.db),
            Cause.admin(admin.id),
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
    """The raw stream in position order, decoded, for auditors."""
    ledger = services.ledger
    notifications = ledger.recorder.select_notifications(after, limit, inclusive_of_start=False)
    items = []
    for n in notifications:
        event = ledger.mapper.to_domain_event(n)
        fields = {
            k: v
            for k, v in vars(event).items()
            if k not in ("originator_id", "originator_version", "timestamp")
        }
        items.append(
            {
                "position": n.id,
                "originator_id": str(n.originator_id),
                "version": n.originator_version,
                "topic": n.topic,
                "timestamp": event.timestamp.isoformat(),
                "fields": _jsonable(fields),
            }
        )
    next_after = items[-1]["position"] if len(items) == limit else None
    return {"items": items, "next_after": next_after}


def _jsonable(value: Any) -> Any:
    """Plain JSON for API output: UUIDs and times as strings, Decimals as ints."""
    from datetime import datetime
    from decimal import Decimal

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value)
    return value
