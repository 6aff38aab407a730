"""Deposits through Stripe (rules §2, §6): opening a checkout, and what each webhook means.

A checkout is opened only within the rolling-24 h deposit limit (business time). Webhooks
become ledger commands, each caused by ``stripe`` and the event id:

- ``checkout.session.completed`` (paid) and ``payment_intent.succeeded`` credit the
  PaymentIntent once, whichever arrives first and however often;
- ``charge.dispute.created`` freezes the paid lot, ``charge.dispute.closed`` unfreezes it (won)
  or writes it off (lost);
- ``charge.refunded`` writes off refunds made outside our flow;
- ``refund.updated`` / ``refund.failed`` with status failed or canceled returns what the
  refund took: a refunded lot's tokens, or an external refund's write-off;
- ``transfer.reversed`` gives a cash-out's reversed tokens back (transfers are the platform
  account's, so this usually arrives here rather than at the Connect endpoint).

Anything not ours (no ``user_id`` in the metadata, a payment we do not know) is acknowledged
and ignored. An event that refers to something not recorded yet (a refund's failure before
the worker recorded the refund) raises :class:`RetryLater`, so Stripe delivers it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application import cashouts
from application.ledger import Ledger
from application.ports import CheckoutSession, CheckoutSessions, Locks, PaymentGateway, RetryLater
from domain import ids
from domain.aggregate import Cause
from domain.errors import Conflict, InvalidAmount, InvalidField, NotFound, WalletClosed
from domain.origins import same_origin
from domain.tokens import LotSource, positive_tokens
from domain.wallet import Wallet
from domain.wallet_state import LotOutcome

log = logging.getLogger("peerpush.stripe")

DEPOSIT_WINDOW = timedelta(hours=24)
CURRENCY = "usd"


class DepositLimitExceeded(Conflict):
    """The checkout would take the user past the rolling-24 h deposit limit (409)."""

    code = "deposit_limit_exceeded"

    def __init__(self, limit: int, used: int, requested: int) -> None:
        remaining = max(0, limit - used)
        super().__init__(
            f"at most {limit} tokens may be deposited in 24 h; {used} are credited or in open "
            f"checkouts, so {remaining} more may be bought now (asked {requested})"
        )
        self.limit, self.used, self.requested, self.remaining = limit, used, requested, remaining

    def details(self) -> dict[str, Any]:
        return {"limit": self.limit, "used": self.used, "remaining": self.remaining}


class ForeignReturnUrl(InvalidField):
    """A return URL off the service's public origin (rules §7: no open redirect, 422)."""

    code = "invalid_request"

    def __init__(self, fields: list[str]) -> None:
        super().__init__("return URLs must be on the service's public origin")
        self.fields = fields

    def details(self) -> dict[str, Any]:
        return {
            "errors": [{"loc": ["body", f], "msg": "not on the public origin"} for f in self.fields]
        }


@dataclass(frozen=True)
class CheckoutOpened:
    session_id: str
    checkout_url: str
    deposit_id: UUID
    tokens: int
    cents: int


class Deposits:
    """Buying tokens: a Stripe Checkout Session within the daily limit."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: PaymentGateway,
        sessions: CheckoutSessions,
        public_origin: str | None = None,
    ) -> None:
        self.ledger, self.gateway, self.sessions = ledger, gateway, sessions
        self.public_origin = public_origin  # where the payer's browser may be sent back

    def check_return_urls(self, success_url: str, cancel_url: str) -> None:
        """Refuse return URLs off the public origin: the payer's browser follows them, so a
        foreign one would turn our checkout into a redirect to any site (rules §7)."""
        if self.public_origin is None:
            return
        urls = {"success_url": success_url, "cancel_url": cancel_url}
        foreign = [f for f, url in urls.items() if not same_origin(url, self.public_origin)]
        if foreign:
            raise ForeignReturnUrl(foreign)

    def open_checkout(
        self, user_id: UUID, deposit_id: UUID, tokens: int, success_url: str, cancel_url: str
    ) -> CheckoutOpened:
        """Open (or, for the same ``deposit_id``, return again) a checkout for ``tokens``."""
        positive_tokens(tokens)
        settings = self.ledger.settings
        limit = settings.max_deposit_tokens_day
        if tokens > limit:
            raise InvalidAmount(f"at most {limit} tokens can be bought in 24 h")
        cents = tokens * settings.token_price_usd_cents
        with self.sessions.exclusive(str(user_id)) as book:
            existing = book.find(str(deposit_id))
            if existing is not None:
                return _opened(existing)
            if self._closed(user_id):
                raise WalletClosed("this account was erased: no deposit can be made")
            now = self.ledger.clock.now()
            since = now - DEPOSIT_WINDOW
            used = self._credited_since(user_id, since) + book.open_tokens(since)
            if used + tokens > limit:
                raise DepositLimitExceeded(limit, used, tokens)
            session_id, url = self.gateway.create_checkout(
                user_id=str(user_id),
                tokens=tokens,
                cents=cents,
                success_url=success_url,
                cancel_url=cancel_url,
                idempotency_key=f"checkout:{deposit_id}",
                metadata={"deposit_id": str(deposit_id)},
            )
            session = CheckoutSession(
                session_id=session_id,
                deposit_id=str(deposit_id),
                user_id=str(user_id),
                tokens=tokens,
                cents=cents,
                checkout_url=url,
                success_url=success_url,
                cancel_url=cancel_url,
                created_at=now,
            )
            book.record(session)
        return _opened(session)

    def _closed(self, user_id: UUID) -> bool:
        try:
            return self.ledger.wallet_of(user_id).closed
        except NotFound:
            return False

    def _credited_since(self, user_id: UUID, since: datetime) -> int:
        try:
            wallet = self.ledger.wallet_of(user_id)
        except NotFound:
            return 0
        return sum(
            lot.amount
            for lot in wallet.lots.values()
            if lot.source == LotSource.DEPOSIT and lot.created_at > since
        )


def _opened(session: CheckoutSession) -> CheckoutOpened:
    return CheckoutOpened(
        session.session_id,
        session.checkout_url,
        UUID(session.deposit_id),
        session.tokens,
        session.cents,
    )


Handler = Callable[["StripeEvents", Mapping[str, Any], Cause], str]


class StripeEvents:
    """The application-level meaning of each Stripe webhook (already verified)."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: PaymentGateway,
        sessions: CheckoutSessions,
        locks: Locks,
    ) -> None:
        self.ledger, self.gateway, self.sessions, self.locks = ledger, gateway, sessions, locks

    def handle(self, event: Mapping[str, Any]) -> str:
        """Apply one event; returns what it did (``credited``, ``ignored``, …)."""
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        handler = HANDLERS.get(str(event.get("type", "")))
        if handler is None or not isinstance(obj, Mapping):
            return "ignored"
        return handler(self, obj, Cause.stripe(str(event.get("id", ""))))

    # -- deposits ---------------------------------------------------------------------------

    def session_completed(self, session: Mapping[str, Any], cause: Cause) -> str:
        user_id = _user_of(session.get("metadata"))
        payment_intent = _id_of(session.get("payment_intent"))
        if session.get("mode") != "payment" or user_id is None or not payment_intent:
            return "ignored"
        if session.get("payment_status") != "paid":
            return "not_paid"  # e.g. an async payment method: a later event says paid
        outcome = self._credit(user_id, payment_intent, session, "amount_total", cause)
        self.sessions.finish(
            status="complete", session_id=str(session.get("id")), payment_intent_id=payment_intent
        )
        return outcome

    def session_expired(self, session: Mapping[str, Any], cause: Cause) -> str:
        if _user_of(session.get("metadata")) is None:
            return "ignored"
        self.sessions.finish(status="expired", session_id=str(session.get("id")))
        return "expired"

    def payment_succeeded(self, intent: Mapping[str, Any], cause: Cause) -> str:
        metadata = intent.get("metadata")
        user_id = _user_of(metadata)
        payment_intent = _id_of(intent.get("id"))
        if user_id is None or not payment_intent:
            return "ignored"
        outcome = self._credit(user_id, payment_intent, intent, "amount_received", cause)
        deposit_id = metadata.get("deposit_id") if isinstance(metadata, Mapping) else None
        if deposit_id:
            self.sessions.finish(
                status="complete", deposit_id=str(deposit_id), payment_intent_id=payment_intent
            )
        return outcome

    def _credit(
        self,
        user_id: UUID,
        payment_intent: str,
        paid: Mapping[str, Any],
        amount_field: str,
        cause: Cause,
    ) -> str:
        cents = paid.get(amount_field)
        if str(paid.get("currency", "")).lower() != CURRENCY or not isinstance(cents, int):
            log.warning("payment %s is not in %s cents; not credited", payment_intent, CURRENCY)
            return "ignored"
        try:
            self.ledger.credit_deposit(user_id, payment_intent, cents, cause)
        except (InvalidAmount, InvalidField) as e:
            log.warning("payment %s not credited: %s", payment_intent, e)
            return "ignored"
        return "credited"

    # -- disputes and refunds outside our flow ------------------------------------------------

    def dispute_created(self, dispute: Mapping[str, Any], cause: Cause) -> str:
        dispute_id = _id_of(dispute.get("id"))
        payment_intent = _id_of(dispute.get("payment_intent"))
        user_id = self._owner(payment_intent)
        if user_id is None or not dispute_id:
            return "ignored"
        with self.locks.hold(f"stripe:{dispute_id}"):
            if self._settled_before(user_id, dispute_id):
                return "duplicate"  # a late copy of a dispute already closed
            self.ledger.open_dispute(user_id, payment_intent, dispute_id, cause)
        return "dispute_opened"

    def dispute_closed(self, dispute: Mapping[str, Any], cause: Cause) -> str:
        dispute_id = _id_of(dispute.get("id"))
        payment_intent = _id_of(dispute.get("payment_intent"))
        status = str(dispute.get("status", ""))
        cents = dispute.get("amount")
        user_id = self._owner(payment_intent)
        if user_id is None or not dispute_id or not isinstance(cents, int):
            return "ignored"
        if status not in ("won", "lost", "warning_closed"):
            return "ignored"
        with self.locks.hold(f"stripe:{dispute_id}"):
            if self._settled_before(user_id, dispute_id):
                return "duplicate"
            wallet = self._wallet(user_id)
            known = wallet is not None and (
                dispute_id in wallet.disputes or dispute_id in wallet.early_disputes.values()
            )
            if not known:
                # Closed arrived before created (Stripe does not promise an order). Before
                # the deposit is credited the wallet keeps the verdict for the credit.
                self.ledger.open_dispute(user_id, payment_intent, dispute_id, cause)
            lost = status == "lost"
            self.ledger.close_dispute(user_id, dispute_id, not lost, cents, cause)
        return "dispute_lost" if lost else "dispute_won"

    def charge_refunded(self, charge: Mapping[str, Any], cause: Cause) -> str:
        payment_intent = _id_of(charge.get("payment_intent"))
        user_id = self._owner(payment_intent)
        if user_id is None:
            return "ignored"
        wallet = self._wallet(user_id)
        if wallet is None or payment_intent not in wallet.deposits:
            raise RetryLater(f"{payment_intent} refunded before its deposit was credited")
        written_off = 0
        for refund in self.gateway.refunds(payment_intent):
            if not refund.made or refund.metadata.get("withdrawal_id") in wallet.withdrawals:
                continue  # failed, or one of our withdrawals (the worker records those)
            with self.locks.hold(f"stripe:{refund.refund_id}"):
                if self._settled_before(user_id, refund.refund_id):
                    continue
                self.ledger.write_off_external_refund(
                    user_id, payment_intent, refund.refund_id, refund.cents, cause
                )
                written_off += 1
        return "written_off" if written_off else "ours"

    def refund_updated(self, refund: Mapping[str, Any], cause: Cause) -> str:
        """A refund that ends ``failed`` or ``canceled`` returns what it took (rules §6)."""
        if refund.get("status") not in ("failed", "canceled"):
            return "ignored"
        metadata = refund.get("metadata")
        if not isinstance(metadata, Mapping):
            metadata = {}
        user_id = _user_of(metadata)
        withdrawal_id = _uuid(metadata.get("withdrawal_id"))
        lot_id = _uuid(metadata.get("lot_id"))
        if user_id is None or withdrawal_id is None or lot_id is None:
            return self._external_refund_failed(refund, cause)
        wallet = self._wallet(user_id)
        hold = wallet.withdrawals.get(str(withdrawal_id)) if wallet else None
        if hold is None or str(lot_id) not in hold.lots:
            return "ignored"
        outcome = hold.outcome(lot_id)
        if outcome is LotOutcome.PENDING:
            raise RetryLater(f"refund {refund.get('id')} failed before it was recorded")
        if outcome is not LotOutcome.REFUNDED or hold.refund_ids.get(str(lot_id)) != refund.get(
            "id"
        ):
            return "duplicate"
        self.ledger.fail_refund(user_id, withdrawal_id, lot_id, cause)
        return "refund_failed"

    def _external_refund_failed(self, refund: Mapping[str, Any], cause: Cause) -> str:
        """A refund made outside our flow, written off, failed: reverse its write-off."""
        refund_id = _id_of(refund.get("id"))
        user_id = self._owner(_id_of(refund.get("payment_intent")))
        if user_id is None or not refund_id:
            return "ignored"
        with self.locks.hold(f"stripe:{refund_id}"):
            wallet = self._wallet(user_id)
            if wallet is None or refund_id in wallet.reversed_write_offs:
                return "duplicate"
            if refund_id not in wallet.write_offs:
                return "ignored"  # never written off: charge.refunded skips failed refunds
            self.ledger.reverse_external_refund(user_id, refund_id, cause)
        return "write_off_reversed"

    # -- helpers ------------------------------------------------------------------------------

    def _owner(self, payment_intent: str) -> UUID | None:
        """The user a PaymentIntent paid for: our sessions know, or Stripe's metadata."""
        if not payment_intent:
            return None
        owner = self.sessions.owner_of(payment_intent)
        if owner is None:
            owner = (self.gateway.payment_intent_metadata(payment_intent) or {}).get("user_id")
        return _uuid(owner)

    def _wallet(self, user_id: UUID) -> Wallet | None:
        try:
            return self.ledger.wallet_of(user_id)
        except NotFound:
            return None

    def _settled_before(self, user_id: UUID, reference: str) -> bool:
        """Whether a dispute was already closed, or a refund written off, for this wallet.

        The wallet keeps no such set, so its own events say; callers hold the reference's
        lock, so no second delivery can act between this check and the command.
        """
        for event in self.ledger.events.get(ids.wallet_id(user_id)):
            if isinstance(event, Wallet.LotWrittenOff) and event.reference == reference:
                return True
            if isinstance(event, Wallet.LotUnfrozen | Wallet.EarlyDisputeClosed) and (
                event.dispute_id == reference
            ):
                return True
        return False


def _transfer_reversed(events: StripeEvents, transfer: Mapping[str, Any], cause: Cause) -> str:
    return cashouts.record_transfer_reversals(events.ledger, cashouts.transfer_of(transfer), cause)


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _user_of(metadata: object) -> UUID | None:
    return _uuid(metadata.get("user_id")) if isinstance(metadata, Mapping) else None


def _id_of(value: object) -> str:
    """A Stripe id, whether the field holds it or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else ""


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": StripeEvents.session_completed,
    "checkout.session.async_payment_succeeded": StripeEvents.session_completed,
    "checkout.session.expired": StripeEvents.session_expired,
    "checkout.session.async_payment_failed": StripeEvents.session_expired,
    "payment_intent.succeeded": StripeEvents.payment_succeeded,
    "charge.dispute.created": StripeEvents.dispute_created,
    "charge.dispute.closed": StripeEvents.dispute_closed,
    "charge.refunded": StripeEvents.charge_refunded,
    "refund.updated": StripeEvents.refund_updated,
    "refund.failed": StripeEvents.refund_updated,
    "charge.refund.updated": StripeEvents.refund_updated,
    "transfer.reversed": _transfer_reversed,
}
