"""``peerpush audit verify``: a clean stream passes; every kind of tampering is found and
located (rules §8)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from projections.audit.stream import Progress
from tests.audit.support import Audited, bulk, cli, connect, head, scenario, skip_positions
from tests.audit.support import verify_json as verify

DEPOSIT = "peerpush:Wallet.DepositCredited"


@pytest.fixture
def stream(audited: Audited) -> Audited:
    """About 3,300 events: every kind of money event, bulk wallets, a gap of 5 positions."""
    scenario(audited)
    bulk(audited, 220)
    skip_positions(audited.db, 5)
    bulk(audited, 250, tag="b")
    audited.projector.catch_up()
    assert head(audited.db) > 3_000
    return audited


def event_in(a: Audited, topic: str, lo: int, hi: int) -> tuple[int, Any, bytes]:
    with connect(a.db) as conn:
        row = conn.execute(
            "SELECT notification_id, originator_id, state FROM ledger_events "
            "WHERE topic = %s AND notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT 1",
            (topic, lo, hi),
        ).fetchone()
    assert row is not None
    return row[0], row[1], bytes(row[2])


def findings(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind]


def test_a_clean_stream_with_gaps_verifies_and_exits_0(stream, capsys, monkeypatch):
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 0, report["findings"]
    assert report["clean"] and report["findings"] == []
    assert report["events"] == head(stream.db) - 5
    assert report["positions"]["gaps"] == 5
    assert report["chain"]["head"] == report["chain"]["stored_head"]
    assert report["chain"]["checkpoints_compared"] == 3
    assert sum(report["accounts"].values()) == 0
    assert report["totals"]["credited"] == report["totals"]["accounted"]
    assert set(report["read_models_compared_at"]) == {"wallets", "challenges", "revenue", "journal"}
    assert report["challenges"] == {"cancelled": 1, "settled": 1}


def test_the_human_summary_prints_totals_the_chain_head_and_no_findings(
    stream, capsys, monkeypatch
):
    code, out = cli(stream.db, capsys, monkeypatch, "verify")
    assert code == 0
    assert "findings      none" in out
    assert re.search(r"chain head    \d+:[0-9a-f]{64}", out)
    assert "platform:revenue" in out and "user:available" in out
    assert "\r" not in capsys.readouterr().err  # no progress bar when not on a terminal


def test_an_edited_amount_in_a_stored_event_is_located_to_its_checkpoint_interval(
    stream, capsys, monkeypatch
):
    position, wallet_id, state = event_in(stream, DEPOSIT, 1_000, 2_000)
    edited = re.sub(
        rb'"tokens":(\d+)', lambda m: b'"tokens":' + str(int(m[1]) + 10).encode(), state, count=1
    )
    with connect(stream.db) as conn:
        conn.execute(
            "UPDATE ledger_events SET state = %s WHERE notification_id = %s", (edited, position)
        )
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [chain] = findings(report, "chain")
    assert chain["interval"] == [1_000, 2_000]
    assert "in checkpoint interval (1000, 2000]" in chain["message"]
    rows = [f["row"] for f in findings(report, "read_model")]
    assert f"wallet_balances {wallet_id}" in rows


def test_a_deleted_event_is_located_with_the_gap_it_left(stream, capsys, monkeypatch):
    position, _, _ = event_in(stream, "peerpush:Wallet.AdjustmentDebited", 2_000, 3_000)
    with connect(stream.db) as conn:
        conn.execute("DELETE FROM ledger_events WHERE notification_id = %s", (position,))
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [chain] = findings(report, "chain")
    assert chain["interval"] == [2_000, 3_000]
    assert str(position) in chain["message"] and "1 event(s) fewer" in chain["message"]
    # The wallet's next event no longer follows its version: the replay names it.
    assert any(f.get("position", 0) > position for f in findings(report, "event"))


def test_reordered_rows_are_located_even_when_every_balance_still_adds_up(
    stream, capsys, monkeypatch
):
    # A wallet's last event and the next wallet's first: each wallet's own order survives.
    second, wallet_b, _ = event_in(stream, "peerpush:Wallet.Opened", 2_001, 3_000)
    first, wallet_a, _ = event_in(stream, "peerpush:Wallet.WithdrawalSettled", second - 2, second)
    assert first == second - 1 and wallet_a != wallet_b
    with connect(stream.db) as conn:
        swap = "UPDATE ledger_events SET notification_id = %s WHERE notification_id = %s"
        conn.execute(swap, (-1, first))
        conn.execute(swap, (first, second))
        conn.execute(swap, (second, -1))
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [chain] = findings(report, "chain")
    assert chain["interval"] == [2_000, 3_000] and "no gaps" in chain["message"]
    assert [f["kind"] for f in report["findings"]] == ["chain"]


def test_an_edited_read_model_row_is_named(stream, capsys, monkeypatch):
    with connect(stream.db) as conn:
        wallet_id = conn.execute(
            "UPDATE wallet_balances SET available = available + 7 "
            "WHERE wallet_id = (SELECT min(wallet_id::text)::uuid FROM wallet_balances) "
            "RETURNING wallet_id"
        ).fetchone()[0]
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "read_model")
    assert row["row"] == f"wallet_balances {wallet_id}"
    assert re.search(r"available stored (\d+), stream (\d+)", row["message"])
    assert findings(report, "chain") == []


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        ("UPDATE wallet_transactions SET amount = amount + 3 WHERE position = %s", "amount stored"),
        (
            "UPDATE wallet_transactions SET available_after = available_after - 1 "
            "WHERE position = %s",
            "available_after stored",
        ),
        ("DELETE FROM wallet_transactions WHERE position = %s", "missing"),
        (
            "UPDATE wallet_transactions t SET wallet_id = (SELECT min(b.wallet_id::text)::uuid "
            "FROM wallet_balances b WHERE b.wallet_id <> t.wallet_id) WHERE position = %s",
            "wallet_id stored",
        ),
    ],
    ids=["amount", "available_after", "deleted", "other_wallet"],
)
def test_a_tampered_wallet_transaction_row_is_named_by_its_position(
    stream, capsys, monkeypatch, tamper, says
):
    # A withdrawal in the middle of a wallet's history: later rows of it are left as they were.
    position, wallet_id, _ = event_in(stream, "peerpush:Wallet.WithdrawalRequested", 1_000, 2_000)
    with connect(stream.db) as conn:
        assert conn.execute(tamper, (position,)).rowcount == 1
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "read_model")
    assert row["row"] == f"wallet_transactions {position}"
    assert says in row["message"] and str(wallet_id) in row["message"]
    assert [f["kind"] for f in report["findings"]] == ["read_model"]


def test_a_wallet_transaction_row_without_a_money_event_is_named(stream, capsys, monkeypatch):
    position, wallet_id, _ = event_in(stream, "peerpush:Wallet.WithdrawalSettled", 1_000, 2_000)
    with connect(stream.db) as conn:
        conn.execute(
            "INSERT INTO wallet_transactions SELECT %s, wallet_id, user_id, type, 0, 0, "
            "available_after, challenge_id, withdrawal_id, payment_intent_id, adjustment_id, "
            "lot_id, reference, actor, request_id, event_time FROM wallet_transactions "
            "WHERE wallet_id = %s AND position < %s ORDER BY position DESC LIMIT 1",
            (position, wallet_id, position),
        )
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "read_model")
    assert row["row"] == f"wallet_transactions {position}"
    assert "no money event" in row["message"]


@pytest.mark.parametrize(
    ("column", "change"),
    [("share", "share + 1"), ("stake", "stake - 10"), ("finished", "NOT finished")],
)
def test_an_edited_challenge_participant_is_named_by_challenge_and_user(
    stream, capsys, monkeypatch, column, change
):
    with connect(stream.db) as conn:
        challenge_id, user_id = conn.execute(
            f"UPDATE challenge_participants SET {column} = {change} "
            "WHERE (challenge_id, user_id) = (SELECT challenge_id, user_id "
            "FROM challenge_participants WHERE share IS NOT NULL "
            "ORDER BY share DESC, user_id LIMIT 1) RETURNING challenge_id, user_id"
        ).fetchone()
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "read_model")
    assert row["row"] == f"challenge_participants ({challenge_id}, {user_id})"
    assert re.search(rf"{column} stored \S+, stream \S+", row["message"])
    assert [f["kind"] for f in report["findings"]] == ["read_model"]


def test_a_deleted_challenge_participant_is_named(stream, capsys, monkeypatch):
    with connect(stream.db) as conn:
        challenge_id, user_id = conn.execute(
            "DELETE FROM challenge_participants WHERE (challenge_id, user_id) = "
            "(SELECT challenge_id, user_id FROM challenge_participants "
            "WHERE share IS NULL LIMIT 1) RETURNING challenge_id, user_id"
        ).fetchone()
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "read_model")
    assert row["row"] == f"challenge_participants ({challenge_id}, {user_id})"
    assert "missing" in row["message"]


def test_a_change_after_the_last_checkpoint_is_located_by_the_stored_head(
    stream, capsys, monkeypatch
):
    last = head(stream.db)
    with connect(stream.db) as conn:
        conn.execute(
            "UPDATE ledger_events SET state = replace(convert_from(state, 'UTF8'), "
            "'bulkb', 'bulkX')::bytea WHERE notification_id = %s",
            (last,),
        )
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [chain] = findings(report, "chain")
    assert chain["interval"] == [3_000, last]
    assert "after the last checkpoint (3000)" in chain["message"]


def test_an_altered_checkpoint_row_is_told_apart_from_a_changed_stream(stream, capsys, monkeypatch):
    with connect(stream.db) as conn:
        conn.execute("UPDATE chain_checkpoints SET hash = %s WHERE position = 2000", (bytes(32),))
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 1
    [row] = findings(report, "chain_row")
    assert "2000..2000" in row["message"] and findings(report, "chain") == []


def test_expect_head_catches_a_change_hidden_by_a_rewritten_chain(stream, capsys, monkeypatch):
    _, earlier = verify(stream.db, capsys, monkeypatch)
    position, _, state = event_in(stream, DEPOSIT, 1_000, 2_000)
    forged = state.replace(b'"request_id":"bulk"', b'"request_id":"forged"')
    assert forged != state
    with connect(stream.db) as conn:
        conn.execute(
            "UPDATE ledger_events SET state = %s WHERE notification_id = %s", (forged, position)
        )
    stream.projector.rebuild(["chain"])  # whoever edits the stream recomputes the chain too
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 0, "the rewritten chain agrees with the edited stream"
    code, report = verify(stream.db, capsys, monkeypatch, "--expect-head", earlier["chain"]["head"])
    assert code == 1
    [expect] = findings(report, "expect_head")
    assert expect["position"] == int(earlier["chain"]["head"].split(":")[0])
    # An earlier head still matches a prefix that was not touched.
    code, _ = verify(stream.db, capsys, monkeypatch, "--expect-head", checkpoint(stream, 1_000))
    assert code == 0


def checkpoint(a: Audited, position: int) -> str:
    with connect(a.db) as conn:
        value = conn.execute(
            "SELECT hash FROM chain_checkpoints WHERE position = %s", (position,)
        ).fetchone()[0]
    return f"{position}:{bytes(value).hex()}"


def test_the_progress_bar_shows_rate_and_eta_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for out in (tty, pipe):
        bar = Progress(10_000, "audit verify", out)
        bar.shown -= 1
        bar.update(5_000, 5_000)
        bar.close()
    assert "/s ETA" in tty.getvalue() and "50%" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_verify_json_is_machine_readable(stream, capsys, monkeypatch):
    code, out = cli(stream.db, capsys, monkeypatch, "verify", "--json")
    assert code == 0 and json.loads(out)["clean"] is True


def test_read_models_that_lag_the_stream_are_compared_at_their_own_position(
    stream, capsys, monkeypatch
):
    projected = head(stream.db)
    bulk(stream, 30, tag="late")  # written after the projector's last run
    code, report = verify(stream.db, capsys, monkeypatch)
    assert code == 0, report["findings"]
    assert report["positions"]["last"] > projected
    assert set(report["read_models_compared_at"].values()) == {projected}
    assert any("not chained yet" in note for note in report["notes"])
