"""Making group commit form a batch on purpose: the first batch is held inside its insert
while the saves meant to share the next one queue up behind it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from application.group_commit import GroupCommit
from application.ports import BatchPart

WAIT_SECONDS = 30.0


class HeldWriter:
    """Wraps a `GroupCommit`'s insert: the first inserts, one per writer the group may run at
    once, wait for `released`; every insert's number of commands is recorded in `batches`.
    Saves submitted while they are held queue up and are written together next."""

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.holding = group._max_writers
        self.entered = threading.Semaphore(0)
        self.released = threading.Event()
        self.batches: list[int] = []
        self._lock = threading.Lock()
        real = group._insert

        def insert(stored: Sequence[StoredEvent], parts: Sequence[BatchPart]) -> Any:
            with self._lock:
                self.batches.append(len(parts))
                held = len(self.batches) <= self.holding
            if held:
                self.entered.release()
                assert self.released.wait(WAIT_SECONDS), "the held batch was never released"
            return real(stored, parts)

        group._insert = insert

    def hold(self, bystander: Callable[[], Any]) -> list[threading.Thread]:
        """Run ``bystander`` once per writer, until every writer is held inside its insert."""
        threads, _ = in_threads([bystander for _ in range(self.holding)])
        for _ in range(self.holding):
            assert self.entered.acquire(timeout=WAIT_SECONDS), "a bystander never wrote"
        return threads

    @property
    def after(self) -> list[int]:
        """The batches written after the held ones (their number of commands)."""
        return self.batches[self.holding :]

    def wait_queued(self, n: int) -> None:
        """Until ``n`` saves wait behind the held batch (bounded)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while self.group.queued() < n:
            assert time.monotonic() < deadline, f"{self.group.queued()} of {n} saves queued"
            time.sleep(0.005)


def in_threads(calls: list[Callable[[], Any]]) -> tuple[list[threading.Thread], list[Any]]:
    """Start every call in its own thread; each slot of the list gets (result, error)."""
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            outcomes[i] = (call(), None)
        except BaseException as e:  # judged by the test
            outcomes[i] = (None, e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    assert not any(t.is_alive() for t in threads), "a command never finished"
