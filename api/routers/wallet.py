"""The caller's wallet: balances (now or as of a moment), lots, history, withdrawals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from api.bootstrap import Services
from api.deps import AuthUser, CurrentUser, LedgerDep, ServicesDep, request_id, wait_for_position
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
from domain.aggregate import Cause
from domain.balances import SHOWN
from domain.errors import NotFound, NotRefundable
from domain.wallet import Wallet
from projections.point_in_time import WalletAsOf, wallet_as_of
from projections.position_times import IndexBehind

router = APIRouter(prefix="/wallet", tags=["wallet"])

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
) -> Balances:
    if as_of:
        position, then = _wallet_as_of(services, user, as_of)
        balances = then.balances if then else dict.fromkeys(_ZERO, 0)
        return Balances(user_id=user.id, **balances, position=position)
    wait_for_position(services, min_position)
    settings = services.ledger.settings
    row, refundable, cashoutable, position = services.reads.wallet_now(
        user.id,
        services.ledger.clock.now(),
        settings.cashout_hold_days,
        settings.max_cashout_tokens_day,
    )
    return Balances(
        **{k: row[k] if row else 0 for k in _ZERO},
        user_id=user.id,
        refundable=refundable,
        cashoutable=cashoutable,
        position=position,
    )


_ZERO = SHOWN


def _wallet_as_of(services: Services, user: AuthUser, as_of: str) -> tuple[int, WalletAsOf | None]:
    """The caller's wallet over the stream up to the position ``as_of`` names (None: it did
    not exist then), and that position."""
    try:
        if as_of.isdigit():
            position = int(as_of)
        else:
            at = datetime.fromisoformat(as_of)
            position = _position_at(services, at if at.tzinfo else at.replace(tzinfo=UTC))
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of is an ISO 8601 time or a position") from None
    try:
        return position, wallet_as_of(services.ledger, user.id, position=position)
    except NotFound:
        return position, None


def _position_at(services: Services, at: datetime) -> int:
    """The last position whose event time is at most ``at``, through the position index.

    An index behind the stream's head cannot answer (an event it has not seen may be earlier
    than ``at``): wait for it like ``min_position`` does, then 503 ``read_model_behind``.
    """
    try:
        return services.reads.position_at(at)
    except IndexBehind as behind:
        head = behind.head
    if services.projector.wait_for(head, timeout=services.config.read_wait_seconds):
        try:
            return services.reads.position_at(at, covering=head)
        except IndexBehind:
            pass
    raise ApiError(
        503,
        "read_model_behind",
        "the position index has not caught up with the stream yet",
        headers={"Retry-After": "1"},
        position=services.reads.position(),
    )


@router.get("/lots", response_model=list[LotOut])
def get_lots(
    user: CurrentUser, services: ServicesDep, as_of: AsOf = None, min_position: MinPosition = None
) -> list[LotOut]:
    if as_of:
        _, then = _wallet_as_of(services, user, as_of)
        return [_lot_out(lot) for lot in then.lots] if then else []
    wait_for_position(services, min_position)
    return [LotOut(**row) for row in services.reads.lots(user.id)]


def _lot_out(lot: Any) -> LotOut:
    """A replayed lot as the ``wallet_lots`` read model shows it (prices on deposits only)."""
    deposit = lot.source == "deposit"
    return LotOut(
        lot_id=lot.lot_id,
        seq=lot.seq,
        source=lot.source,
        amount=lot.amount,
        remaining=lot.remaining,
        created_at=lot.created_at,
        refundable_until=lot.refundable_until,
        payment_intent_id=lot.payment_intent_id,
        token_price=lot.token_price if deposit else None,
        frozen=lot.frozen,
        written_off=lot.written_off,
    )


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
        status="pending",
        tokens=tokens,
        lots=[WithdrawalLot(lot_id=UUID(str(lot)), tokens=n, status="pending") for lot, n in lots],
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
    rows = services.reads.withdrawal(user.id, withdrawal_id)
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
        lots=lots,
        position=reflected,
    )
