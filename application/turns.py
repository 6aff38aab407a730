"""Commands of one process take turns on an aggregate instead of racing for its next version.

Racing is correct too (each version is taken once), but on a busy aggregate the losers of each
round all run again. A turn is a hint, never what keeps the money right: one not given within
``WAIT_SECONDS`` is not waited for (the command then races), so two commands taking two
aggregates in opposite orders cannot block each other (decision 112).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

# Aggregates share this many locks (two aggregates on one lock only take turns needlessly).
STRIPES = 1024
WAIT_SECONDS = 2.0


class Turns:
    """One process's turns on its aggregates."""

    def __init__(self, stripes: int = STRIPES, wait_seconds: float = WAIT_SECONDS) -> None:
        self._locks = tuple(threading.RLock() for _ in range(stripes))
        self._wait = wait_seconds

    def take(self, aggregate_id: Hashable, held: list[threading.RLock]) -> bool:
        """Wait for the aggregate's turn (at most ``wait_seconds``); what was taken is added
        to ``held``, for `give_back`. Whether the turn is held now."""
        lock = self._locks[hash(aggregate_id) % len(self._locks)]
        if any(lock is taken for taken in held):
            return True
        if lock.acquire(timeout=self._wait):
            held.append(lock)
            return True
        return False

    @staticmethod
    def give_back(held: list[threading.RLock]) -> None:
        while held:
            held.pop().release()
