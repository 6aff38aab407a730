"""Stripe, simulated for the embedded default (never in production).

A checkout URL points to a local page (``/v1/simulated-stripe/checkout/{id}``) that pays or
declines; paying produces the webhooks Stripe would send, signed with the webhook secret, for
our own ``/v1/stripe/webhook`` to verify like any other. Refunds succeed at once.

Connect (cash-outs): onboarding is a local page too (``/v1/simulated-stripe/connect/{id}``)
whose button delivers a signed ``account.updated`` with payouts enabled to our own
``/v1/stripe/connect-webhook`` handling; transfers succeed at once and, like refunds, take
their id from the idempotency key (the cash-out id), so a look-up by transfer group finds
nothing and the repeated call returns the same transfer.

Nothing is kept in memory: ids are derived from idempotency keys (the same key, the same
session or refund, as with Stripe), and the page reads the session from the
``checkout_sessions`` table, so any API process can serve it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import stripe

from adapters.stripe_gateway import verify_webhook
from application.ports import CheckoutSession, Refund, Transfer
from application.reconcile import StripeObject

PAGE_PATH = "/v1/simulated-stripe/checkout"
CONNECT_PAGE_PATH = "/v1/simulated-stripe/connect"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


class SimulatedStripe:
    """A stateless stand-in for Stripe that behaves like it where the ledger can tell."""

    simulated = True

    def __init__(
        self, *, base_url: str, webhook_secret: str, connect_webhook_secret: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.connect_webhook_secret = connect_webhook_secret or webhook_secret
        self.livemode = False

    # -- the gateway ----------------------------------------------------------------------

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
        session_id = "cs_sim_" + _digest("checkout", idempotency_key)
        return session_id, f"{self.base_url}{PAGE_PATH}/{session_id}"

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
        return Refund(
            refund_id="re_sim_" + _digest("refund", idempotency_key),
            status="succeeded",
            cents=cents,
            payment_intent_id=payment_intent_id,
            metadata=dict(metadata),
        )

    def find_refund(self, *, payment_intent_id: str, metadata: Mapping[str, str]) -> Refund | None:
        # Nothing is remembered; a repeated refund call returns the same refund anyway.
        return None

    def refunds(self, payment_intent_id: str) -> Sequence[Refund]:
        return ()  # no refund is ever made outside our flow here

    def payment_intent_metadata(self, payment_intent_id: str) -> Mapping[str, str] | None:
        return None  # the checkout_sessions table knows every simulated payment

    # -- Connect: payout accounts and transfers -----------------------------------------------

    def create_account(self, *, user_id: str, idempotency_key: str) -> str:
        return "acct_sim_" + _digest("account", idempotency_key)[:16]

    def onboarding_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        return f"{self.base_url}{CONNECT_PAGE_PATH}/{account_id}"

    def transfer(
        self,
        *,
        account_id: str,
        cents: int,
        transfer_group: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Transfer:
        return Transfer(
            transfer_id="tr_sim_" + _digest("transfer", idempotency_key),
            cents=cents,
            destination=account_id,
            transfer_group=transfer_group,
            metadata=dict(metadata),
        )

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        return None  # nothing is remembered; the repeated call returns the same transfer

    def verify_connect_webhook(self, payload: bytes, signature: str) -> dict[str, Any]:
        return verify_webhook(payload, signature, self.connect_webhook_secret)

    def onboarded_webhook(self, account_id: str) -> tuple[bytes, str]:
        """The signed ``account.updated`` of an account whose onboarding is complete."""
        account = {
            "id": account_id,
            "object": "account",
            "type": "express",
            "charges_enabled": True,
            "payouts_enabled": True,
            "details_submitted": True,
        }
        return self.signed("account.updated", account, secret=self.connect_webhook_secret)

    def money_objects(self, since: Any) -> list[StripeObject]:
        return []  # nothing is remembered: reconcile the simulated Stripe against nothing

    # -- what the simulated checkout page does ---------------------------------------------

    def payment_webhooks(self, session: CheckoutSession) -> list[tuple[bytes, str]]:
        """The signed webhooks of a paid session: the session completed, and its
        PaymentIntent succeeded (both, as Stripe sends them; the ledger credits once)."""
        payment_intent = "pi_sim_" + _digest("payment", session.session_id)
        metadata = {
            "user_id": session.user_id,
            "tokens": str(session.tokens),
            "deposit_id": session.deposit_id,
        }
        completed = {
            "id": session.session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": "paid",
            "amount_total": session.cents,
            "currency": "usd",
            "client_reference_id": session.user_id,
            "metadata": metadata,
            "payment_intent": payment_intent,
        }
        succeeded = {
            "id": payment_intent,
            "object": "payment_intent",
            "status": "succeeded",
            "amount": session.cents,
            "amount_received": session.cents,
            "currency": "usd",
            "metadata": metadata,
        }
        return [
            self.signed("checkout.session.completed", completed),
            self.signed("payment_intent.succeeded", succeeded),
        ]

    def expiry_webhook(self, session: CheckoutSession) -> tuple[bytes, str]:
        """The signed webhook of a declined (and so abandoned) session."""
        return self.signed(
            "checkout.session.expired",
            {
                "id": session.session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "expired",
                "payment_status": "unpaid",
                "amount_total": session.cents,
                "currency": "usd",
                "client_reference_id": session.user_id,
                "metadata": {"user_id": session.user_id, "deposit_id": session.deposit_id},
                "payment_intent": None,
            },
        )

    def signed(
        self, event_type: str, obj: Mapping[str, Any], *, secret: str = ""
    ) -> tuple[bytes, str]:
        """An event as Stripe delivers it: the JSON body and its ``Stripe-Signature``."""
        event = {
            "id": "evt_sim_" + _digest(event_type, str(obj["id"])),
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": dict(obj)},
        }
        payload = json.dumps(event, separators=(",", ":"))
        header = stripe.WebhookSignature.generate_signature_header(
            payload, secret or self.webhook_secret
        )
        return payload.encode(), header
