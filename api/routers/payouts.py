"""Cash-outs through Stripe Connect (rules §2, §6): the payout account, cash-outs, the Connect
webhook, and (off production) the simulated onboarding page.

- ``POST /payout-account`` creates (once) the caller's Connect Express account and answers a
  fresh onboarding link; ``GET /payout-account`` shows whether payouts are enabled, which
  Stripe's ``account.updated`` decides.
- ``POST /wallet/cashouts`` holds tokens for one transfer (202; the cash-out worker makes it);
  ``GET /wallet/cashouts/{id}`` shows what became of it.
- ``POST /stripe/connect-webhook`` receives Connect events, checked with
  ``STRIPE_CONNECT_WEBHOOK_SECRET``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from api.bootstrap import Services
from api.deps import (
    SIMULATED_CONNECT_PATH as CONNECT_PAGE_PATH,
)
from api.deps import CurrentUser, ServicesDep, SimulatedStripe, request_id, wait_for_position
from api.errors import ApiError
from api.idempotency import Idempotent
from api.schemas import CashoutIn, CashoutOut, PayoutAccountOut
from api.threaded_routes import ThreadedRoute
from api.webhooks import WEBHOOK_DOCS, WebhookReceived, deliver
from application.ports import PaymentRefused
from domain.aggregate import Cause
from domain.cashouts import CashoutHold
from domain.errors import NotFound
from domain.wallet import Wallet

router = APIRouter(route_class=ThreadedRoute)


# -- the payout account ---------------------------------------------------------------------


@router.post(
    "/payout-account",
    tags=["payouts"],
    response_model=PayoutAccountOut,
    responses={503: {"description": "Stripe is unavailable; try again"}},
)
def link_payout_account(user: CurrentUser, services: ServicesDep) -> PayoutAccountOut:
    """Link a Stripe Connect Express account (created once per user) and answer a fresh
    onboarding link; payouts are enabled when Stripe says so (``account.updated``)."""
    back = f"{services.config.base_url.rstrip('/')}/v1/payout-account"
    try:
        account, url = services.cashout_requests.link_account(user.id, back)
    except PaymentRefused as e:
        raise ApiError(422, "payout_account_refused", f"Stripe refused: {e}") from None
    return PayoutAccountOut(
        linked=True,
        account_id=account.account_id,
        payouts_enabled=account.payouts_enabled,
        onboarding_url=url,
    )


@router.get("/payout-account", tags=["payouts"], response_model=PayoutAccountOut)
def get_payout_account(user: CurrentUser, services: ServicesDep) -> PayoutAccountOut:
    account = services.payout_accounts.payout_account(str(user.id))
    if account is None:
        return PayoutAccountOut(linked=False)
    return PayoutAccountOut(
        linked=True, account_id=account.account_id, payouts_enabled=account.payouts_enabled
    )


# -- cash-outs --------------------------------------------------------------------------------


def _cashout_out(hold: CashoutHold, position: int) -> CashoutOut:
    return CashoutOut(
        cashout_id=hold.cashout_id,
        status=hold.status,
        tokens=hold.tokens,
        cents=hold.cents,
        token_price=hold.token_price,
        transfer_id=hold.transfer_id or None,
        reason=hold.reason or None,
        reversed_tokens=hold.reversed,
        lots=[{"lot_id": lot, "tokens": n} for lot, n in hold.lots],
        position=position,
    )


@router.post(
    "/wallet/cashouts",
    tags=["wallet"],
    status_code=202,
    response_model=CashoutOut,
    responses={
        409: {"description": "no enabled payout account, or more than is cash-out-able now"},
        422: {"description": "below MIN_CASHOUT_TOKENS"},
    },
)
def request_cashout(
    body: CashoutIn,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> CashoutOut:
    """Cash winnings out to the linked Stripe account: payout and adjustment lots at least
    ``CASHOUT_HOLD_DAYS`` old, oldest first; the transfer follows (see GET)."""

    def stored(cashout_id: UUID, position: int, saved: Sequence[object]) -> CashoutOut:
        [wallet] = [a for a in saved if isinstance(a, Wallet)]
        return _cashout_out(wallet.cashout(cashout_id), position)

    # The id is the Idempotency-Key's (a retry names the same cash-out), or new.
    with idempotent.operation(body, stored) as cashout:
        held = services.cashout_requests.request(
            user.id, cashout.id, body.tokens, Cause.user(user.id, request_id(request))
        )
        wallet = services.ledger.wallet_of(user.id)
        return cashout.answer(_cashout_out(wallet.cashout(cashout.id), held.position))


@router.get(
    "/wallet/cashouts/{cashout_id}",
    tags=["wallet"],
    response_model=CashoutOut,
    responses={404: {"description": "no such cash-out of yours"}},
)
def get_cashout(
    cashout_id: UUID,
    user: CurrentUser,
    services: ServicesDep,
    min_position: int | None = None,
) -> CashoutOut:
    wait_for_position(services, min_position)
    try:
        hold = services.ledger.wallet_of(user.id).cashouts.get(str(cashout_id))
    except NotFound:  # no wallet yet: no cash-out either
        hold = None
    if hold is None:
        raise ApiError(404, "not_found", "no such cash-out")
    return _cashout_out(hold, services.ledger.head())


# -- the Connect webhook ----------------------------------------------------------------------


@router.post(
    "/stripe/connect-webhook",
    tags=["stripe"],
    response_model=WebhookReceived,
    **WEBHOOK_DOCS,
)
async def connect_webhook(
    request: Request,
    services: ServicesDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceived:
    """Stripe Connect's events (``account.updated``, ``transfer.reversed``), verified with
    ``STRIPE_CONNECT_WEBHOOK_SECRET``; an event of the other mode (live/test) is ignored."""
    payload = await request.body()
    return await run_in_threadpool(
        receive_connect_webhook, services, payload, stripe_signature or ""
    )


def receive_connect_webhook(services: Services, payload: bytes, signature: str) -> WebhookReceived:
    return deliver(
        services.payouts.verify_connect_webhook, services.connect_events.handle, payload, signature
    )


# -- simulated Stripe Connect onboarding (embedded default only) -------------------------------


def _simulated(services: Services, account_id: str) -> SimulatedStripe:
    gateway = services.payouts
    if services.config.production or not isinstance(gateway, SimulatedStripe):
        raise ApiError(404, "not_found", "there is no simulated Stripe here")
    if not account_id.startswith("acct_sim_"):
        raise ApiError(404, "not_found", "no such account")
    return gateway


@router.get(
    CONNECT_PAGE_PATH.removeprefix("/v1") + "/{account_id}",
    tags=["simulated stripe"],
    response_class=HTMLResponse,
    responses={404: {"description": "not the simulated Stripe"}},
)
def simulated_onboarding_page(account_id: str, services: ServicesDep) -> HTMLResponse:
    """The simulated Connect onboarding page: finish it to enable payouts."""
    return HTMLResponse(_simulated(services, account_id).onboarding_page(account_id))


@router.post(
    CONNECT_PAGE_PATH.removeprefix("/v1") + "/{account_id}/complete",
    tags=["simulated stripe"],
    status_code=303,
    response_class=RedirectResponse,
    responses={404: {}},
)
def simulated_onboarding_complete(account_id: str, services: ServicesDep) -> RedirectResponse:
    """Finish onboarding: a signed ``account.updated`` (payouts enabled) delivered to our own
    Connect webhook handling; then back to the payout account."""
    gateway = _simulated(services, account_id)
    payload, signature = gateway.onboarded_webhook(account_id)
    receive_connect_webhook(services, payload, signature)
    return RedirectResponse(f"{services.config.base_url.rstrip('/')}/v1/payout-account", 303)
