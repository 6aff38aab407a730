"""The caller's wallet: balances (now or as of a moment), lots, history, withdrawals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request

from adapters.users import AuthUser
from api.deps import CurrentUser, ServicesDep, wait_for_position
from api.errors import ApiError
from api.idempotency import run_creating
from api.schemas import Balances, LotOut, TransactionPage, WithdrawalIn, WithdrawalOut
from domain.aggregate import Cause
from domain.errors import NotFound, NotRefundable
from domain.wallet import Wallet
from projections.point_in_time import wallet_as_of

router = APIRouter(prefix="/wallet", tags=["wallet"])

MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]


@router.get("", response_model=Balances)
def get_wallet(
    user: CurrentUser,
    services: ServicesDep,
    as_of: Annotated[str | None, Query(description="ISO time or a stream position")] = None,
    min_position: MinPosition = None,
) -> Balances:
    if as_of:
        return _as_of(services, user, as_of)
    wait_for_position(services, min_position)
    row = services.reads.wallet(user.id)
    if row is None:
        return Balances(
            user_id=user.id, **dict.fromkeys(_ZERO, 0), position=services.reads.position()
        )
    return Balances(
        **{k: row[k] for k in _ZERO}, user_id=user.id, position=services.reads.position()
    )


_ZERO = (
    "available",
    "frozen",
    "staked",
    "withdrawal_pending",
    "cashout_pending",
    "deposited",
    "refunded",
    "cashed_out",
    "won",
    "forfeited",
    "penalised",
    "written_off",
)


def _as_of(services: Any, user: AuthUser, as_of: str) -> Balances:
    try:
        if as_of.isdigit():
            snapshot = wallet_as_of(services.ledger, user.id, position=int(as_of))
        else:
            at = datetime.fromisoformat(as_of)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            snapshot = wallet_as_of(services.ledger, user.id, at=at)
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of is an ISO 8601 time or a position") from None
    except NotFound:
        return Balances(user_id=user.id, **dict.fromkeys(_ZERO, 0), position=0)
    return Balances(user_id=user.id, **snapshot.balances, position=snapshot.position)


@router.get("/lots", response_model=list[LotOut])
def get_lots(
    user: CurrentUser, services: ServicesDep, min_position: MinPosition = None
) -> list[LotOut]:
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
    return TransactionPage(items=rows, next_cursor=next_cursor)  # type: ignore[arg-type]


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
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Refund tokens to the card that paid for them (oldest refundable lots first)."""

    def answer(withdrawal_id: UUID, position: int, lots: Any) -> tuple[int, dict[str, Any]]:
        out = WithdrawalOut(
            withdrawal_id=withdrawal_id,
            status="pending",
            tokens=body.tokens,
            lots=[{"lot_id": lot, "tokens": n, "status": "pending"} for lot, n in lots],
            position=position,
        )
        return 202, out.model_dump(mode="json")

    def act(withdrawal_id: UUID) -> tuple[int, dict[str, Any]]:
        # The id is the Idempotency-Key's (a retry names the same withdrawal), or new.
        try:
            held = services.ledger.request_withdrawal(
                user.id, withdrawal_id, body.tokens, Cause.user(user.id, request_id(request))
            )
        except NotFound:  # no wallet yet: nothing to refund (one's own wallet is never 404)
            raise NotRefundable(body.tokens, 0) from None
        return answer(withdrawal_id, held.position, held.lots)

    def respond(
        withdrawal_id: UUID, position: int, saved: Sequence[object]
    ) -> tuple[int, dict[str, Any]]:
        [wallet] = [a for a in saved if isinstance(a, Wallet)]
        return answer(withdrawal_id, position, wallet.withdrawals[str(withdrawal_id)].lots.items())

    return run_creating(
        services,
        user.id,
        "POST /wallet/withdrawals",
        idempotency_key,
        body.model_dump(),
        act,
        respond,
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
    rows = services.reads.all(
        "SELECT type, lot_id, tokens, position, reference FROM wallet_transactions "
        "WHERE user_id = %s AND withdrawal_id = %s ORDER BY position",
        user.id,
        withdrawal_id,
    )
    if not rows:
        raise ApiError(404, "not_found", "no such withdrawal")
    held = services.ledger.wallet_of(user.id).withdrawals.get(str(withdrawal_id))
    if held is None:
        raise ApiError(404, "not_found", "no such withdrawal")
    # The status comes from the wallet just loaded, which may be ahead of the read models:
    # the head read after loading covers every event it reflects, so ``min_position`` with
    # this position reads balances that include this status.
    reflected = max(rows[-1]["position"], services.ledger.head())
    lots = [
        {"lot_id": lot, "tokens": n, "status": held.outcomes.get(lot, "pending")}
        for lot, n in held.lots.items()
    ]
    return WithdrawalOut(
        withdrawal_id=withdrawal_id,
        status="settled" if held.settled else "pending",
        tokens=sum(held.lots.values()),
        lots=lots,  # type: ignore[arg-type]
        position=reflected,
    )


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")
