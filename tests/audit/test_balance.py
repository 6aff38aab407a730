"""``peerpush audit balance``: a wallet as of a position or a time, from the stream alone,
equals what the read models said at that moment (rules §8)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid5

from api.cli import main
from domain import ids
from domain.aggregate import Cause
from domain.balances import SHOWN
from projections.audit.balance import balance
from tests.audit.support import NS, Audited, cli, connect, scenario

LOT = ("seq", "source", "amount", "remaining", "frozen", "written_off")
BALANCES = SHOWN


def read_model(a: Audited) -> dict[Any, dict[str, Any]]:
    """Every wallet's balances and lots as the read models have them now."""
    with connect(a.db) as conn:
        wallets = conn.execute(
            f"SELECT user_id, {', '.join(BALANCES)} FROM wallet_balances"
        ).fetchall()
        lots = conn.execute(
            f"SELECT user_id, {', '.join(LOT)}, dispute_loss FROM wallet_lots ORDER BY seq"
        ).fetchall()
    out = {w[0]: {"balances": dict(zip(BALANCES, w[1:], strict=True)), "lots": []} for w in wallets}
    for lot in lots:
        out[lot[0]]["lots"].append(lot[1:])
    return out


def as_seen(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "balances": report["balances"],
        "lots": [(*(lot[k] for k in LOT), lot["loss"]) for lot in report["lots"]],
    }


def test_as_of_balances_equal_what_the_read_models_said_at_that_moment(audited, monkeypatch):
    moments: list[tuple[int, Any, dict[Any, Any]]] = []
    # Every command's save passes through `_save` (batched by group commit or not); what it
    # returns has been committed.
    ledger, save = audited.ledger, audited.ledger._save

    def save_and_look(*aggregates: Any, **kwargs: Any) -> Any:
        receipt = save(*aggregates, **kwargs)
        audited.projector.catch_up()
        moments.append((ledger.head(), audited.clock.now(), read_model(audited)))
        return receipt

    monkeypatch.setattr(ledger, "_save", save_and_look)
    users = scenario(audited)
    assert len(moments) > 40
    for position, _, seen in moments:
        for user in seen:
            report = balance(audited.db, ledger, position, user_id=user)
            assert as_seen(report) == seen[user], f"user {user} at position {position}"
    last_at_time = {at: (position, seen) for position, at, seen in moments}
    for at, (position, seen) in last_at_time.items():
        for user in seen:
            report = balance(audited.db, ledger, at, user_id=user)
            assert report["as_of"]["position"] == position
            assert as_seen(report) == seen[user], f"user {user} at {at}"
    assert users.keys() == {"ada", "bo", "cy", "di"}


def test_the_balance_command_takes_a_user_or_a_wallet_and_a_time_or_a_position(
    audited, capsys, monkeypatch
):
    users = scenario(audited)
    audited.projector.catch_up()
    now = read_model(audited)
    ada = users["ada"]
    code, out = cli(
        audited.db,
        capsys,
        monkeypatch,
        "balance",
        "--user",
        str(ada),
        "--as-of",
        str(audited.ledger.head()),
        "--json",
    )
    assert code == 0 and as_seen(json.loads(out)) == now[ada]
    wallet = ids.wallet_id(ada)
    at = audited.clock.now().isoformat()
    code, out = cli(
        audited.db, capsys, monkeypatch, "balance", "--wallet", str(wallet), "--as-of", at
    )
    assert code == 0
    assert f"wallet {wallet} of user {ada}" in out and "available" in out and "lots (" in out
    code, _ = cli(
        audited.db, capsys, monkeypatch, "balance", "--user", str(users["bo"]), "--as-of", "1"
    )
    assert code == 1  # bo's wallet did not exist at position 1 (ada's was being opened)


def test_as_of_a_time_the_position_index_has_not_reached_is_refused_until_it_has(
    audited, capsys, monkeypatch
):
    """An event the index has not read may be earlier than the time asked about: the audit
    says so instead of answering from part of the stream."""
    ada = uuid5(NS, "ada")
    audited.ledger.credit_deposit(ada, "pi_ada", 700, Cause.stripe("evt_ada"))
    at = audited.clock.now().isoformat()
    monkeypatch.setenv("DATABASE_URL", audited.db.url)
    monkeypatch.setenv("DB_SCHEMA", audited.db.schema)
    for args in (["balance", "--user", str(ada), "--as-of", at], ["export", "--until", at]):
        capsys.readouterr()
        assert main(["audit", *args]) == 1
        assert "the position_times index is at position 0" in capsys.readouterr().err
    audited.projector.catch_up()
    code, out = cli(
        audited.db, capsys, monkeypatch, "balance", "--user", str(ada), "--as-of", at, "--json"
    )
    assert code == 0 and json.loads(out)["balances"]["available"] == 700
