"""What the application needs from the world, as protocols the adapters implement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Protocol


class Clock(Protocol):
    """Business time (SPEC §7): slots, windows, settlement, refund windows, lot times."""

    def now(self) -> datetime: ...


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


class PaymentGateway(Protocol):
    """Stripe as the ledger sees it: checkout sessions to buy tokens (SPEC §6)."""

    def create_checkout(
        self,
        *,
        user_id: str,
        tokens: int,
        cents: int,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> tuple[str, str]:
        """Open a Checkout Session; returns ``(session_id, checkout_url)``."""
        ...


class ProofStore(Protocol):
    """Object storage for proofs (S3, or a local directory in the embedded default)."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def url_for(self, key: str, expires_seconds: int = 300) -> str | None:
        """A short-lived URL to the object, or None when the bytes must be served directly."""
        ...
