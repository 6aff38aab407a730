"""A local HTTP server speaking the part of Stripe's API the ledger uses.

The real ``stripe`` client library talks to it (``STRIPE_API_BASE``), so tests exercise our
gateway, its parameters and its error handling end to end without the internet:

- ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``;
- ``GET /v1/payment_intents/{id}``;
- ``POST /v1/refunds`` (validated against the payment: amount left, disputed charge),
  ``GET /v1/refunds?payment_intent=`` (a list object), ``GET /v1/refunds/{id}``;
- Connect: ``POST /v1/accounts`` (Express), ``POST /v1/account_links``, ``POST /v1/transfers``
  (refused unless the destination's payouts are enabled), ``GET /v1/transfers?transfer_group=``
  (a list object), ``GET /v1/transfers/{id}``;
- for reconciliation: ``GET /v1/charges``, ``GET /v1/disputes``, and ``created[gte]`` on the
  charge, refund, transfer and dispute lists.

Like Stripe, it keeps each ``Idempotency-Key``'s first response and replays it (errors
included) for a repeat. Helpers play the payer and Stripe's dashboard (``pay``,
``dispute``, ``refund_outside``, ``fail_refund``) and build the webhook events Stripe would
send, signed as Stripe signs them: ``t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<body>")``.

Fault injection, for crash and retry tests: ``drop_refund_responses`` (make the refund, then
drop the connection without answering), ``refund_status`` (the status new refunds get),
``hide_refunds`` (the list endpoint returns nothing, as if a look-up missed);
``drop_transfer_responses``, ``transfer_error`` (a code every new transfer is refused with).
Connect helpers: ``enable_payouts`` (``account.updated``), ``reverse_transfer``
(``transfer.reversed``, whole or partial).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WEBHOOK_SECRET = "whsec_fake_0123456789"
API_KEY = "sk_test_fake"

_counter = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_counter):06d}{uuid.uuid4().hex[:10]}"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


class StripeError(Exception):
    def __init__(self, status: int, code: str, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code, self.message, self.kind = status, code, message, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.kind, "code": self.code, "message": self.message}}


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None


@dataclass
class FakeStripe:
    """Stripe's state for one test, and the server that exposes it."""

    webhook_secret: str = WEBHOOK_SECRET
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    idempotent: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # fault injection
    drop_refund_responses: int = 0
    refund_status: str = "succeeded"
    hide_refunds: bool = False
    drop_transfer_responses: int = 0
    transfer_error: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripe:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- HTTP -------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        params = decode_form(parse_qsl(raw if method == "POST" else url.query))
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        drop = False
        with self.lock:
            self.requests.append(Request(method, url.path, params, key))
            if handler.headers.get("Authorization") != f"Bearer {API_KEY}":
                status, body = 401, StripeError(401, "", "bad key", "authentication_error").body()
            elif key is not None and (url.path, key) in self.idempotent:
                status, body = self.idempotent[(url.path, key)]
            else:
                try:
                    status, body = 200, self._route(method, url.path, params)
                except StripeError as e:
                    status, body = e.status, e.body()
                if key is not None:
                    self.idempotent[(url.path, key)] = (status, body)
                if url.path == "/v1/refunds" and method == "POST" and self.drop_refund_responses:
                    self.drop_refund_responses -= 1
                    drop = True
                if (
                    url.path == "/v1/transfers"
                    and method == "POST"
                    and self.drop_transfer_responses
                ):
                    self.drop_transfer_responses -= 1
                    drop = True
        if drop:  # the refund exists; the caller never hears of it
            handler.close_connection = True
            handler.connection.close()
            return
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", new_id("req"))
        if key is not None:
            handler.send_header("Idempotency-Key", key)
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create_session(params)
        if method == "POST" and path == "/v1/refunds":
            return self._create_refund(params)
        if method == "GET" and path == "/v1/refunds":
            return self._list_refunds(params)
        if method == "POST" and path == "/v1/accounts":
            return self._create_account(params)
        if method == "POST" and path == "/v1/account_links":
            return self._create_account_link(params)
        if method == "POST" and path == "/v1/transfers":
            return self._create_transfer(params)
        if method == "GET" and path == "/v1/transfers":
            return self._list_transfers(params)
        if method == "GET" and path == "/v1/charges":
            return self._listing("/v1/charges", self._charges(), params)
        if method == "GET" and path == "/v1/disputes":
            return self._listing("/v1/disputes", list(self.disputes.values()), params)
        for prefix, table in (
            ("/v1/accounts/", self.accounts),
            ("/v1/transfers/", self.transfers),
            ("/v1/checkout/sessions/", self.sessions),
            ("/v1/payment_intents/", self.intents),
            ("/v1/refunds/", self.refunds),
        ):
            if method == "GET" and path.startswith(prefix):
                found = table.get(path[len(prefix) :])
                if found is None:
                    raise StripeError(404, "resource_missing", f"No such object: {path}")
                return found
        raise StripeError(404, "resource_missing", f"Unrecognized request URL ({method} {path})")

    def _create_session(self, p: dict[str, Any]) -> dict[str, Any]:
        item = p["line_items"][0]
        cents = int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
        if p.get("mode") != "payment" or item["price_data"]["currency"] != "usd":
            raise StripeError(400, "parameter_invalid", "only usd payments are faked")
        session_id = new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": cents,
            "currency": "usd",
            "client_reference_id": p.get("client_reference_id"),
            "metadata": p.get("metadata", {}),
            "payment_intent": None,
            "success_url": p["success_url"],
            "cancel_url": p["cancel_url"],
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "_intent_metadata": p.get("payment_intent_data", {}).get("metadata", {}),
        }
        self.sessions[session_id] = session
        return self._public(session)

    def _create_refund(self, p: dict[str, Any]) -> dict[str, Any]:
        intent = self.intents.get(p.get("payment_intent", ""))
        if intent is None:
            raise StripeError(404, "resource_missing", "No such payment_intent")
        if intent.get("_disputed"):
            raise StripeError(400, "charge_disputed", "This charge is disputed.")
        amount = int(p.get("amount", intent["amount_received"]))
        left = intent["amount_received"] - sum(
            r["amount"]
            for r in self._refunds_of(intent["id"])
            if r["status"] not in ("failed", "canceled")
        )
        if left <= 0:
            raise StripeError(400, "charge_already_refunded", "Charge has already been refunded.")
        if amount > left:
            raise StripeError(400, "amount_too_large", "Refund amount is greater than left.")
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": "usd",
            "payment_intent": intent["id"],
            "charge": intent["latest_charge"],
            "status": self.refund_status,
            "metadata": p.get("metadata", {}),
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        return refund

    def _list_refunds(self, p: dict[str, Any]) -> dict[str, Any]:
        found = [] if self.hide_refunds else self._refunds_of(p.get("payment_intent"))
        return self._listing("/v1/refunds", found, p)

    def _charges(self) -> list[dict[str, Any]]:
        """Each PaymentIntent's one charge (what ``latest_charge`` names)."""
        return [
            {
                "id": i["latest_charge"],
                "object": "charge",
                "amount": i["amount_received"],
                "currency": "usd",
                "payment_intent": i["id"],
                "status": "succeeded",
                "metadata": i["metadata"],
                "created": i.get("_created", 0),
            }
            for i in self.intents.values()
        ]

    @staticmethod
    def _listing(url: str, found: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
        created = p.get("created")
        since = created.get("gte") if isinstance(created, dict) else None
        if since is not None:
            found = [o for o in found if int(o.get("created", 0)) >= int(since)]
        data = [{k: v for k, v in o.items() if not k.startswith("_")} for o in found]
        return {"object": "list", "data": data, "has_more": False, "url": url}

    def _refunds_of(self, payment_intent: str | None) -> list[dict[str, Any]]:
        newest_first = reversed(list(self.refunds.values()))
        return [r for r in newest_first if payment_intent in (None, r["payment_intent"])]

    def _create_account(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("type") != "express":
            raise StripeError(400, "parameter_invalid", "only Express accounts are faked")
        account = {
            "id": new_id("acct"),
            "object": "account",
            "type": "express",
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            "metadata": p.get("metadata", {}),
        }
        self.accounts[account["id"]] = account
        return account

    def _create_account_link(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("account") not in self.accounts:
            raise StripeError(404, "resource_missing", "No such account")
        for name in ("refresh_url", "return_url", "type"):
            if not p.get(name):
                raise StripeError(400, "parameter_missing", f"Missing {name}")
        return {
            "object": "account_link",
            "url": f"https://connect.stripe.test/setup/e/{p['account']}/{new_id('link')}",
            "expires_at": int(time.time()) + 300,
        }

    def _create_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts.get(p.get("destination", ""))
        if account is None:
            raise StripeError(404, "resource_missing", "No such destination")
        if self.transfer_error:
            raise StripeError(400, self.transfer_error, "The transfer was refused.")
        if not account["payouts_enabled"]:
            raise StripeError(400, "insufficient_capabilities_for_transfer", "Not enabled.")
        if p.get("currency") != "usd" or int(p.get("amount", 0)) <= 0:
            raise StripeError(400, "parameter_invalid", "a positive usd amount is required")
        transfer_id = new_id("tr")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": int(p["amount"]),
            "amount_reversed": 0,
            "currency": "usd",
            "destination": account["id"],
            "transfer_group": p.get("transfer_group"),
            "metadata": p.get("metadata", {}),
            "reversed": False,
            "reversals": {"object": "list", "data": [], "has_more": False},
            "created": int(time.time()),
        }
        self.transfers[transfer_id] = transfer
        return transfer

    def _list_transfers(self, p: dict[str, Any]) -> dict[str, Any]:
        group = p.get("transfer_group")
        found = [
            t
            for t in reversed(list(self.transfers.values()))
            if group in (None, t["transfer_group"])
        ]
        return self._listing("/v1/transfers", found, p)

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    # -- the payer and Stripe's side ----------------------------------------------------------

    def pay(self, session_id: str) -> list[dict[str, Any]]:
        """Pay a session: its PaymentIntent succeeds. Returns the two events Stripe sends."""
        with self.lock:
            session = self.sessions[session_id]
            intent_id = new_id("pi")
            intent = {
                "id": intent_id,
                "object": "payment_intent",
                "status": "succeeded",
                "amount": session["amount_total"],
                "amount_received": session["amount_total"],
                "currency": "usd",
                "metadata": dict(session["_intent_metadata"]),
                "latest_charge": new_id("ch"),
                "_created": int(time.time()),
            }
            self.intents[intent_id] = intent
            session.update(status="complete", payment_status="paid", payment_intent=intent_id)
            return [
                self.event("checkout.session.completed", self._public(session)),
                self.event("payment_intent.succeeded", self._public(intent)),
            ]

    def payment_intent(self, cents: int, metadata: dict[str, str] | None = None) -> str:
        """A succeeded payment of ``cents`` (made outside Checkout); returns its id."""
        with self.lock:
            intent = {
                "id": new_id("pi"),
                "object": "payment_intent",
                "status": "succeeded",
                "amount": cents,
                "amount_received": cents,
                "currency": "usd",
                "metadata": dict(metadata or {}),
                "latest_charge": new_id("ch"),
                "_created": int(time.time()),
            }
            self.intents[intent["id"]] = intent
            return str(intent["id"])

    def foreign_payment(self, cents: int = 5000) -> dict[str, Any]:
        """A payment of the same Stripe account made by something else (no metadata)."""
        with self.lock:
            intent = self.intents[self.payment_intent(cents)]
            return self.event("payment_intent.succeeded", self._public(intent))

    def dispute(self, payment_intent: str, cents: int | None = None) -> dict[str, Any]:
        """The payer disputes the charge: ``charge.dispute.created``."""
        with self.lock:
            intent = self.intents[payment_intent]
            intent["_disputed"] = True
            dispute = {
                "id": new_id("dp"),
                "object": "dispute",
                "amount": intent["amount_received"] if cents is None else cents,
                "currency": "usd",
                "charge": intent["latest_charge"],
                "payment_intent": payment_intent,
                "status": "needs_response",
                "reason": "fraudulent",
                "created": int(time.time()),
            }
            self.disputes[dispute["id"]] = dispute
            return self.event("charge.dispute.created", dict(dispute))

    def close_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """The card network decides: ``charge.dispute.closed`` with ``won`` or ``lost``."""
        with self.lock:
            dispute = self.disputes[dispute_id]
            dispute["status"] = status
            self.intents[dispute["payment_intent"]]["_disputed"] = status != "won"
            return self.event("charge.dispute.closed", dict(dispute))

    def refund_outside(self, payment_intent: str, cents: int) -> dict[str, Any]:
        """Someone refunds from the Dashboard: ``charge.refunded``, no metadata of ours."""
        with self.lock:
            self._create_refund({"payment_intent": payment_intent, "amount": cents})
            intent = self.intents[payment_intent]
            charge = {
                "id": intent["latest_charge"],
                "object": "charge",
                "amount": intent["amount_received"],
                "amount_refunded": sum(r["amount"] for r in self._refunds_of(payment_intent)),
                "payment_intent": payment_intent,
                "refunded": True,
                "metadata": {},
            }
            return self.event("charge.refunded", charge)

    def fail_refund(self, refund_id: str, status: str = "failed") -> dict[str, Any]:
        """The card's bank sends the money back (``failed``), or the refund is ``canceled``:
        ``refund.updated`` with that status."""
        with self.lock:
            refund = self.refunds[refund_id]
            refund.update(status=status, failure_reason="expired_or_canceled_card")
            return self.event("refund.updated", dict(refund))

    def refunds_for(self, metadata: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r
                for r in self.refunds.values()
                if all(r["metadata"].get(k) == v for k, v in metadata.items())
            ]

    def enable_payouts(self, account_id: str, enabled: bool = True) -> dict[str, Any]:
        """The user finishes (or loses) onboarding: ``account.updated``."""
        with self.lock:
            account = self.accounts[account_id]
            account.update(payouts_enabled=enabled, charges_enabled=enabled, details_submitted=True)
            return self.event("account.updated", dict(account))

    def reverse_transfer(self, transfer_id: str, cents: int | None = None) -> dict[str, Any]:
        """The platform (or Stripe) reverses a transfer, whole or in part:
        ``transfer.reversed``, the transfer with every reversal so far."""
        with self.lock:
            transfer = self.transfers[transfer_id]
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = left if cents is None else min(cents, left)
            reversal = {
                "id": new_id("trr"),
                "object": "transfer_reversal",
                "amount": amount,
                "transfer": transfer_id,
            }
            transfer["reversals"]["data"].append(reversal)
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            return self.event("transfer.reversed", json.loads(json.dumps(transfer)))

    def transfer_calls(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/transfers"]

    def refund_calls(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/refunds"]

    # -- webhooks -----------------------------------------------------------------------------

    def event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }

    def sign(self, payload: str, *, timestamp: int | None = None, secret: str | None = None) -> str:
        t = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(
            (secret or self.webhook_secret).encode(), f"{t}.{payload}".encode(), hashlib.sha256
        )
        return f"t={t},v1={mac.hexdigest()}"

    def webhook(
        self, event: dict[str, Any], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Stripe would POST for ``event``."""
        payload = json.dumps(event)
        signature = self.sign(payload, timestamp=timestamp, secret=secret)
        return payload.encode(), {
            "Stripe-Signature": signature,
            "Content-Type": "application/json",
        }
