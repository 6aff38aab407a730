"""A wallet as it was at a stream position (rules §8).

Replayed from the wallet's own events in the stream, not from a read model, so an auditor can
compare the two. "As of a time T" is first turned into a position (the last one whose event
time is at most T) by :func:`projections.position_times.position_at`; the API and the audit
both do exactly that, then call :func:`wallet_as_of` with the position.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from application.ledger import Ledger
from domain import ids
from domain.balances import SHOWN, figures
from domain.errors import NotFound
from domain.tokens import Lot
from domain.wallet import Wallet

LAST_POSITION = 2**63 - 1
"""The largest position the stream can hold (bigint): any position asked beyond it means the
whole stream."""


@dataclass(frozen=True)
class WalletAsOf:
    position: int
    wallet: Wallet

    @property
    def balances(self) -> dict[str, int]:
        w = self.wallet
        return figures(w, SHOWN)

    @property
    def lots(self) -> list[Lot]:
        return list(self.wallet.lots.values())


def wallet_as_of(
    ledger: Ledger,
    user_id: UUID | None = None,
    *,
    wallet_id: UUID | None = None,
    position: int,
) -> WalletAsOf:
    """Replay a wallet (the user's, or the one with ``wallet_id``) over the stream up to
    ``position``: its events at or before it, whatever their times."""
    if (user_id is None) == (wallet_id is None):
        raise ValueError("give exactly one of user_id or wallet_id")
    if wallet_id is None:
        assert user_id is not None
        wallet_id = ids.wallet_id(user_id)
    wallet: Any = None
    reached = 0
    for notification_id, event in _wallet_events(ledger, wallet_id, position):
        if notification_id > position:
            break
        wallet = event.mutate(wallet)
        reached = notification_id
    if wallet is None:
        raise NotFound("the wallet did not exist then")
    return WalletAsOf(reached, wallet)


def _wallet_events(ledger: Ledger, wallet_id: UUID, until: int) -> Iterator[tuple[int, Any]]:
    """The wallet's events in order, each with its stream position (none after ``until``)."""
    recorder: Any = ledger.recorder
    if hasattr(recorder, "datastore"):
        table = recorder.events_table_name
        schema = recorder.datastore.schema
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT originator_id, originator_version, topic, state, notification_id "
                f'FROM "{schema}"."{table}" WHERE originator_id = %s AND notification_id <= %s '
                f"ORDER BY originator_version",
                (wallet_id, min(until, LAST_POSITION)),
            )
            rows = curs.fetchall()
        for row in rows:
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            yield row["notification_id"], ledger.mapper.to_domain_event(stored)
        return
    # In memory: the notification log is the only place positions live.
    start = 1
    while True:
        batch = recorder.select_notifications(start, 1000)
        for n in batch:
            if n.originator_id == wallet_id:
                yield n.id, ledger.mapper.to_domain_event(n)
        if len(batch) < 1000:
            return
        start = batch[-1].id + 1
