"""Request ids a wallet acted on, remembered forever outside the wallet's state (rules §1).

An admin's adjustment carries an id, and a repeat of that id must change nothing, however
long after. Kept in the wallet's state, every such id would be copied on every command and
carried by every snapshot: a command would cost more with every adjustment ever made, when
it must cost the same however long the wallet's history. Each used id is instead a tiny
aggregate of its own, saved in the same save as the wallet's event. Its id is derived from
the wallet and the request id, so a repeat finds it, or (racing it) collides with it in the
event store and is re-run, finds it and records nothing. It never changes after it is made.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerAggregate, LedgerCreated

ADJUSTMENT = "adjustment"


class UsedId(LedgerAggregate):
    """One request id of one kind that one wallet acted on."""

    TOPIC = "peerpush:UsedId"

    class Recorded(LedgerCreated):
        TOPIC = "peerpush:UsedId.Recorded"
        wallet_id: UUID
        kind: str
        key: str

    def __init__(self, wallet_id: UUID, kind: str, key: str) -> None:
        self.wallet_id = wallet_id
        self.kind = kind
        self.key = key

    @classmethod
    def record(cls, wallet_id: UUID, kind: str, key: str, cause: Cause, at: datetime) -> UsedId:
        return cls._create(
            cls.Recorded,
            id=ids.used_id(wallet_id, kind, key),
            wallet_id=wallet_id,
            kind=kind,
            key=key,
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )
