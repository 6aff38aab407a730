"""The caller's wallet: balances (now or as of a moment), lots, history, withdrawals.

As of a moment the wallet is replayed from the stream (``projections.wallet_view``); now, it is
read from the read models (``min_position`` waits for a command's position).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.deps import CurrentUser, LedgerDep, ServicesDep, request_id, wait_for_position
from api.errors import ApiError
from api.idempotency import Idempotent
from api.schemas import (
    Balances,
    LotOut,
    TransactionPage,
    WithdrawalIn,
    WithdrawalLot,
    WithdrawalOut,
)
from api.threaded_routes import ThreadedRoute
from domain.aggregate import Cause
from domain.errors import NotFound, NotRefundable
from domain.values import WithdrawalStatus
from domain.wallet import Wallet

router = APIRouter(prefix="/wallet", tags=["wallet"], route_class=ThreadedRoute)
JSON = "application/json"

MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]
AsOf = Annotated[
    str | None,
    Query(
        description="a stream position, or an ISO 8601 time (UTC when it has no offset): the "
        "stream up to the last position whose event time is at most that time"
    ),
]


@router.get("", response_model=Balances)
def get_wallet(
    user: CurrentUser,
    services: ServicesDep,
    as_of: AsOf = None,
    min_position: MinPosition = None,
) -> Response:
    """The caller's balances now (``min_position``: once the read models have applied it) or
    as of a moment. Answered as the model's own JSON: the most frequent read skips FastAPI's
    second validation of a model built just above (docs/performance.md)."""
    if as_of:
        found = services.wallets.balances_as_of(user.id, as_of)
    else:
        wait_for_position(services, min_position)
        found = services.wallets.balances(user.id)
    return Response(Balances(user_id=user.id, **found).model_dump_json(), media_type=JSON)


@router.get("/lots", response_model=list[LotOut])
def get_lots(
    user: CurrentUser, services: ServicesDep, as_of: AsOf = None, min_position: MinPosition = None
) -> list[LotOut]:
    if as_of:
        return [LotOut(**row) for row in services.wallets.lots_as_of(user.id, as_of)]
    wait_for_position(services, min_position)
    return [LotOut(**row) for row in services.reads.lots(user.id)]


@router.get("/transactions", response_model=TransactionPage)
def get_transactions(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_position: MinPosition = None,
) -> TransactionPage:
    wait_for_position(services, min_position)
    try:
        rows, next_cursor = services.reads.transactions(
            user.id, limit=limit, cursor=cursor, kind=type, since=since, until=until
        )
    except ValueError:
        raise ApiError(422, "invalid_cursor", "the cursor is not one we issued") from None
    return TransactionPage(items=rows, next_cursor=next_cursor)


@router.post(
    "/withdrawals",
    status_code=202,
    response_model=WithdrawalOut,
    responses={402: {}, 409: {"description": "more than the refundable amount"}},
)
def request_withdrawal(
    body: WithdrawalIn,
    request: Request,
    user: CurrentUser,
    ledger: LedgerDep,
    idempotent: Idempotent,
) -> WithdrawalOut:
    """Refund tokens to the card that paid for them (oldest refundable lots first)."""

    def stored(withdrawal_id: UUID, position: int, saved: Sequence[object]) -> WithdrawalOut:
        [wallet] = [a for a in saved if isinstance(a, Wallet)]
        lots = wallet.withdrawals[str(withdrawal_id)].lots.items()
        return withdrawal_out(withdrawal_id, body.tokens, position, lots)

    # The id is the Idempotency-Key's (a retry names the same withdrawal), or new.
    with idempotent.operation(body, stored) as withdrawal:
        try:
            held = ledger.request_withdrawal(
                user.id, withdrawal.id, body.tokens, Cause.user(user.id, request_id(request))
            )
        except NotFound:  # no wallet yet: nothing to refund (one's own wallet is never 404)
            raise NotRefundable(body.tokens, 0) from None
        return withdrawal.answer(
            withdrawal_out(withdrawal.id, body.tokens, held.position, held.lots)
        )


def withdrawal_out(
    withdrawal_id: UUID, tokens: int, position: int, lots: Iterable[tuple[UUID | str, int]]
) -> WithdrawalOut:
    """A withdrawal just requested: pending, on the lots it holds."""
    return WithdrawalOut(
        withdrawal_id=withdrawal_id,
        status=WithdrawalStatus.PENDING,
        tokens=tokens,
        lots=[WithdrawalLot(lot_id=UUID(str(lot)), tokens=n) for lot, n in lots],
        position=position,
    )


@router.get(
    "/withdrawals/{withdrawal_id}",
    response_model=WithdrawalOut,
    responses={404: {"description": "no such withdrawal of yours"}},
)
def get_withdrawal(
    withdrawal_id: UUID, user: CurrentUser, services: ServicesDep, min_position: MinPosition = None
) -> WithdrawalOut:
    wait_for_position(services, min_position)
    found = services.wallets.withdrawal(user.id, withdrawal_id)
    if found is None:
        raise ApiError(404, "not_found", "no such withdrawal")
    return WithdrawalOut(**found)
