"""What every PeerPush aggregate and event shares: who caused it, and when.

Every event records its actor (``user:<id>``, ``admin:<id>``, ``stripe`` or
``worker:<name>``) and the request or webhook id that caused it (rules §8), and carries the
business time given by the application's clock as its timestamp (rules §7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate


@dataclass(frozen=True)
class Cause:
    """Who asked for a change, and through which request."""

    actor: str
    request_id: str

    @classmethod
    def user(cls, user_id: object, request_id: str = "") -> Cause:
        return cls(f"user:{user_id}", request_id)

    @classmethod
    def admin(cls, admin_id: object, request_id: str = "") -> Cause:
        return cls(f"admin:{admin_id}", request_id)

    @classmethod
    def worker(cls, name: str, request_id: str = "") -> Cause:
        return cls(f"worker:{name}", request_id)

    @classmethod
    def stripe(cls, event_id: str) -> Cause:
        return cls("stripe", event_id)


class LedgerEvent(Aggregate.Event):
    """Base of every non-creation event: carries its cause."""

    actor: str
    request_id: str


class LedgerCreated(Aggregate.Created):
    """Base of every creation event: carries its cause."""

    actor: str
    request_id: str


class LedgerAggregate(Aggregate):
    """An aggregate whose events say who caused them and carry the business time."""

    def _record(
        self, event_class: type[LedgerEvent], cause: Cause, at: datetime, **fields: Any
    ) -> None:
        require_aware(at)
        self.trigger_event(
            event_class,
            timestamp=at,
            actor=cause.actor,
            request_id=cause.request_id,
            **fields,
        )


def require_aware(at: datetime) -> datetime:
    """Business times are timezone-aware; a naive time is a programming error upstream."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("business times must be timezone-aware")
    return at


# Each aggregate names its own creation event (``Wallet.Opened``, ``Challenge.Drafted``);
# without this the library would give every subclass an extra, topic-less ``Created``.
del LedgerAggregate.Created
