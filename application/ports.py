"""What the application needs from the world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Any, Protocol, runtime_checkable

from application.reconcile import StripeObject
from domain.errors import Conflict, NotFound


class Clock(Protocol):
    """Business time (rules §7): slots, windows, settlement, refund windows, lot times."""

    def now(self) -> datetime: ...


@runtime_checkable
class MovableClock(Clock, Protocol):
    """A test clock (development only): business time that can be moved forward.

    Every process of a deployment must see the same business time, so the clock the services
    run on keeps its offset where all of them read it (``adapters.test_clock``).
    """

    def advance(self, by: timedelta) -> datetime:
        """Move business time forward by ``by``; returns the new time."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class AdjustableClock:
    """A clock that can be moved forward (tests, and the embedded server's test clock).

    It runs with the wall clock from an offset, like Stripe's test clocks; ``frozen``
    stops it for deterministic tests.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = Lock()
        self._frozen = frozen
        self._offset = timedelta(0) if start is None else start - datetime.now(UTC)
        self._fixed = start or datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._fixed if self._frozen else datetime.now(UTC) + self._offset

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += by
            self._fixed += by
            return self._fixed if self._frozen else datetime.now(UTC) + self._offset

    def set(self, at: datetime) -> None:
        with self._lock:
            if at < (self._fixed if self._frozen else datetime.now(UTC) + self._offset):
                raise ValueError("the clock only moves forward")
            self._fixed = at
            self._offset = at - datetime.now(UTC)


@runtime_checkable
class AggregateCache(Protocol):
    """A repository whose cached aggregates a command may decide on (``TRUSTED_CACHE``):
    ``cached`` (a copy, None if not cached or behind), ``check_out`` (the aggregate itself, out
    of the cache until remembered), ``take_out`` (read for a change, not copied when it was
    not cached), ``remember`` (as just committed), ``forget`` (behind)."""

    def cached(self, aggregate_id: Any) -> Any | None: ...

    def check_out(self, aggregate_id: Any) -> Any | None: ...

    def take_out(self, aggregate_id: Any) -> Any: ...

    def remember(self, aggregate: Any) -> None: ...

    def forget(self, aggregate_id: Any, older_than: int | None = None) -> None: ...


class PaymentGateway(Protocol):
    """Stripe as the ledger sees it: checkout sessions to buy tokens (rules §6)."""

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
        """Open a Checkout Session; returns ``(session_id, checkout_url)``.

        ``metadata`` joins the user id and tokens in the session's and its PaymentIntent's
        metadata, so every event about the payment names what it was for.
        """
        ...

    def verify_webhook(self, payload: bytes, signature: str) -> Mapping[str, Any]:
        """The event a webhook delivered, once its ``Stripe-Signature`` proves it came from
        Stripe within the tolerance (wall clock); raises :class:`InvalidWebhook` otherwise."""
        ...

    def refund(
        self,
        *,
        payment_intent_id: str,
        cents: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Refund:
        """Refund part of a payment to the card that paid it.

        Raises :class:`PaymentRefused` when Stripe will not make it (for good) and
        :class:`PaymentUnavailable` when the outcome is unknown (retry later, after a look-up).
        """
        ...

    def find_refund(self, *, payment_intent_id: str, metadata: Mapping[str, str]) -> Refund | None:
        """The refund of this payment whose metadata includes all of ``metadata``, if any."""
        ...

    def refunds(self, payment_intent_id: str) -> Sequence[Refund]:
        """Every refund of a payment, ours or not."""
        ...

    def payment_intent_metadata(self, payment_intent_id: str) -> Mapping[str, str] | None:
        """A PaymentIntent's metadata (None if Stripe does not know it)."""
        ...

    def money_objects(self, since: datetime) -> Sequence[StripeObject]:
        """Charges, refunds, transfers and disputes created at or after ``since``
        (reconciliation, rules §6)."""
        ...


class ProofExists(Conflict):
    """An object is already stored under that key (proofs are never replaced)."""

    code = "proof_exists"


class ProofMissing(NotFound):
    """No object is stored under that key."""

    code = "proof_missing"


class ProofStore(Protocol):
    """Object storage for proofs (S3, or a local directory in the embedded default).

    Objects are write-once: a key names one submission and its event records the object's
    SHA-256, so nothing may silently replace it.
    """

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store the object if the key is free; raises :class:`ProofExists` otherwise."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; raises :class:`ProofMissing` when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (a refused submission's, or an old orphan); none is fine."""
        ...

    def uploaded_at(self, key: str) -> datetime | None:
        """When the object was stored (wall clock), or None when there is none."""
        ...

    def url_for(self, key: str, expires_seconds: int = 300) -> str | None:
        """A short-lived URL to the object, or None when the bytes must be served directly."""
        ...


# -- Stripe: refunds, webhooks, checkout sessions (rules §6) -----------------------------------

REFUND_MADE = frozenset({"pending", "requires_action", "succeeded"})
"""Refund statuses meaning Stripe accepted the refund (a later failure arrives by webhook)."""


@dataclass(frozen=True)
class Refund:
    """A Stripe refund as the ledger needs it."""

    refund_id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    cents: int
    payment_intent_id: str
    metadata: Mapping[str, str]

    @property
    def made(self) -> bool:
        return self.status in REFUND_MADE


class PaymentRefused(Exception):
    """Stripe refused the call for good (a charge already refunded or disputed, …)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class PaymentUnavailable(Exception):
    """Stripe could not be reached or failed: the outcome is unknown, try again later."""


class InvalidWebhook(Exception):
    """A webhook whose signature is missing, wrong or too old (400, nothing recorded)."""


class RetryLater(Exception):
    """The event refers to something the ledger has not recorded yet (a refund, a credit, a
    transfer's settlement): Stripe is asked to deliver it again (503)."""


@dataclass(frozen=True)
class CheckoutSession:
    """A Checkout Session we opened for a deposit, and what became of it."""

    session_id: str
    deposit_id: str
    user_id: str
    tokens: int
    cents: int
    checkout_url: str
    success_url: str
    cancel_url: str
    created_at: datetime
    status: str = "open"  # open | complete | expired
    payment_intent_id: str | None = None


class CheckoutBook(Protocol):
    """One user's checkout sessions, while no other deposit checkout of theirs can start."""

    def find(self, deposit_id: str) -> CheckoutSession | None: ...

    def open_tokens(self, since: datetime) -> int:
        """Tokens of the user's sessions created since ``since`` and still open."""
        ...

    def record(self, session: CheckoutSession) -> None: ...


class CheckoutSessions(Protocol):
    """Where checkout sessions are kept (shared by every API process)."""

    def exclusive(self, user_id: str) -> AbstractContextManager[CheckoutBook]:
        """The user's book, serialised against other checkouts of the same user."""
        ...

    def get(self, session_id: str) -> CheckoutSession | None: ...

    def finish(
        self,
        *,
        status: str,
        session_id: str | None = None,
        deposit_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> None:
        """Mark the session named by its id or its deposit id complete or expired."""
        ...

    def owner_of(self, payment_intent_id: str) -> str | None:
        """The user a paid PaymentIntent belongs to, if one of our sessions knows it."""
        ...


class Locks(Protocol):
    """Named locks shared by every process (PostgreSQL advisory locks)."""

    def try_hold(self, name: str) -> AbstractContextManager[bool]:
        """Take the lock if free; yields whether it was taken (released on exit)."""
        ...

    def hold(self, name: str) -> AbstractContextManager[None]:
        """Wait for the lock and hold it until exit."""
        ...


# -- Stripe Connect: payout accounts and transfers (rules §2 cash-outs, §6) --------------------


@dataclass(frozen=True)
class Transfer:
    """A Stripe Transfer to a connected account, as the ledger needs it."""

    transfer_id: str
    cents: int
    destination: str
    transfer_group: str
    metadata: Mapping[str, str]
    reversals: tuple[tuple[str, int], ...] = ()  # (reversal id, cents) in Stripe's order


@dataclass(frozen=True)
class PayoutAccount:
    """A user's Stripe Connect Express account and whether Stripe lets it receive payouts."""

    account_id: str
    payouts_enabled: bool


class PayoutGateway(Protocol):
    """Stripe Connect as the ledger sees it: onboarding and one transfer per cash-out."""

    def create_account(self, *, user_id: str, idempotency_key: str) -> str:
        """Create a Connect Express account for the user; returns its id (``acct_…``)."""
        ...

    def onboarding_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        """A short-lived Stripe-hosted onboarding page for the account."""
        ...

    def transfer(
        self,
        *,
        account_id: str,
        cents: int,
        transfer_group: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Transfer:
        """Move ``cents`` to the connected account. Raises :class:`PaymentRefused` when
        Stripe will not make it (for good), :class:`PaymentUnavailable` when the outcome is
        unknown (look it up by its transfer group before trying again)."""
        ...

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        """The transfer made for this transfer group (our cash-out id), if any."""
        ...

    def verify_connect_webhook(self, payload: bytes, signature: str) -> Mapping[str, Any]:
        """A Connect webhook's event, checked with ``STRIPE_CONNECT_WEBHOOK_SECRET``."""
        ...


class PayoutAccounts(Protocol):
    """Where each user's link to their Connect account is kept (the users table)."""

    def payout_account(self, user_id: str) -> PayoutAccount | None: ...

    def link_payout_account(self, user_id: str, account_id: str) -> None: ...

    def record_payouts_enabled(self, account_id: str, enabled: bool, at: datetime) -> str | None:
        """Record what Stripe said of the account; returns its user's id (None: not ours)."""
        ...


# -- group commit: what the event store's recorder is told about a batch of saves ----------


@dataclass(frozen=True)
class BatchPart:
    """One command's share of a batch the ledger writes in one transaction (group commit).

    The batch's events are handed to the recorder's ``insert_events`` in order, with the keyword
    ``batch``: a sequence of these, one per command, ``count`` events each. ``context`` is the
    command's caller's `contextvars.Context` (the request it came from, e.g. an idempotent
    response to store with its events); ``saved`` the aggregates the command changed. A
    recorder that knows nothing of batches ignores the keyword.
    """

    count: int
    context: Any
    saved: Sequence[object]


class BatchPartFailed(Exception):
    """Raised by a recorder, its transaction rolled back, when one command of a batch cannot
    be written for a reason of its own (its stored response could not be built, or one of its
    events conflicts with a stored one): that command fails with ``cause`` and the others are
    written again without it."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


class WorkerMetrics(Protocol):
    """What the workers report for operators (``adapters.metrics``: Prometheus)."""

    def pass_failed(self, worker: str) -> None: ...

    def settlements_failed(self, count: int) -> None: ...

    def payouts_paused(self, paused: bool) -> None: ...

    def settlement_backlog(self, count: int) -> None: ...

    def audit_failed(self) -> None: ...

    def audited(self, findings: int, seconds: float, position: int) -> None: ...

    def reconcile_failed(self) -> None: ...

    def reconciled(self, mismatches: int, seconds: float) -> None: ...
