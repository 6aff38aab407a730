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

The money it moves is kept in PostgreSQL (``simulated_stripe_objects``, migration 0012), as
Stripe keeps its own: the charge of a paid checkout (when its webhooks are made), every refund
and every transfer, once per id. ``peerpush reconcile`` lists them (``money_objects``) exactly
as it lists the real Stripe's, so in the embedded default it reconciles against the simulated
Stripe (rules §6), and a repeated refund or transfer is found by ``find_refund`` and
``find_transfer`` as at Stripe. Built without a database (tests of the signatures only), it
remembers nothing.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
import stripe
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from adapters.persistence import CONNECT_TIMEOUT_SECONDS, DatabaseSettings
from adapters.stripe_gateway import verify_webhook
from application.ports import CheckoutSession, Refund, Transfer
from application.reconcile import StripeObject

PAGE_PATH = "/v1/simulated-stripe/checkout"
CONNECT_PAGE_PATH = "/v1/simulated-stripe/connect"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _refund(row: Mapping[str, Any]) -> Refund:
    return Refund(
        refund_id=row["stripe_id"],
        status="succeeded",
        cents=int(row["cents"]),
        payment_intent_id=str(row["payment_intent_id"]),
        metadata={str(k): str(v) for k, v in (row["metadata"] or {}).items()},
    )


def _transfer(row: Mapping[str, Any]) -> Transfer:
    return Transfer(
        transfer_id=row["stripe_id"],
        cents=int(row["cents"]),
        destination=str(row["destination"]),
        transfer_group=str(row["transfer_group"]),
        metadata={str(k): str(v) for k, v in (row["metadata"] or {}).items()},
    )


class SimulatedStripe:
    """A stand-in for Stripe that behaves like it where the ledger (and reconcile) can tell."""

    simulated = True

    def __init__(
        self,
        *,
        base_url: str,
        webhook_secret: str,
        connect_webhook_secret: str = "",
        db: DatabaseSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.connect_webhook_secret = connect_webhook_secret or webhook_secret
        self.livemode = False
        self.db = db

    # -- what it remembers (one connection per call, like the checkout sessions) ------------

    def _rows(self, query: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        if self.db is None:
            return []
        with psycopg.connect(
            self.db.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c search_path={self.db.schema}",
        ) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def _keep(
        self,
        kind: str,
        stripe_id: str,
        cents: int,
        *,
        payment_intent_id: str | None = None,
        destination: str | None = None,
        transfer_group: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Record an object once; returns what was recorded first (the same id, the same
        object, as Stripe answers a repeated idempotency key)."""
        rows = self._rows(
            "WITH kept AS (INSERT INTO simulated_stripe_objects (kind, stripe_id, cents, "
            "payment_intent_id, destination, transfer_group, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (kind, stripe_id) DO NOTHING "
            "RETURNING *) "
            "SELECT * FROM kept UNION ALL SELECT * FROM simulated_stripe_objects "
            "WHERE kind = %s AND stripe_id = %s AND NOT EXISTS (SELECT 1 FROM kept)",
            (
                kind,
                stripe_id,
                cents,
                payment_intent_id,
                destination,
                transfer_group,
                Jsonb(dict(metadata or {})),
                kind,
                stripe_id,
            ),
        )
        return rows[0] if rows else None

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
        refund_id = "re_sim_" + _digest("refund", idempotency_key)
        kept = self._keep(
            "refunds",
            refund_id,
            cents,
            payment_intent_id=payment_intent_id,
            metadata=metadata,
        )
        if kept is not None:
            return _refund(kept)
        return Refund(
            refund_id=refund_id,
            status="succeeded",
            cents=cents,
            payment_intent_id=payment_intent_id,
            metadata=dict(metadata),
        )

    def find_refund(self, *, payment_intent_id: str, metadata: Mapping[str, str]) -> Refund | None:
        """A refund of the payment made with this metadata (every simulated refund succeeds)."""
        rows = self._rows(
            "SELECT * FROM simulated_stripe_objects WHERE kind = 'refunds' "
            "AND payment_intent_id = %s AND metadata @> %s ORDER BY created, stripe_id LIMIT 1",
            (payment_intent_id, Jsonb(dict(metadata))),
        )
        return _refund(rows[0]) if rows else None

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
        transfer_id = "tr_sim_" + _digest("transfer", idempotency_key)
        kept = self._keep(
            "transfers",
            transfer_id,
            cents,
            destination=account_id,
            transfer_group=transfer_group,
            metadata=metadata,
        )
        if kept is not None:
            return _transfer(kept)
        return Transfer(
            transfer_id=transfer_id,
            cents=cents,
            destination=account_id,
            transfer_group=transfer_group,
            metadata=dict(metadata),
        )

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        rows = self._rows(
            "SELECT * FROM simulated_stripe_objects WHERE kind = 'transfers' "
            "AND transfer_group = %s ORDER BY created, stripe_id LIMIT 1",
            (transfer_group,),
        )
        return _transfer(rows[0]) if rows else None

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

    def money_objects(self, since: datetime) -> list[StripeObject]:
        """Its charges (by PaymentIntent), refunds and transfers created at or after ``since``,
        as the real gateway lists Stripe's (every simulated refund succeeds, no transfer is
        reversed and no payment disputed, so each object's cents are what it moved)."""
        rows = self._rows(
            "SELECT kind, stripe_id, cents, created FROM simulated_stripe_objects "
            "WHERE created >= %s ORDER BY created, kind, stripe_id",
            (since,),
        )
        return [
            StripeObject(r["kind"], r["stripe_id"], int(r["cents"]), r["created"]) for r in rows
        ]

    # -- what the simulated checkout page does ---------------------------------------------

    # -- the pages that stand in for Stripe's (served by the API outside production) ------

    def checkout_page(self, session: CheckoutSession) -> str:
        """The simulated checkout page of ``session``: pay or decline."""
        sid = html.escape(session.session_id)
        dollars = f"{session.cents / 100:,.2f}"
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Simulated Stripe Checkout</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>Simulated Stripe Checkout</h1>
<p>{session.tokens} PeerPush tokens for <strong>${dollars}</strong>
(session <code>{sid}</code>, {html.escape(session.status)}).</p>
<p>No card is charged: this page stands in for Stripe outside production.</p>
<form method="post" action="{PAGE_PATH}/{sid}/pay"><button>Pay ${dollars}</button></form>
<form method="post" action="{PAGE_PATH}/{sid}/decline"><button>Decline</button></form>
</body></html>"""

    def onboarding_page(self, account_id: str) -> str:
        """The simulated Connect onboarding page: finish it to enable payouts."""
        aid = html.escape(account_id)
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Simulated Stripe Connect</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>Simulated Stripe Connect onboarding</h1>
<p>Account <code>{aid}</code>. No identity is checked: this page stands in for Stripe
outside production.</p>
<form method="post" action="{CONNECT_PAGE_PATH}/{aid}/complete">
<button>Finish onboarding</button></form>
</body></html>"""

    def payment_webhooks(self, session: CheckoutSession) -> list[tuple[bytes, str]]:
        """The signed webhooks of a paid session: the session completed, and its
        PaymentIntent succeeded (both, as Stripe sends them; the ledger credits once). The
        charge is recorded here, once, as Stripe has it before it sends them."""
        payment_intent = "pi_sim_" + _digest("payment", session.session_id)
        self._keep("charges", payment_intent, session.cents, payment_intent_id=payment_intent)
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
