"""``peerpush audit export``: decoded events (or the journal), streamed; re-importing the
JSON lines into a fresh store reproduces the read models."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict

from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from projections.audit.stream import snapshot
from projections.position_times import position_at
from tests.audit.support import (
    Audited,
    bulk,
    cli,
    connect,
    open_audited,
    read_models,
    reimport,
    scenario,
)
from tests.audit.support import verify_json as verify


def stored_rows(db: DatabaseSettings) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM ledger_events "
            "ORDER BY notification_id"
        ).fetchall()


def test_reimporting_the_jsonl_export_into_a_fresh_store_reproduces_the_read_models(
    audited: Audited, database_url, tmp_path, capsys, monkeypatch
):
    scenario(audited)
    bulk(audited, 40)
    audited.projector.catch_up()
    exported = tmp_path / "events.jsonl"
    code, _ = cli(audited.db, capsys, monkeypatch, "export", "--output", str(exported))
    assert code == 0
    lines = exported.read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"position", "originator_id", "version", "topic", "timestamp", "fields"}
    assert first["topic"] == "peerpush:Wallet.Opened" and "user_id" in first["fields"]

    fresh = DatabaseSettings.from_url(database_url, schema=f"t_{uuid.uuid4().hex[:12]}")
    ensure_schema(database_url, fresh.schema)
    again = open_audited(fresh)
    try:
        assert reimport(again.ledger, lines) == len(lines)
        again.projector.catch_up()
        assert read_models(fresh) == read_models(audited.db)
        # The export is lossless: every event re-encodes to the very bytes first stored.
        assert stored_rows(fresh) == stored_rows(audited.db)
        code, report = verify(fresh, capsys, monkeypatch)
        assert code == 0, report["findings"]
    finally:
        again.close()
        drop_schema(database_url, fresh.schema)


def test_an_export_can_start_after_a_position_and_stop_at_a_time(audited, capsys, monkeypatch):
    scenario(audited)
    audited.projector.catch_up()
    with connect(audited.db) as conn:
        times = conn.execute(
            "SELECT notification_id, (convert_from(state, 'UTF8')::jsonb "
            "#>> '{timestamp,_data_}')::timestamptz FROM ledger_events ORDER BY 1"
        ).fetchall()
    until = times[len(times) // 2][1]
    with snapshot(audited.db) as conn:
        last = position_at(conn, until)
    assert last == max(p for p, at in times if at <= until)
    code, out = cli(
        audited.db,
        capsys,
        monkeypatch,
        "export",
        "--format",
        "csv",
        "--after",
        "10",
        "--until",
        until.isoformat(),
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["position"]) for r in rows] == [p for p, _ in times if 10 < p <= last]
    assert all(json.loads(r["fields"])["actor"] for r in rows)


def test_the_journal_export_has_one_balanced_entry_per_money_event(audited, capsys, monkeypatch):
    scenario(audited)
    audited.projector.catch_up()
    code, out = cli(audited.db, capsys, monkeypatch, "export", "--what", "journal")
    assert code == 0
    entries: defaultdict[int, int] = defaultdict(int)
    for line in out.splitlines():
        record = json.loads(line)
        entries[record["position"]] += record["amount"] or 0  # an entry may move nothing
    assert entries and all(total == 0 for total in entries.values())
    with connect(audited.db) as conn:
        stored = conn.execute("SELECT count(*) FROM journal_entries").fetchone()[0]
    assert len(entries) == stored
