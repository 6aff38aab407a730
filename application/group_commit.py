"""Group commit: concurrent commands' saves written in one transaction.

Every save into the events table takes the table's write lock for its whole transaction (so
positions follow commit order and a reader never skips an event), which serialises writers:
one save per commit, whatever the number of threads. Here the saves queued while one
transaction is being written go together into the next one (leader/follower: the first
waiting caller writes the batch, the others wait for their outcome), so a commit carries as
many commands as arrived meanwhile, and no one waits for a timer.

Each command still decided alone, on committed state, and gets its own outcome:

- its own positions (`Save.notification_ids`), once the batch has committed;
- two commands of one batch that change the same aggregate both decided on the same
  version: the later one is failed with an ``IntegrityError`` before anything is written, and
  re-run on fresh state by the ledger's retry once the batch has committed;
- a command that decided on a version this process has since committed past (it loaded its
  aggregate before an earlier batch committed) is failed the same way, before writing: the
  writer remembers the last version it committed of each aggregate (`MAX_TRACKED` of them);
- a conflict the writer cannot see (another process's write) fails the whole insert; the
  command the recorder names (`BatchPartFailed`) is failed and the rest written again (if
  none is named, one command per transaction), so only the command(s) that conflicted fail;
- so does a command whose stored response could not be built (`BatchPartFailed`);
- any other error (the database gone, a crash while writing) fails every command of the
  batch: none was committed, none is acknowledged.

The leader marks outcomes only after the insert returned; the aggregate cache is never
written here, so it cannot hold what did not commit.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from application.ports import BatchPart, BatchPartFailed

# The largest batch one transaction carries; more queued saves wait for the next.
MAX_BATCH = 256
# Batches written at once, each by its own leader on its own connection: the table lock
# still commits them one after the other, but the next one's statements reach the server
# while the previous one's COMMIT is being flushed.
MAX_WRITERS = 2
# How many aggregates' last committed versions the writer remembers (then it starts afresh:
# the memory only spares the database conflicts it would report anyway).
MAX_TRACKED = 100_000

# (every stored event of the batch, one part per command) -> the notification ids, in order.
Insert = Callable[[Sequence[StoredEvent], Sequence[BatchPart]], Sequence[int] | None]


@dataclass(eq=False)
class Save:
    """One command's events, waiting to be written with others."""

    stored: Sequence[StoredEvent]
    saved: Sequence[object]
    # The caller's context: what the recorder needs to know about the request it came from
    # (e.g. the idempotent response to store with these events).
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    notification_ids: Sequence[int] = ()
    error: BaseException | None = None
    done: bool = False
    # Its caller's own condition (on the group's lock): woken alone, not with every caller.
    changed: threading.Condition | None = field(default=None, repr=False)

    @property
    def originators(self) -> set[UUID | str]:
        return {s.originator_id for s in self.stored}

    def part(self) -> BatchPart:
        return BatchPart(len(self.stored), self.context, self.saved)

    def result(self) -> Sequence[int]:
        if self.error is not None:
            raise self.error
        return self.notification_ids


@dataclass(eq=False)
class _Flight:
    """A batch being written: its saves, the aggregates they change, and the saves failed
    as soon as it is over (they decided on what it is changing)."""

    accepted: list[Save] = field(default_factory=list)
    touched: set[UUID | str] = field(default_factory=set)
    conflicted: list[Save] = field(default_factory=list)


class GroupCommit:
    """Writes queued saves together; `submit` returns once the caller's save committed."""

    def __init__(
        self, insert: Insert, max_batch: int = MAX_BATCH, max_writers: int = MAX_WRITERS
    ) -> None:
        self._insert = insert
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._changed = threading.Lock()
        self._queue: list[Save] = []
        self._writers = 0
        # The batches being written.
        self._in_flight: list[_Flight] = []
        # Aggregate id -> the last version this process committed.
        self._committed: dict[UUID | str, int] = {}
        # How many transactions and commands were written (read by benchmarks and tests).
        self.batches = 0
        self.commands = 0

    def queued(self) -> int:
        """How many saves wait for the next batch."""
        with self._changed:
            return len(self._queue)

    def submit(self, save: Save) -> Sequence[int]:
        """Write ``save`` with whatever else is queued; its notification ids, or its error."""
        save.changed = changed = threading.Condition(self._changed)
        with self._changed:
            self._queue.append(save)
        while True:
            with self._changed:
                while not save.done and not (self._queue and self._writers < self._max_writers):
                    changed.wait()
                if save.done:
                    return save.result()
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                flight = self._screen(batch)
                self._writers += 1
                if self._queue and self._writers < self._max_writers:  # more than a batch queued
                    _wake(self._queue[0])
            try:
                self._write_together(flight.accepted)
            finally:
                interrupted = RuntimeError("the batch writing this save was interrupted")
                with self._changed:
                    for accepted in flight.accepted:
                        if not accepted.done:
                            accepted.error, accepted.done = interrupted, True
                    # Failed only now that the batch they conflict with is over, so their
                    # re-run reads what it committed.
                    for conflicted in flight.conflicted:
                        conflicted.error = IntegrityError("changed since this command read it")
                        conflicted.done = True
                    self._in_flight.remove(flight)
                    self._writers -= 1
                    # Woken: the callers of the saves now done, and the first queued (to write
                    # the next batch).
                    for done in (*flight.accepted, *flight.conflicted, *self._queue[:1]):
                        _wake(done)

    def _screen(self, batch: list[Save]) -> _Flight:
        """Split ``batch`` into the saves that may be written and those that conflict: with an
        earlier save of the batch or a batch being written (they are failed when that batch is
        over), or because this writer has already committed past their version. Called under
        the lock; the new flight is registered."""
        flight = _Flight()
        for save in batch:
            originators = save.originators
            if originators & flight.touched or self._is_stale(save):
                flight.conflicted.append(save)
                continue
            other = next((f for f in self._in_flight if originators & f.touched), None)
            if other is not None:
                other.conflicted.append(save)
                continue
            flight.touched |= originators
            flight.accepted.append(save)
        self._in_flight.append(flight)
        return flight

    def _is_stale(self, save: Save) -> bool:
        committed = self._committed
        return any(s.originator_version <= committed.get(s.originator_id, 0) for s in save.stored)

    def _write_together(self, saves: list[Save]) -> None:
        if not saves:
            return
        try:
            ids = self._insert(
                [s for save in saves for s in save.stored], [s.part() for s in saves]
            )
        except BatchPartFailed as failed:
            saves[failed.index].error, saves[failed.index].done = failed.cause, True
            self._write_together([s for i, s in enumerate(saves) if i != failed.index])
            return
        except IntegrityError as error:  # no part named: one save per transaction finds it
            if len(saves) == 1:
                saves[0].error, saves[0].done = error, True
            else:
                for save in saves:
                    self._write_together([save])
            return
        except Exception as error:
            for save in saves:
                save.error, save.done = error, True
            return
        self._deliver(saves, ids or ())

    def _deliver(self, saves: list[Save], ids: Sequence[int]) -> None:
        expected = sum(len(save.stored) for save in saves)
        if len(ids) != expected:
            # A recorder that does not return positions (the ledger's never do): nothing to split.
            error = RuntimeError(
                f"the recorder returned {len(ids)} positions for {expected} events"
            )
            for save in saves:
                save.error, save.done = error, True
            return
        start = 0
        with self._changed:
            self.batches += 1
            self.commands += len(saves)
            if len(self._committed) > MAX_TRACKED:
                self._committed.clear()
            delivered: set[UUID | str] = set()
            for save in saves:
                delivered |= save.originators
                for s in save.stored:
                    self._committed[s.originator_id] = s.originator_version
            # Committed: a save deciding on these versions from now on is not in conflict
            # with the batch still finishing (only one batch ever changes an aggregate).
            for flight in self._in_flight:
                flight.touched -= delivered
        for save in saves:
            end = start + len(save.stored)
            save.notification_ids, save.done = tuple(ids[start:end]), True
            start = end


def _wake(save: Save) -> None:
    assert save.changed is not None  # set by `submit`
    save.changed.notify()
