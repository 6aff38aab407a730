"""A wallet as of a stream position, or as of a time, is what the read models said when the
projector had reached exactly that position (rules §8)."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.demo import play
from domain import ids
from domain.aggregate import Cause
from domain.errors import NotFound
from projections.point_in_time import WalletAsOf, wallet_as_of
from projections.position_times import position_at
from tests.projections.support import ADMIN, Projected, connect

LOT_FIELDS = ("amount", "remaining", "frozen", "written_off", "dispute_loss")


def a_month_of_activity(projected: Projected) -> list[UUID]:
    """Deposits, a challenge played and settled, adjustments, a lost dispute and a
    withdrawal, with business time moving between commands. Returns the users."""
    ledger, clock = projected.ledger, projected.clock
    with contextlib.redirect_stdout(io.StringIO()):
        users = list(play(ledger, clock).values())
    ada, bo = users[0], users[1]
    for n in range(3):
        clock.advance(timedelta(hours=5))
        ledger.credit_deposit(ada, f"pi_more_{n}", 700, Cause.stripe(f"evt_more_{n}"))
        clock.advance(timedelta(minutes=7))
        ledger.adjust(bo, "credit", 40, "goodwill", uuid4(), Cause.admin(ADMIN))
    clock.advance(timedelta(days=1))
    ledger.open_dispute(ada, "pi_more_1", "dp_1", Cause.stripe("evt_dp_1"))
    clock.advance(timedelta(days=1))
    ledger.close_dispute(ada, "dp_1", False, 350, Cause.stripe("evt_dp_1_lost"))
    clock.advance(timedelta(hours=1))
    ledger.request_withdrawal(bo, uuid4(), 300, Cause.user(bo))
    return users


Seen = tuple[dict[str, Any], list[dict[str, Any]]]
"""A wallet_balances row and its wallet_lots rows in seq order."""


def snapshot(conn: psycopg.Connection[dict[str, Any]], user: UUID) -> Seen:
    row = conn.execute("SELECT * FROM wallet_balances WHERE user_id = %s", (user,)).fetchone()
    lots = conn.execute("SELECT * FROM wallet_lots WHERE user_id = %s ORDER BY seq", (user,))
    assert row is not None
    return row, lots.fetchall()


def assert_same_wallet(as_of: WalletAsOf, seen: Seen) -> None:
    row, lots = seen
    assert as_of.balances == {k: row[k] for k in as_of.balances}
    got = [
        {**{k: getattr(lot, k) for k in LOT_FIELDS[:-1]}, "dispute_loss": lot.loss}
        for lot in as_of.lots
    ]
    assert got == [{k: r[k] for k in LOT_FIELDS} for r in lots]
    assert [lot.lot_id for lot in as_of.lots] == [r["lot_id"] for r in lots]


def test_a_wallet_as_of_a_position_or_a_time_is_what_the_read_model_said_then(
    projected: Projected,
) -> None:
    users = a_month_of_activity(projected)
    ledger, projector = projected.ledger, projected.projector
    stream = ledger.recorder.select_notifications(1, 10_000)
    wallet_ids = {ids.wallet_id(u): u for u in users}
    times = {n.id: ledger.mapper.to_domain_event(n).timestamp for n in stream}
    seen: dict[int, dict[UUID, Seen]] = {}
    opened: set[UUID] = set()

    with connect(projected.db) as conn:
        for n in stream:
            projector.catch_up(until=n.id)
            assert set(projector.positions().values()) == {n.id}, "caught up past the position"
            if n.originator_id in wallet_ids:
                opened.add(wallet_ids[n.originator_id])
            seen[n.id] = {u: snapshot(conn, u) for u in opened}

    for position, wallets in seen.items():
        for user, then in wallets.items():
            assert_same_wallet(wallet_as_of(ledger, user, position=position), then)

    # As of a time: the stream up to the last position whose event time is at most T.
    with connect(projected.db) as conn:
        for t in sorted(set(times.values())):
            last = max(p for p, at in times.items() if at <= t)
            for user, then in seen[last].items():
                for at in (t, t + timedelta(seconds=1)):
                    as_of = wallet_as_of(ledger, user, position=position_at(conn, at))
                    assert_same_wallet(as_of, then)

        first_wallet_at = min(times[p] for p, w in seen.items() if w)
        before = position_at(conn, first_wallet_at - timedelta(seconds=1))
    with pytest.raises(NotFound):
        wallet_as_of(ledger, users[0], position=before)
