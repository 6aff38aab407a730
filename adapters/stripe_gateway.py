"""Stripe through its official client library (rules §6): checkout, refunds, webhooks, and
Connect (payout accounts, transfers for cash-outs).

Only this module and the simulated gateway know the ``stripe`` package. Errors become the
application's two kinds: :class:`PaymentRefused` (Stripe said no, for good) and
:class:`PaymentUnavailable` (the outcome is unknown: look it up, then try again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import stripe

from application.cashouts import transfer_of
from application.ports import (
    InvalidWebhook,
    PaymentRefused,
    PaymentUnavailable,
    Refund,
    Transfer,
)
from application.reconcile import REFUND_MADE, StripeObject

WEBHOOK_TOLERANCE_SECONDS = 300
"""How old a signed webhook may be (against the wall clock) before it is refused."""

REQUEST_TIMEOUT_SECONDS = 30


def verify_webhook(payload: bytes, signature: str, secret: str) -> dict[str, Any]:
    """The event in ``payload`` if ``Stripe-Signature`` proves Stripe sent it recently."""
    try:
        stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError) as e:
        raise InvalidWebhook(str(e) or "invalid webhook") from None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise InvalidWebhook("not a Stripe event")
    return event


def refund_of(obj: Any) -> Refund:
    """A Stripe refund object (or its JSON) as the application sees it."""
    values = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    payment_intent = values.get("payment_intent") or ""
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id", "")
    return Refund(
        refund_id=str(values["id"]),
        status=str(values.get("status") or "pending"),
        cents=int(values.get("amount") or 0),
        payment_intent_id=str(payment_intent),
        metadata={str(k): str(v) for k, v in (values.get("metadata") or {}).items()},
    )


@contextmanager
def calling_stripe() -> Iterator[None]:
    """Map the library's errors to the application's."""
    try:
        yield
    except stripe.IdempotencyError as e:
        # The key was used with other parameters: a bug or a race, never a verdict.
        raise PaymentUnavailable(f"idempotency conflict: {e.user_message or e}") from None
    except stripe.InvalidRequestError as e:
        raise PaymentRefused(e.code or "invalid_request", e.user_message or str(e)) from None
    except stripe.StripeError as e:
        raise PaymentUnavailable(f"{type(e).__name__}: {e.user_message or e}") from None


class StripeGateway:
    """The real Stripe (or anything speaking its API at ``api_base``)."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        connect_webhook_secret: str = "",
        api_base: str = "",
        max_network_retries: int = 2,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.connect_webhook_secret = connect_webhook_secret
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def create_checkout(
        self,
        *,
        user_id: str,
        tokens: int,
        cents: int,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        ours = {**(metadata or {}), "user_id": user_id, "tokens": str(tokens)}
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": user_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": cents,
                        "product_data": {"name": f"{tokens} PeerPush tokens"},
                    },
                }
            ],
            "metadata": ours,
            "payment_intent_data": {"metadata": ours},
        }
        with calling_stripe():
            session = self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]  # a plain dict for the SDK's TypedDict of create params
                {"idempotency_key": idempotency_key},
            )
        return str(session.id), str(session.url)

    def verify_webhook(self, payload: bytes, signature: str) -> dict[str, Any]:
        return verify_webhook(payload, signature, self.webhook_secret)

    def refund(
        self,
        *,
        payment_intent_id: str,
        cents: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Refund:
        with calling_stripe():
            created = self.client.v1.refunds.create(
                {
                    "payment_intent": payment_intent_id,
                    "amount": cents,
                    "metadata": dict(metadata),
                },
                {"idempotency_key": idempotency_key},
            )
        return refund_of(created)

    def find_refund(self, *, payment_intent_id: str, metadata: Mapping[str, str]) -> Refund | None:
        # Stripe cannot search refunds by metadata: list the payment's and match here.
        matching = [
            r
            for r in self.refunds(payment_intent_id)
            if all(r.metadata.get(k) == v for k, v in metadata.items())
        ]
        made = [r for r in matching if r.made]
        found = made or matching
        return found[0] if found else None

    def refunds(self, payment_intent_id: str) -> Sequence[Refund]:
        with calling_stripe():
            page = self.client.v1.refunds.list({"payment_intent": payment_intent_id, "limit": 100})
            return [refund_of(r) for r in page.auto_paging_iter()]

    def payment_intent_metadata(self, payment_intent_id: str) -> Mapping[str, str] | None:
        try:
            with calling_stripe():
                intent = self.client.v1.payment_intents.retrieve(payment_intent_id)
        except PaymentRefused:
            return None
        metadata = intent.to_dict().get("metadata") or {}
        return {str(k): str(v) for k, v in metadata.items()}

    # -- Connect: payout accounts and transfers (rules §2 cash-outs) -------------------------

    def create_account(self, *, user_id: str, idempotency_key: str) -> str:
        with calling_stripe():
            account = self.client.v1.accounts.create(
                {
                    "type": "express",
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"user_id": user_id},
                },
                {"idempotency_key": idempotency_key},
            )
        return str(account.id)

    def onboarding_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        with calling_stripe():
            link = self.client.v1.account_links.create(
                {
                    "account": account_id,
                    "type": "account_onboarding",
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                }
            )
        return str(link.url)

    def transfer(
        self,
        *,
        account_id: str,
        cents: int,
        transfer_group: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Transfer:
        with calling_stripe():
            created = self.client.v1.transfers.create(
                {
                    "amount": cents,
                    "currency": "usd",
                    "destination": account_id,
                    "transfer_group": transfer_group,
                    "metadata": dict(metadata),
                },
                {"idempotency_key": idempotency_key},
            )
        return transfer_of(created)

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        with calling_stripe():
            page = self.client.v1.transfers.list({"transfer_group": transfer_group, "limit": 10})
            found = [transfer_of(t) for t in page.auto_paging_iter()]
        return found[0] if found else None

    def verify_connect_webhook(self, payload: bytes, signature: str) -> dict[str, Any]:
        if not self.connect_webhook_secret:
            raise InvalidWebhook("no STRIPE_CONNECT_WEBHOOK_SECRET is configured")
        return verify_webhook(payload, signature, self.connect_webhook_secret)

    # -- reconciliation (rules §6) -----------------------------------------------------------

    def money_objects(self, since: datetime) -> list[StripeObject]:
        """Charges (by PaymentIntent), refunds, transfers (net of reversals) and disputes
        (what a lost one took) created at or after ``since``."""
        created = {"gte": int(since.timestamp())}
        out: list[StripeObject] = []

        def listed(resource: Any) -> Iterator[dict[str, Any]]:
            with calling_stripe():
                page = resource.list({"created": created, "limit": 100})
                for obj in page.auto_paging_iter():
                    yield obj.to_dict()

        def when(obj: dict[str, Any]) -> datetime:
            return datetime.fromtimestamp(int(obj.get("created") or 0), UTC)

        v1 = self.client.v1
        for c in listed(v1.charges):
            if c.get("payment_intent") and c.get("status", "succeeded") == "succeeded":
                intent = c["payment_intent"]
                intent = intent["id"] if isinstance(intent, dict) else intent
                out.append(StripeObject("charges", str(intent), int(c["amount"]), when(c)))
        for r in listed(v1.refunds):
            cents = int(r["amount"]) if r.get("status") in REFUND_MADE else 0
            out.append(StripeObject("refunds", str(r["id"]), cents, when(r)))
        for t in listed(v1.transfers):
            net = int(t["amount"]) - int(t.get("amount_reversed") or 0)
            out.append(StripeObject("transfers", str(t["id"]), net, when(t)))
        for d in listed(v1.disputes):
            cents = int(d["amount"]) if d.get("status") == "lost" else 0
            out.append(StripeObject("disputes", str(d["id"]), cents, when(d)))
        return out
