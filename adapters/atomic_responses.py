"""An ``Idempotency-Key``'s response, stored in the same transaction as the command's events.

Rules §7 ask for the stored response to be written with the command's effect: if the process
dies after the events commit but before it answers, the retry must find the response and replay
it, and if storing the response fails, the events must not be committed either.

The idempotent operation (``application.idempotency``) puts a `PendingResponse` in a context
variable around the command (`responding`); the ledger's save reaches
`ResponseStoringRecorder.insert_events`, which, once the events are inserted and their
positions known, asks the pending response for its status and body (from the last position
and the aggregates the save changed, passed down by the ledger as ``saved_aggregates``) and
stores them on the events' own cursor. Only a save that commits
counts: a save rolled back by a version conflict (and retried by the ledger) leaves nothing.

Without a pending response (no key, workers, the command line) the events go in as a batch's
do, in one query (`_insert_in_one_trip`), not through the library's pipeline: psycopg's
pipeline mode (3.3.9) never finishes sending a statement of more than about 10 MB, so a save
that large hung for good while holding the events table's lock, stopping every writer
(found by ``make bench``'s 200,000-event stream; `tests/integration/test_large_save.py`).

Group commit (`application.group_commit`) writes several commands' events in one transaction
and says which events are whose with the keyword ``batch`` (`application.ports.BatchPart`):
each command's pending response is then read from that command's own context, built from its
own last position and aggregates, and stored in the batch's transaction; a response that
cannot be built fails that command alone (`BatchPartFailed`, the transaction rolled back).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Connection, Cursor, sql
from psycopg.pq import Escaping, TransactionStatus
from psycopg.rows import DictRow

from adapters.idempotency_keys import store_response
from application.idempotency import PendingResponse, pending_response
from application.ports import BatchPart, BatchPartFailed

# The ``eventsourcing`` environment key that selects this recorder (set by the composition root).
RECORDER_TOPIC = "adapters.atomic_responses:ResponseStoringRecorder"
# A unique violation on the events' key names the row: "(originator_id, originator_version)=
# (<id>, <version>)".
_DUPLICATE = re.compile(r"=\(([0-9a-fA-F-]{36}), (\d+)\)")


class _Abort(BaseException):
    """Raised on the events' cursor to roll their transaction back.

    The library catches ``Exception`` around the insert and then leaves its transaction block
    normally (a failed SQL statement has already doomed the transaction, so that commits
    nothing); an error of ours in Python would not have, so it travels as a BaseException
    through that block, which rolls back, and is unwrapped in `insert_events`.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


class ResponseStoringRecorder(PostgresApplicationRecorder):
    """The library's application recorder, storing a pending idempotent response in the
    events' transaction (see the module's docstring)."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if kwargs.get("batch") is not None:
            return self._insert_batch(stored_events, **kwargs)
        pending = pending_response()
        if pending is None:
            if not stored_events:  # nothing to insert: as the library answers that
                nothing: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
                return nothing
            positions: Sequence[int] = self._insert_in_one_trip(stored_events)
            return positions
        pending._candidate = None
        try:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        except _Abort as abort:
            raise abort.cause from None
        if pending._candidate is not None:
            pending.written, pending._candidate = pending._candidate, None
        return ids

    def _insert_batch(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        parts: Sequence[BatchPart] = kwargs["batch"]
        try:
            return self._insert_parts(stored_events, parts, **kwargs)
        except IntegrityError as error:
            index = _conflicting_part(error, stored_events, parts)
            if index is None:
                raise
            raise BatchPartFailed(index, error) from error

    def _insert_parts(
        self, stored_events: Sequence[StoredEvent], parts: Sequence[BatchPart], **kwargs: Any
    ) -> Sequence[int] | None:
        if not any(part.context.run(pending_response) for part in parts):
            positions: Sequence[int] = self._insert_in_one_trip(stored_events)
            return positions
        # The responses stored by the transaction, counted as written once it has committed.
        stored: list[tuple[PendingResponse, tuple[int, Any]]] = []
        try:
            ids: Sequence[int] | None = super().insert_events(
                stored_events, stored_responses=stored, **kwargs
            )
        except _Abort as abort:
            raise abort.cause from None
        for pending, response in stored:
            pending.written = response
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_in_one_trip(self, stored_events: Sequence[StoredEvent]) -> Sequence[int]:
        """The library's transaction (lock timeout, table lock, NOTIFY, INSERT, COMMIT) in one
        round trip, as one query of six statements. The library syncs after the INSERT, to
        learn of a version conflict before committing; here the conflict fails the INSERT,
        the statements after it (the COMMIT) are never run and the transaction is rolled back,
        all the same. What it saves is a round trip made while holding the events table's
        lock, which every process's writes wait for. A batch storing idempotent responses
        still takes two: a response needs its positions.

        The rows are written into the query as literals (ids and topics escaped by libpq,
        states as hex digits) rather than sent as parameters: a query with parameters is one
        statement, so the six would need psycopg's pipeline, and that machinery (a Python
        generator per statement, each parameter encoded on its own) cost the writer about
        four times the CPU of this query, most of it while the table lock was held.
        """
        with self.datastore.get_connection() as conn:
            literal = Escaping(conn.pgconn).escape_literal
            rows = b",".join(
                b"(%b,%d,%b,decode('%b','hex'))"
                % (
                    literal(str(e.originator_id).encode()),
                    e.originator_version,
                    literal(e.topic.encode()),
                    e.state.hex().encode(),
                )
                for e in stored_events
            )
            head = self._batch_head or self._compose_batch_head(conn)
            cursor = conn.cursor()
            try:
                cursor.execute(head + rows + b" RETURNING notification_id;COMMIT")
            except BaseException:
                if conn.info.transaction_status == TransactionStatus.INERROR:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            while not (cursor.statusmessage or "").startswith("INSERT"):
                if not cursor.nextset():
                    raise AssertionError("the batch's query returned no INSERT")
            return [int(row["notification_id"]) for row in cursor.fetchall()]

    _batch_head: bytes = b""

    def _compose_batch_head(self, conn: Connection[DictRow]) -> bytes:
        """The batch query's statements up to its rows: composed once (quoting names needs a
        connection)."""
        table = sql.SQL("{}.{}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name)
        )
        self._batch_head = (
            sql.SQL(
                "BEGIN;SET LOCAL lock_timeout = '{}s';LOCK TABLE {} IN EXCLUSIVE MODE;NOTIFY {};"
                "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES "
            )
            .format(
                sql.Literal(int(self.datastore.lock_timeout)),
                table,
                sql.Identifier(self.channel_name),
                table,
            )
            .as_bytes(conn)
        )
        return self._batch_head

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids: Sequence[int] | None = super()._fetch_ids_after_insert_events(
            curs, stored_events, **kwargs
        )
        parts: Sequence[BatchPart] | None = kwargs.get("batch")
        if parts is not None:
            if ids:
                self._store_batch_responses(curs, ids, parts, kwargs["stored_responses"])
            return ids
        pending = pending_response()
        if pending is None or not ids:
            return ids
        try:
            saved = kwargs.get("saved_aggregates", ())
            response = pending.respond(pending.operation_id, ids[-1], saved)
            if response is not None and store_response(
                curs, self.datastore.schema, pending.claim, *response
            ):
                pending._candidate = response
        except Exception as e:
            raise _Abort(e) from e
        return ids

    def _store_batch_responses(
        self,
        curs: Cursor[DictRow],
        ids: Sequence[int],
        parts: Sequence[BatchPart],
        stored: list[tuple[PendingResponse, tuple[int, Any]]],
    ) -> None:
        stored.clear()  # a transaction retried after a lost connection starts afresh
        end = 0
        for index, part in enumerate(parts):
            end += part.count
            pending = part.context.run(pending_response)
            if pending is None:
                continue
            try:
                response = pending.respond(pending.operation_id, ids[end - 1], part.saved)
                if response is not None and store_response(
                    curs, self.datastore.schema, pending.claim, *response
                ):
                    stored.append((pending, response))
            except Exception as e:
                raise _Abort(BatchPartFailed(index, e)) from e


def _conflicting_part(
    error: IntegrityError, stored_events: Sequence[StoredEvent], parts: Sequence[BatchPart]
) -> int | None:
    """The part of a batch holding the event a unique violation names, if it names one."""
    found = _DUPLICATE.search(str(error))
    if found is None:
        return None
    named = (found.group(1).lower(), int(found.group(2)))
    end = 0
    for index, part in enumerate(parts):
        start, end = end, end + part.count
        for e in stored_events[start:end]:
            if (str(e.originator_id), e.originator_version) == named:
                return index
    return None
