"""The read side the API serves from: plain SQL over the read models.

Every query may first wait (bounded) for the projections to reach a stream position, so a
client that just issued a command reads its own write.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Protocol, TypeVar, runtime_checkable
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.persistence import DatabaseSettings
from projections.audit.export import event_record
from projections.position_times import position_at
from projections.position_watch import TooManyWaiters

T = TypeVar("T")


class ReadModelBehind(Exception):
    """The read models have not caught up with what a query needs yet; ask again."""

    def __init__(self, detail: str, position: int) -> None:
        super().__init__(detail)
        self.position = position


class Waits(Protocol):
    def wait_for(self, position: int, timeout: float = 2.0) -> bool: ...


# rules §2: what a wallet may refund to cards and cash out now (see `ReadModels.payable`).
PAYABLE = """
SELECT
  coalesce(sum(remaining) FILTER (WHERE source = 'deposit'
    AND refundable_until > %(now)s), 0) AS refundable,
  coalesce(sum(remaining) FILTER (WHERE source IN ('payout', 'adjustment')
    AND created_at <= %(now)s - make_interval(days => %(hold)s)), 0) AS eligible,
  (SELECT coalesce(sum(t.tokens), 0) FROM wallet_transactions t
    WHERE t.user_id = %(user)s AND t.type = 'cashout'
      AND t.event_time > %(now)s - interval '24 hours' AND t.event_time <= %(now)s
      AND NOT EXISTS (SELECT 1 FROM wallet_transactions f
        WHERE f.user_id = %(user)s AND f.cashout_id = t.cashout_id
          AND f.type = 'cashout_failed')) AS used
FROM wallet_lots
WHERE user_id = %(user)s AND NOT frozen AND NOT written_off AND remaining > 0
"""


NOW_PARAMETER = "%(now)s"


@runtime_checkable
class SqlClock(Protocol):
    """A clock PostgreSQL can read itself, inside the statement that needs the time."""

    def now_sql(self) -> str:
        """An SQL expression of the time ``now()`` would answer."""
        ...


@cache
def wallet_now_sql(now: str) -> str:
    """`ReadModels.wallet_now`'s statement, with ``now`` (a parameter or an expression)."""
    payable = PAYABLE.replace(NOW_PARAMETER, now)
    return (
        "SELECT to_jsonb(b) AS balances, pay.*, "
        "(SELECT coalesce(min(position), 0) FROM projection_positions) AS read_position "
        f"FROM ({payable}) AS pay LEFT JOIN wallet_balances b ON b.user_id = %(user)s"
    )


def _payable(row: dict[str, Any], per_day: int) -> tuple[int, int]:
    allowance = max(0, per_day - int(row["used"]))
    return int(row["refundable"]), min(int(row["eligible"]), allowance)


class ReadModels:
    """Queries over the read-model tables, through a small pool of its own."""

    def __init__(self, db: DatabaseSettings, *, pool_size: int = 4) -> None:
        self.db = db
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            db.url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "options": f"-c search_path={db.schema}",
            },
            open=True,
            timeout=5,
            # A database restart leaves none dead (the reliability suite's load test found
            # reads failing for 10 s after a restart without it).
            check=ConnectionPool.check_connection,
        )

    def close(self) -> None:
        self.pool.close()

    def read(self, work: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """``work`` on a pooled connection, again on another if that one turns out dead.

        A database restart kills every pooled connection. The pool pings each one it hands
        out (a round trip per read, kept: without it the reliability suite's restart left
        reads failing for about 10 s, decision 114), and a statement that still meets a dead
        one runs again on another (every query here only reads, so running it twice changes
        nothing). A database that is down fails to connect, and the pool's timeout answers.
        """
        for attempt in range(self.pool.max_size + 1):
            with self.pool.connection() as conn:
                try:
                    return work(conn)
                except psycopg.OperationalError:
                    if not conn.broken or attempt == self.pool.max_size:
                        raise
        raise AssertionError("unreachable")

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        return self.read(lambda conn: conn.execute(sql, params).fetchone())

    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.read(lambda conn: conn.execute(sql, params).fetchall())

    def position(self) -> int:
        row = self.one("SELECT coalesce(min(position), 0) AS p FROM projection_positions")
        return int(row["p"]) if row else 0

    def in_flight(self) -> dict[str, tuple[int, int]]:
        """Withdrawals and cash-outs awaiting Stripe's outcome: kind → (wallets, tokens)."""
        row = self.one(
            "SELECT count(*) FILTER (WHERE withdrawal_pending > 0) AS w_wallets, "
            "coalesce(sum(withdrawal_pending), 0) AS w_tokens, "
            "count(*) FILTER (WHERE cashout_pending > 0) AS c_wallets, "
            "coalesce(sum(cashout_pending), 0) AS c_tokens FROM wallet_balances"
        )
        r = row or {}
        return {
            "withdrawals": (int(r.get("w_wallets", 0)), int(r.get("w_tokens", 0))),
            "cashouts": (int(r.get("c_wallets", 0)), int(r.get("c_tokens", 0))),
        }

    def wait_for(self, projector: Waits, position: int | None, timeout: float) -> None:
        """Read your writes: wait (bounded) until the read models have applied ``position``.

        Bounded twice: in time (``timeout``) and in how many requests may wait at once (the
        projector's ``max_waiters``); a request beyond that bound is refused at once.
        """
        if not position:
            return
        try:
            caught_up = projector.wait_for(position, timeout=timeout)
        except TooManyWaiters:
            caught_up = False
        if not caught_up:
            raise ReadModelBehind("the read models have not caught up yet", self.position())

    # -- wallets --------------------------------------------------------------------------

    def wallet(self, user_id: UUID) -> dict[str, Any] | None:
        return self.one("SELECT * FROM wallet_balances WHERE user_id = %s", user_id)

    def payable(
        self, user_id: UUID, now: datetime, hold_days: int, per_day: int
    ) -> tuple[int, int]:
        """``(refundable, cashoutable)`` at ``now`` (rules §2): usable deposit lots inside
        their refund window; usable payout and adjustment lots at least ``hold_days`` old,
        capped by what the rolling-24 h cash-out limit still allows (cash-outs that failed
        do not count)."""
        params = {"user": user_id, "now": now, "hold": hold_days}
        row = self.read(lambda conn: conn.execute(PAYABLE, params).fetchone())
        if row is None:
            return 0, 0
        return _payable(row, per_day)

    def wallet_now(
        self, user_id: UUID, now: datetime | str, hold_days: int, per_day: int
    ) -> tuple[dict[str, Any] | None, int, int, int]:
        """What ``GET /wallet`` shows, in one round trip and one snapshot: the wallet's
        balances row (None before its first event is projected), ``refundable`` and
        ``cashoutable`` as `payable` counts them, and the read models' position.

        ``now`` is a time, or an SQL expression PostgreSQL evaluates in this very statement
        (`SqlClock`: the development test clock, whose offset is a table), so reading the
        clock costs no round trip of its own."""
        sql = wallet_now_sql(now if isinstance(now, str) else NOW_PARAMETER)
        params = {"user": user_id, "now": now, "hold": hold_days}
        if isinstance(now, str):
            del params["now"]
        row = self.read(lambda conn: conn.execute(sql, params).fetchone())
        assert row is not None  # an aggregate without GROUP BY always answers one row
        refundable, cashoutable = _payable(row, per_day)
        return row["balances"], refundable, cashoutable, int(row["read_position"])

    def lots(self, user_id: UUID) -> list[dict[str, Any]]:
        return self.all("SELECT * FROM wallet_lots WHERE user_id = %s ORDER BY seq", user_id)

    def transactions(
        self,
        user_id: UUID,
        *,
        limit: int,
        cursor: str | None,
        kind: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the cursor is the last position seen (opaque to clients)."""
        clauses: list[str] = ["user_id = %s"]
        params: list[Any] = [user_id]
        if cursor:
            clauses.append("position < %s")
            params.append(decode_cursor(cursor))
        if kind:
            clauses.append("type = %s")
            params.append(kind)
        if since:
            clauses.append("event_time >= %s")
            params.append(since)
        if until:
            clauses.append("event_time < %s")
            params.append(until)
        rows = self.all(
            f"SELECT * FROM wallet_transactions WHERE {' AND '.join(clauses)} "
            "ORDER BY position DESC LIMIT %s",
            *params,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]["position"]) if more and rows else None

    def withdrawal(self, user_id: UUID, withdrawal_id: UUID) -> list[dict[str, Any]]:
        """One withdrawal of the user's, as its ledger lines in stream order (none: no such
        withdrawal of theirs, or not projected yet)."""
        return self.all(
            "SELECT type, lot_id, tokens, position, reference FROM wallet_transactions "
            "WHERE user_id = %s AND withdrawal_id = %s ORDER BY position",
            user_id,
            withdrawal_id,
        )

    def position_at(self, at: datetime, *, covering: int | None = None) -> int:
        """The last stream position whose event time is at most ``at``, from the position
        index (`projections.position_times.position_at`; ``IndexBehind`` while it lags)."""
        return self.read(lambda conn: position_at(conn, at, covering=covering))

    # -- platform -------------------------------------------------------------------------

    def revenue(
        self, since: date | None, until: date | None, group_by: str
    ) -> list[dict[str, Any]]:
        """Fees and forfeits by day or by challenge, as plain JSON (ids and dates as text)."""
        rows: list[dict[str, Any]] = plain(self._revenue(since, until, group_by))
        return rows

    def _revenue(
        self, since: date | None, until: date | None, group_by: str
    ) -> list[dict[str, Any]]:
        clauses, params = ["true"], list[date]()
        if since:
            clauses.append("day >= %s::date")
            params.append(since)
        if until:
            clauses.append("day <= %s::date")
            params.append(until)
        where = " AND ".join(clauses)
        if group_by == "challenge":
            return self.all(
                "SELECT challenge_id, min(day) AS day, "
                "coalesce(sum(tokens) FILTER (WHERE kind = 'forfeit'), 0) AS forfeits, "
                "coalesce(sum(tokens) FILTER (WHERE kind = 'fee'), 0) AS fees, "
                "bool_or(kind = 'forfeit') AS failed, sum(tokens) AS net "
                f"FROM revenue_entries WHERE challenge_id IS NOT NULL AND {where} "
                "GROUP BY challenge_id ORDER BY min(day), challenge_id",
                *params,
            )
        return self.all(f"SELECT * FROM revenue_daily WHERE {where} ORDER BY day", *params)

    def journal(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """The journal's entries after ``cursor``, each with its postings, as plain JSON."""
        entries, next_cursor = self._journal(cursor, limit)
        shown: list[dict[str, Any]] = plain(entries)
        return shown, next_cursor

    def _journal(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        after = decode_cursor(cursor) if cursor else 0
        entries = self.all(
            "SELECT * FROM journal_entries WHERE position > %s ORDER BY position LIMIT %s",
            after,
            limit + 1,
        )
        more = len(entries) > limit
        entries = entries[:limit]
        if entries:
            postings = self.all(
                "SELECT position, account, amount FROM journal_postings "
                "WHERE position = ANY(%s) ORDER BY position, account",
                [e["position"] for e in entries],
            )
            by_position: dict[int, list[dict[str, Any]]] = {}
            for p in postings:
                by_position.setdefault(p["position"], []).append(
                    {"account": p["account"], "amount": int(p["amount"])}
                )
            for e in entries:
                e["postings"] = by_position.get(e["position"], [])
        return entries, encode_cursor(entries[-1]["position"]) if more and entries else None

    def audit_events(
        self, ledger: Application[Any], after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` stored events after position ``after``, decoded by ``ledger``, each
        as ``audit export`` writes it (`projections.audit.export.event_record`)."""
        notifications = ledger.recorder.select_notifications(after, limit, inclusive_of_start=False)
        return [event_record(n, ledger.mapper.to_domain_event(n)) for n in notifications]


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": int(position)}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))["p"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError("invalid cursor") from e
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("invalid cursor")
    return value


def plain(value: Any) -> Any:
    """Plain JSON for API output: UUIDs and times as strings, Decimals as ints."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value)
    return value
