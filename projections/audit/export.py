"""``audit export``: the decoded events, or the journal, streamed as JSON lines or CSV.

Events: one record per stored event — ``position``, ``originator_id``, ``version``,
``topic``, ``timestamp`` and ``fields`` (every other field of the event, UUIDs as canonical
strings, times in ISO 8601, tuples as arrays; docs/events.md says what each means). Journal:
one record per posting — the entry's position, event type, originator, actor, request id and
time, with the posting's account and amount (both empty for an entry that moved nothing).
Events carry no personal data (decisions 16), so an export can be handed over as it is.
Memory stays constant: rows are read through a server-side cursor and written as they come.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

from eventsourcing.persistence import Notification

from adapters.persistence import DatabaseSettings
from projections.audit.stream import batches, has_table, snapshot, stream_rows
from projections.position_times import position_at

EVENT_COLUMNS = ("position", "originator_id", "version", "topic", "timestamp", "fields")
JOURNAL_COLUMNS = (
    "position",
    "event_type",
    "originator_id",
    "actor",
    "request_id",
    "event_time",
    "account",
    "amount",
)
SKIPPED = frozenset({"originator_id", "originator_version", "timestamp"})


def plain(value: Any) -> Any:
    """A field value as plain JSON: UUIDs and times as strings, tuples as lists."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def event_record(n: Notification, event: Any) -> dict[str, Any]:
    fields = {k: plain(v) for k, v in vars(event).items() if k not in SKIPPED}
    return {
        "position": n.id,
        "originator_id": str(n.originator_id),
        "version": n.originator_version,
        "topic": n.topic,
        "timestamp": event.timestamp.isoformat(),
        "fields": fields,
    }


def events(
    conn: Any, decode: Callable[[Notification], Any], after: int, until: int | None
) -> Iterator[dict[str, Any]]:
    for batch in batches(conn, after=after, until=until):
        for n in batch:
            yield event_record(n, decode(n))


def journal(conn: Any, after: int, until: int | None) -> Iterator[dict[str, Any]]:
    query = (
        "SELECT e.position, e.event_type, e.originator_id, e.actor, e.request_id, "
        "e.event_time, p.account, p.amount FROM journal_entries e "
        "LEFT JOIN journal_postings p ON p.position = e.position WHERE e.position > %s"
    )
    params: list[Any] = [after]
    if until is not None:
        query += " AND e.position <= %s"
        params.append(until)
    for row in stream_rows(conn, query + " ORDER BY e.position, p.account", params):
        yield {name: plain(value) for name, value in zip(JOURNAL_COLUMNS, row, strict=True)}


def export(
    db: DatabaseSettings,
    decode: Callable[[Notification], Any],
    out: TextIO,
    *,
    what: str = "events",
    fmt: str = "jsonl",
    after: int = 0,
    until: datetime | None = None,
) -> int:
    """Write the records to ``out``; returns how many. ``until``: the stream up to the last
    position whose event time is at most that time (rules §8), found through the
    ``position_times`` index like every "as of a time" (:class:`IndexBehind` if it lags)."""
    with snapshot(db) as conn:
        last = position_at(conn, until) if until is not None else None
        columns: tuple[str, ...]
        if what == "journal":
            if not has_table(conn, "journal_entries"):
                raise ValueError("this schema has no journal read model")
            records, columns = journal(conn, after, last), JOURNAL_COLUMNS
        elif what == "events":
            records, columns = events(conn, decode, after, last), EVENT_COLUMNS
        else:
            raise ValueError(f"unknown export {what!r}")
        return write(records, columns, fmt, out)


def write(
    records: Iterator[dict[str, Any]], columns: tuple[str, ...], fmt: str, out: TextIO
) -> int:
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow(
                json.dumps(v, ensure_ascii=False, separators=(",", ":"))
                if isinstance(v, dict | list)
                else v
                for v in (record[c] for c in columns)
            )
            count += 1
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return count
