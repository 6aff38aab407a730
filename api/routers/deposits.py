"""Buying tokens with Stripe: the checkout, the webhook, and (off production) simulated Stripe.

- ``POST /wallet/deposits`` opens a Stripe Checkout Session within the daily deposit limit;
- ``POST /stripe/webhook`` receives Stripe's signed events (no bearer token: the signature
  is the authentication) and turns them into ledger commands (``application.stripe_events``);
- ``/simulated-stripe/checkout/{id}`` is the embedded default's checkout page: paying delivers
  signed webhooks to the same webhook handling, signature check included. It does not exist
  in production or with the real Stripe (404).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from api.bootstrap import Services
from api.deps import SIMULATED_CHECKOUT_PATH as PAGE_PATH
from api.deps import CurrentUser, ServicesDep, SimulatedStripe
from api.errors import ApiError
from api.idempotency import Idempotent
from api.schemas import Body, Tokens
from api.threaded_routes import ThreadedRoute
from api.webhooks import WEBHOOK_DOCS, WebhookReceived, deliver
from application.ports import CheckoutSession, PaymentRefused

router = APIRouter(route_class=ThreadedRoute)


ReturnUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=r"(?i)^https?://[!-~]+$",  # printable ASCII, no spaces or controls
        description="where Stripe sends the payer back: a URL on the service's public origin",
        examples=["https://app.example.com/wallet?deposit=done"],
    ),
]


class DepositIn(Body):
    tokens: Tokens
    success_url: ReturnUrl
    cancel_url: ReturnUrl


class DepositOut(BaseModel):
    session_id: str = Field(description="the Stripe Checkout Session")
    checkout_url: str = Field(description="send the payer here")
    deposit_id: UUID
    tokens: int
    amount_cents: int = Field(description="what the payer is charged, in US cents")


@router.post(
    "/wallet/deposits",
    tags=["wallet"],
    status_code=201,
    response_model=DepositOut,
    responses={
        409: {"description": "the rolling-24 h deposit limit would be exceeded"},
        429: {"description": "more than 10 checkouts in an hour"},
        503: {"description": "Stripe is unavailable; try again"},
    },
)
def create_deposit(
    body: DepositIn, user: CurrentUser, services: ServicesDep, idempotent: Idempotent
) -> DepositOut:
    """Buy tokens: open a Stripe Checkout for ``tokens`` × the token price, to pay at
    ``checkout_url``. The tokens are credited when Stripe confirms the payment."""
    services.deposits.check_return_urls(body.success_url, body.cancel_url)
    services.limits.check("deposit_checkout", str(user.id))  # 10/hour: 429 + Retry-After

    # The id is the Idempotency-Key's: a retry finds the same checkout, never a second
    # session (the response is stored just after; the checkout is found again by its id).
    with idempotent.operation(body) as deposit:
        try:
            opened = services.deposits.open_checkout(
                user.id, deposit.id, body.tokens, body.success_url, body.cancel_url
            )
        except PaymentRefused as e:
            raise ApiError(422, "checkout_refused", f"Stripe refused the checkout: {e}") from None
        return deposit.answer(
            DepositOut(
                session_id=opened.session_id,
                checkout_url=opened.checkout_url,
                deposit_id=opened.deposit_id,
                tokens=opened.tokens,
                amount_cents=opened.cents,
            )
        )


@router.post(
    "/stripe/webhook",
    tags=["stripe"],
    response_model=WebhookReceived,
    **WEBHOOK_DOCS,
)
async def stripe_webhook(
    request: Request,
    services: ServicesDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceived:
    """Stripe's events, verified with ``Stripe-Signature`` (300 s tolerance, wall clock)."""
    payload = await request.body()
    return await run_in_threadpool(receive_webhook, services, payload, stripe_signature or "")


def receive_webhook(services: Services, payload: bytes, signature: str) -> WebhookReceived:
    """Verify a webhook and apply it: the one path every Stripe event takes."""
    return deliver(
        services.payments.verify_webhook, services.stripe_events.handle, payload, signature
    )


# -- simulated Stripe (embedded default only) -------------------------------------------------


def _simulated(services: Services, session_id: str) -> tuple[SimulatedStripe, CheckoutSession]:
    gateway = services.simulated_stripe
    if services.config.production or gateway is None:
        raise ApiError(404, "not_found", "there is no simulated Stripe here")
    session = services.checkouts.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", "no such checkout session")
    return gateway, session


@router.get(
    PAGE_PATH.removeprefix("/v1") + "/{session_id}",
    tags=["simulated stripe"],
    response_class=HTMLResponse,
    responses={404: {"description": "no such session, or not the simulated Stripe"}},
)
def simulated_checkout_page(session_id: str, services: ServicesDep) -> HTMLResponse:
    """The simulated checkout page: pay or decline."""
    gateway, session = _simulated(services, session_id)
    return HTMLResponse(gateway.checkout_page(session))


@router.post(
    PAGE_PATH.removeprefix("/v1") + "/{session_id}/pay",
    tags=["simulated stripe"],
    status_code=303,
    response_class=RedirectResponse,
    responses={404: {}, 409: {"description": "the session has expired"}},
)
def simulated_pay(session_id: str, services: ServicesDep) -> RedirectResponse:
    """Pay: Stripe's two webhooks (session completed, PaymentIntent succeeded), signed and
    delivered to our own webhook handling; then back to ``success_url``."""
    gateway, session = _simulated(services, session_id)
    if session.status == "expired":
        raise ApiError(409, "session_expired", "this checkout session has expired")
    for payload, signature in gateway.payment_webhooks(session):
        receive_webhook(services, payload, signature)
    return RedirectResponse(session.success_url, status_code=303)


@router.post(
    PAGE_PATH.removeprefix("/v1") + "/{session_id}/decline",
    tags=["simulated stripe"],
    status_code=303,
    response_class=RedirectResponse,
    responses={404: {}, 409: {"description": "the session is already paid"}},
)
def simulated_decline(session_id: str, services: ServicesDep) -> RedirectResponse:
    """Decline: the session expires (a signed ``checkout.session.expired``); back to
    ``cancel_url``. Nothing is credited."""
    gateway, session = _simulated(services, session_id)
    if session.status == "complete":
        raise ApiError(409, "session_complete", "this checkout session is already paid")
    payload, signature = gateway.expiry_webhook(session)
    receive_webhook(services, payload, signature)
    return RedirectResponse(session.cancel_url, status_code=303)
