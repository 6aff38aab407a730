"""Group commit's promises, with an events table in memory (rules §8: each command decides
alone and gets its own outcome, however its save was batched).

The first batch is held inside its insert (`tests.batching.HeldWriter`) so that the saves
under test queue up and are written together in the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from application.group_commit import GroupCommit, Save
from application.ports import BatchPart, BatchPartFailed
from tests.batching import HeldWriter, in_threads, joined


class Table:
    """An events table: unique (originator, version), positions in commit order, and
    whatever error the test wants the next insert to raise. A duplicate fails the insert and
    names the command it belongs to, as the ledger's recorder does."""

    def __init__(self) -> None:
        self.rows: dict[tuple[UUID | str, int], int] = {}
        self.fail_with: Exception | None = None

    def insert(self, stored: Sequence[StoredEvent], parts: Sequence[BatchPart]) -> list[int]:
        assert sum(p.count for p in parts) == len(stored)
        if self.fail_with is not None:
            raise self.fail_with
        owners = [index for index, part in enumerate(parts) for _ in range(part.count)]
        for s, owner in zip(stored, owners, strict=True):
            if (s.originator_id, s.originator_version) in self.rows:
                raise BatchPartFailed(owner, IntegrityError(f"{s.originator_id} exists"))
        ids = []
        for s in stored:
            ids.append(len(self.rows) + 1)
            self.rows[(s.originator_id, s.originator_version)] = ids[-1]
        return ids


def save(*events: tuple[UUID, int]) -> Save:
    return Save([StoredEvent(a, v, "test:Event", b"{}") for a, v in events], ())


@pytest.fixture
def table() -> Table:
    return Table()


@pytest.fixture(params=[1, 2], ids=["one writer", "two writers"])
def group(table: Table, request: pytest.FixtureRequest) -> GroupCommit:
    return GroupCommit(table.insert, max_writers=request.param)


def batched(group: GroupCommit, saves: list[Save]) -> tuple[HeldWriter, list[Any]]:
    """Write ``saves`` as one batch behind a held one; each save's (ids, error)."""
    held = HeldWriter(group)
    first = held.hold(lambda: group.submit(save((uuid4(), 1))))
    threads, outcomes = in_threads([lambda s=s: group.submit(s) for s in saves])
    held.wait_queued(len(saves))
    held.released.set()
    joined(first + threads)
    return held, outcomes


def test_saves_queued_behind_a_batch_share_the_next_one_each_with_its_own_positions(
    group: GroupCommit, table: Table
) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    saves = [save((a, 1), (a, 2)), save((b, 1)), save((c, 1), (c, 2), (c, 3))]
    held, outcomes = batched(group, saves)
    assert held.after == [3]
    assert [error for _, error in outcomes] == [None, None, None]
    assert [tuple(ids) for ids, _ in outcomes] == [
        (table.rows[(a, 1)], table.rows[(a, 2)]),
        (table.rows[(b, 1)],),
        (table.rows[(c, 1)], table.rows[(c, 2)], table.rows[(c, 3)]),
    ]


def test_the_later_of_two_saves_of_one_aggregate_in_a_batch_conflicts_and_writes_nothing(
    group: GroupCommit, table: Table
) -> None:
    wallet, other = uuid4(), uuid4()
    _, outcomes = batched(group, [save((wallet, 2)), save((wallet, 2), (other, 1))])
    (first, first_error), (second, second_error) = outcomes
    assert first_error is None and len(first) == 1
    assert isinstance(second_error, IntegrityError) and second is None
    assert (other, 1) not in table.rows  # nothing of the conflicting command was written


def test_a_save_decided_on_a_version_this_writer_already_committed_conflicts_before_writing(
    group: GroupCommit, table: Table
) -> None:
    wallet = uuid4()
    group.submit(save((wallet, 1), (wallet, 2)))
    with pytest.raises(IntegrityError):
        group.submit(save((wallet, 2)))
    assert len(table.rows) == 2


def test_a_conflict_with_another_writer_fails_only_the_command_it_names(
    group: GroupCommit, table: Table
) -> None:
    wallet, other = uuid4(), uuid4()
    table.rows[(wallet, 3)] = 99  # written by another process meanwhile
    held, outcomes = batched(group, [save((other, 1)), save((wallet, 3)), save((uuid4(), 1))])
    errors = [error for _, error in outcomes]
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], IntegrityError)
    assert held.after == [3, 2]  # the batch, then the same without the conflicting one
    assert (other, 1) in table.rows


def test_a_conflict_the_error_does_not_name_is_found_by_writing_one_command_at_a_time(
    group: GroupCommit, table: Table
) -> None:
    a, b = uuid4(), uuid4()
    real_insert = table.insert

    def insert(stored: Sequence[StoredEvent], parts: Sequence[BatchPart]) -> list[int]:
        if any(s.originator_id == b for s in stored):
            raise IntegrityError("conflict")  # a driver that names no row
        return real_insert(stored, parts)

    group._insert = insert
    held, outcomes = batched(group, [save((a, 1)), save((b, 1))])
    assert [type(error) for _, error in outcomes] == [type(None), IntegrityError]
    assert held.after == [2, 1, 1]
    assert (a, 1) in table.rows and (b, 1) not in table.rows


def test_a_command_whose_own_part_fails_fails_alone_and_the_rest_are_written(
    group: GroupCommit, table: Table
) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    real_insert = table.insert
    cause = ValueError("this command's response could not be built")

    def insert(stored: Sequence[StoredEvent], parts: Sequence[BatchPart]) -> list[int]:
        starts = [sum(p.count for p in parts[:i]) for i in range(len(parts))]
        for index, start in enumerate(starts):
            if stored[start].originator_id == b:
                raise BatchPartFailed(index, cause)
        return real_insert(stored, parts)

    group._insert = insert
    _, outcomes = batched(group, [save((a, 1)), save((b, 1)), save((c, 1))])
    assert [error for _, error in outcomes] == [None, cause, None]
    assert (a, 1) in table.rows and (c, 1) in table.rows and (b, 1) not in table.rows


def test_an_error_while_the_batch_is_written_fails_every_command_and_acknowledges_none(
    group: GroupCommit, table: Table
) -> None:
    saves = [save((uuid4(), 1)), save((uuid4(), 1)), save((uuid4(), 1))]
    lost = ConnectionError("the server closed the connection")
    held = HeldWriter(group)
    first = held.hold(lambda: group.submit(save((uuid4(), 1))))
    threads, outcomes = in_threads([lambda s=s: group.submit(s) for s in saves])
    held.wait_queued(len(saves))
    table.fail_with = lost
    held.released.set()
    joined(first + threads)
    assert [error for _, error in outcomes] == [lost, lost, lost]
    assert all(ids is None for ids, _ in outcomes)
    assert all(s.notification_ids == () for s in saves)


def test_a_save_of_what_a_batch_being_written_changes_fails_once_that_batch_is_over(
    table: Table,
) -> None:
    group = GroupCommit(table.insert, max_writers=2)
    wallet = uuid4()
    held = HeldWriter(group)
    held.holding = 1  # only the first writer is held; the second screens what comes next
    first = held.hold(lambda: group.submit(save((wallet, 1))))
    late = save((wallet, 1))  # decided on the state the held batch is changing
    threads, outcomes = in_threads([lambda: group.submit(late)])
    deadline = 300
    while group.queued() and deadline:  # bounded: until the second writer has screened it
        deadline -= 1
        held.entered.acquire(timeout=0.01)
    assert group.queued() == 0
    assert not late.done  # not before the batch it conflicts with is over
    held.released.set()
    joined(first + threads)
    ((ids, error),) = outcomes
    assert ids is None and isinstance(error, IntegrityError)
    assert held.batches == [1]  # never written
