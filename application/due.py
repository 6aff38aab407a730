"""When each open challenge next needs the settlement worker, read from the event stream.

A challenge is due at ``starts_at`` while it has fewer than two participants (it will be
cancelled), else at ``ends_at`` + the settlement delay (it will be settled). The index is a
heap keyed by that time, fed incrementally from the challenges' own events (drafted or
edited terms, published, joined, settled, cancelled), so a worker pass loads only the
challenges whose time has come: its cost follows what is due, not what is open.

It is a per-process cache of the stream, rebuilt from the start by a new process and never
read by another, so no read model (and no lagging projection) can delay a settlement.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.challenge import Challenge

TOPICS = (
    Challenge.Drafted.TOPIC,
    Challenge.Edited.TOPIC,
    Challenge.Published.TOPIC,
    Challenge.Joined.TOPIC,
    Challenge.Settled.TOPIC,
    Challenge.Cancelled.TOPIC,
)
# A challenge whose due time cannot be computed (a date written before the bounds existed,
# overflowing the calendar) is due at once: the worker then tries it, fails, counts the
# failure and tries again next pass, where an operator can see it.
AT_ONCE = datetime.min.replace(tzinfo=UTC)

Notifications = Callable[..., Iterator[Any]]


@dataclass
class _Open:
    starts_at: datetime
    ends_at: datetime
    participants: int = 0
    published: bool = False


class DueIndex:
    """Open challenges by next due time; not thread-safe (the ledger holds a lock)."""

    def __init__(self, delay: timedelta) -> None:
        self.delay = delay
        self.seen = 0
        self.challenges: dict[UUID, _Open] = {}
        self.heap: list[tuple[datetime, UUID]] = []

    def refresh(self, notifications: Notifications, decode: Callable[[Any], Any]) -> None:
        """Apply the challenge events recorded since the last refresh."""
        for notification in notifications(TOPICS, start=self.seen + 1):
            self._apply(notification.topic, notification.originator_id, notification, decode)
            self.seen = notification.id

    def pop_due(self, now: datetime) -> list[tuple[datetime, UUID]]:
        """Take every open challenge due at ``now``; each at most once."""
        taken: list[tuple[datetime, UUID]] = []
        chosen: set[UUID] = set()
        while self.heap and self.heap[0][0] <= now:
            when, challenge_id = heapq.heappop(self.heap)
            state = self.challenges.get(challenge_id)
            # Stale entries (closed, or moved by a join) are dropped; the current one stays.
            if state is None or not state.published or self._due(state) != when:
                continue
            if challenge_id not in chosen:
                chosen.add(challenge_id)
                taken.append((when, challenge_id))
        return taken

    def push_back(self, entries: Iterable[tuple[datetime, UUID]]) -> None:
        for entry in entries:
            heapq.heappush(self.heap, entry)

    def open_ids(self) -> list[UUID]:
        return [i for i, state in self.challenges.items() if state.published]

    def _apply(
        self, topic: str, challenge_id: UUID, notification: Any, decode: Callable[[Any], Any]
    ) -> None:
        if topic in (Challenge.Drafted.TOPIC, Challenge.Edited.TOPIC):
            terms = decode(notification).terms
            state = self.challenges.get(challenge_id)
            if state is None:
                self.challenges[challenge_id] = _Open(terms["starts_at"], terms["ends_at"])
            else:
                state.starts_at, state.ends_at = terms["starts_at"], terms["ends_at"]
            return
        if topic in (Challenge.Settled.TOPIC, Challenge.Cancelled.TOPIC):
            self.challenges.pop(challenge_id, None)
            return
        state = self.challenges.get(challenge_id)
        if state is None:
            return
        before = self._due(state) if state.published else None
        if topic == Challenge.Published.TOPIC:
            state.published = True
        elif topic == Challenge.Joined.TOPIC:
            state.participants += 1
        after = self._due(state) if state.published else None
        if after is not None and after != before:
            heapq.heappush(self.heap, (after, challenge_id))

    def _due(self, state: _Open) -> datetime:
        if state.participants < 2:
            return state.starts_at
        try:
            return state.ends_at + self.delay
        except OverflowError:
            return AT_ONCE
