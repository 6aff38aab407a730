"""The stored read models against the replayed stream, row by row (rules §8: every read model
can be rebuilt from the stream with the same result).

A projection's tables reflect the stream up to its position in ``projection_positions``; each
is compared with the replay at exactly that position (before the next event is applied), so a
projection that lags is not a finding. Rows are read through server-side cursors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from uuid import UUID

from domain.balances import FIGURES
from domain.challenge import SETTLED, Challenge
from domain.tokens import Lot
from domain.wallet import Wallet
from projections.audit.findings import Finding
from projections.audit.replay import Replay, accounts
from projections.audit.stream import Conn, has_table, stream_rows

MAX_ROW_FINDINGS = 20

WALLET_FIELDS: tuple[tuple[str, Callable[[Wallet], Any]], ...] = (
    ("user_id", lambda w: w.user_id),
    *((name, lambda w, name=name: getattr(w, name)) for name in (*FIGURES, "closed")),
    # Lot records dropped from the wallet (rules §1) keep their read-model rows.
    ("lot_count", lambda w: len(w.lots) + w.lots_dropped),
)
LOT_FIELDS: tuple[tuple[str, Callable[[Lot], Any]], ...] = (
    ("seq", lambda lot: lot.seq),
    ("source", lambda lot: lot.source),
    ("amount", lambda lot: lot.amount),
    ("remaining", lambda lot: lot.remaining),
    ("frozen", lambda lot: lot.frozen),
    ("written_off", lambda lot: lot.written_off),
    ("dispute_loss", lambda lot: lot.loss),
)
CHALLENGE_FIELDS: tuple[tuple[str, Callable[[Challenge], Any]], ...] = (
    ("owner_id", lambda c: c.owner_id),
    ("invite_code", lambda c: c.invite_code),
    ("status", lambda c: c.status),
    ("entry_stake", lambda c: c.terms.entry_stake),
    ("participants", lambda c: len(c.participants)),
    ("stakes", lambda c: sum(p.stake for p in c.participants.values())),
    ("penalties", lambda c: sum(p.penalties for p in c.participants.values())),
    ("pool", lambda c: c.pool),
    ("finishers", lambda c: len(c.finishers)),
    ("fee", lambda c: c.fee),
    ("forfeited", lambda c: c.forfeited),
    ("returned", lambda c: c.returned),
    ("paid_out", lambda c: c.paid_out),
)
PARTICIPANT_FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("timezone", lambda m: m[0].timezone),
    ("stake", lambda m: m[0].stake),
    ("penalties", lambda m: m[0].penalties),
    *(
        (name, lambda m, i=i: None if m[1] is None else m[1][i])
        for i, name in enumerate(("expected", "accepted", "finished", "share"))
    ),
)
"""On ``(participant, its settlement result or None)``: results exist once settled."""
TABLES = {
    "wallets": ("wallet_balances", "wallet_lots", "wallet_transactions"),
    "challenges": ("challenge_summaries", "challenge_participants"),
    "revenue": ("revenue_entries",),
    "journal": ("journal_entries", "journal_postings"),
}


class Rows:
    """Collects row findings for one table, at most :data:`MAX_ROW_FINDINGS` of them."""

    def __init__(self, table: str, at: int) -> None:
        self.table, self.at = table, at
        self.found: list[Finding] = []
        self.count = 0

    def add(self, key: Any, message: str) -> None:
        self.count += 1
        if self.count <= MAX_ROW_FINDINGS:
            self.found.append(
                Finding(
                    "read_model",
                    f"{self.table} {key}: {message} (read model at position {self.at})",
                    row=f"{self.table} {key}",
                )
            )

    def findings(self) -> list[Finding]:
        more = self.count - MAX_ROW_FINDINGS
        extra = (
            [Finding("read_model", f"... and {more} more {self.table} rows")] if more > 0 else []
        )
        return self.found + extra


def _fields(rows: Rows, key: Any, stored: Iterable[Any], expected: Any, spec: Any) -> None:
    diffs = [
        f"{name} stored {value!r}, stream {get(expected)!r}"
        for (name, get), value in zip(spec, stored, strict=True)
        if value != get(expected)
    ]
    if diffs:
        rows.add(key, "; ".join(diffs))


def compare_wallets(conn: Conn, replay: Replay, at: int) -> list[Finding]:
    balances, lots = Rows("wallet_balances", at), Rows("wallet_lots", at)
    names = ", ".join(name for name, _ in WALLET_FIELDS)
    seen: set[UUID] = set()
    for row in stream_rows(conn, f"SELECT wallet_id, {names} FROM wallet_balances"):
        wallet = replay.wallets.get(row[0])
        seen.add(row[0])
        if wallet is None:
            balances.add(row[0], "no such wallet in the stream")
        else:
            _fields(balances, row[0], row[1:], wallet, WALLET_FIELDS)
    for wallet_id in replay.wallets.keys() - seen:
        balances.add(wallet_id, "missing (the stream has this wallet)")
    names = ", ".join(name for name, _ in LOT_FIELDS)
    lot_count = 0
    for row in stream_rows(conn, f"SELECT lot_id, wallet_id, {names} FROM wallet_lots"):
        lot_count += 1
        wallet = replay.wallets.get(row[1])
        lot = wallet.lots.get(str(row[0])) if wallet else None
        if lot is None and str(row[0]) in replay.dropped_lots:
            continue  # its record left the wallet's state (rules §1); the row stays
        if lot is None:
            lots.add(row[0], f"no such lot in wallet {row[1]} in the stream")
        else:
            _fields(lots, row[0], row[2:], lot, LOT_FIELDS)
    expected = sum(len(w.lots) + w.lots_dropped for w in replay.wallets.values())
    if lot_count < expected:
        known = {r[0] for r in stream_rows(conn, "SELECT lot_id FROM wallet_lots")}
        for w in replay.wallets.values():
            for lot in w.lots.values():
                if lot.lot_id not in known:
                    lots.add(lot.lot_id, f"missing (wallet {w.id} has this lot in the stream)")
    return balances.findings() + lots.findings()


def compare_challenges(conn: Conn, replay: Replay, at: int) -> list[Finding]:
    rows = Rows("challenge_summaries", at)
    names = ", ".join(name for name, _ in CHALLENGE_FIELDS)
    seen: set[UUID] = set()
    for row in stream_rows(conn, f"SELECT challenge_id, {names} FROM challenge_summaries"):
        challenge = replay.challenges.get(row[0])
        seen.add(row[0])
        if challenge is None:
            rows.add(row[0], "no such challenge in the stream")
        else:
            _fields(rows, row[0], row[1:], challenge, CHALLENGE_FIELDS)
    for challenge_id in replay.challenges.keys() - seen:
        rows.add(challenge_id, "missing (the stream has this challenge)")
    return rows.findings() + compare_participants(conn, replay, at)


def compare_participants(conn: Conn, replay: Replay, at: int) -> list[Finding]:
    """Each participant's stake and penalties, and its settlement result (NULL before)."""
    rows = Rows("challenge_participants", at)
    names = ", ".join(name for name, _ in PARTICIPANT_FIELDS)
    matched = 0
    for row in stream_rows(
        conn, f"SELECT challenge_id, user_id, {names} FROM challenge_participants"
    ):
        key = f"({row[0]}, {row[1]})"
        challenge = replay.challenges.get(row[0])
        member = challenge.participants.get(str(row[1])) if challenge else None
        if member is None:
            rows.add(key, "no such participant in the stream")
            continue
        matched += 1
        results = replay.results.get(row[0])
        result = results.get(str(row[1])) if results is not None else None
        _fields(rows, key, row[2:], (member, result), PARTICIPANT_FIELDS)
    if matched < sum(len(c.participants) for c in replay.challenges.values()):
        known = set(
            stream_rows(conn, "SELECT challenge_id, user_id::text FROM challenge_participants")
        )
        for challenge in replay.challenges.values():
            for user_id in challenge.participants:
                if (challenge.id, user_id) not in known:
                    rows.add(f"({challenge.id}, {user_id})", "missing (the stream has it)")
    return rows.findings()


def compare_revenue(conn: Conn, replay: Replay, at: int) -> list[Finding]:
    """Forfeits, fees and net dispute losses in total, and each challenge's revenue."""
    rows = Rows("revenue_entries", at)
    settled = [c for c in replay.challenges.values() if c.status == SETTLED]
    expected = {
        "forfeit": sum(c.forfeited for c in settled),
        "fee": sum(c.fee for c in settled),
        "dispute": -sum(lot.loss for w in replay.wallets.values() for lot in w.lots.values()),
    }
    stored = dict.fromkeys(expected, 0)
    for kind, tokens in conn.execute(
        "SELECT CASE WHEN kind IN ('fee', 'forfeit') THEN kind ELSE 'dispute' END, sum(tokens) "
        "FROM revenue_entries GROUP BY 1"
    ).fetchall():
        stored[kind] = int(tokens)
    for kind, tokens in expected.items():
        if stored[kind] != tokens:
            rows.add(f"(kind {kind})", f"total stored {stored[kind]}, stream {tokens}")
    per_challenge = {c.id: c.fee + c.forfeited for c in settled if c.fee + c.forfeited}
    for challenge_id, tokens in stream_rows(
        conn,
        "SELECT challenge_id, sum(tokens) FROM revenue_entries "
        "WHERE challenge_id IS NOT NULL GROUP BY challenge_id",
    ):
        want = per_challenge.pop(challenge_id, 0)
        if want != tokens:
            rows.add(f"(challenge {challenge_id})", f"revenue stored {tokens}, stream {want}")
    for challenge_id, tokens in per_challenge.items():
        rows.add(f"(challenge {challenge_id})", f"no revenue stored, stream {tokens}")
    return rows.findings()


def compare_journal(conn: Conn, replay: Replay, at: int) -> list[Finding]:
    """Every entry balances, and every account holds what the aggregates say."""
    rows = Rows("journal_balances", at)
    out = [
        Finding(
            "journal",
            f"journal entry's postings sum to {total}, not 0",
            position=position,
            row=f"journal_postings {position}",
        )
        for position, total in conn.execute(
            "SELECT position, sum(amount) FROM journal_postings GROUP BY position "
            "HAVING sum(amount) <> 0 ORDER BY position LIMIT %s",
            (MAX_ROW_FINDINGS,),
        ).fetchall()
    ]
    expected = accounts(replay.wallets, replay.challenges)
    for account, balance in stream_rows(conn, "SELECT account, balance FROM journal_balances"):
        want = expected.pop(account, 0)
        if balance != want:
            rows.add(account, f"balance stored {balance}, stream {want}")
    for account, want in expected.items():
        rows.add(account, f"no postings stored, stream {want}")
    return out + rows.findings()


COMPARISONS: dict[str, Callable[[Conn, Replay, int], list[Finding]]] = {
    "wallets": compare_wallets,
    "challenges": compare_challenges,
    "revenue": compare_revenue,
    "journal": compare_journal,
}


class JournalCoverage:
    """Every money event up to the journal's position has exactly one journal entry.

    Walks ``journal_entries`` in position order alongside the stream (a merge), so memory
    stays constant however long the stream.
    """

    def __init__(self, conn: Conn, until: int) -> None:
        self.until = until
        self.rows = Rows("journal_entries", until)
        self._stored: Iterator[Any] = stream_rows(
            conn, "SELECT position FROM journal_entries ORDER BY position"
        )
        self._next = self._pull()

    def _pull(self) -> int | None:
        row = next(self._stored, None)
        return None if row is None else int(row[0])

    def see(self, position: int) -> None:
        if position > self.until:
            return
        while self._next is not None and self._next < position:
            self.rows.add(self._next, "an entry where the stream has no money event")
            self._next = self._pull()
        if self._next == position:
            self._next = self._pull()
        else:
            self.rows.add(position, "missing: the money event at this position has no entry")

    def findings(self) -> list[Finding]:
        while self._next is not None:
            self.rows.add(self._next, "an entry where the stream has no money event")
            self._next = self._pull()
        return [Finding("journal", f.message, row=f.row) for f in self.rows.findings()]


class TransactionCoverage:
    """Every Wallet money event up to the wallets projection's position has its row in
    ``wallet_transactions``: of that wallet, with the change of available the replay saw
    (``amount``) and the replayed available after it (``available_after``); every row is such
    an event's.

    A merge of the rows in position order with the stream, like :class:`JournalCoverage`, so
    memory stays constant. Per wallet, the row count, Σ amount and the last row's
    ``available_after`` (its available at the projection's position, ``wallet_balances``
    being compared too) follow from the rows.
    """

    def __init__(self, conn: Conn, until: int) -> None:
        self.until = until
        self.rows = Rows("wallet_transactions", until)
        self._stored: Iterator[Any] = stream_rows(
            conn,
            "SELECT position, wallet_id, amount, available_after FROM wallet_transactions "
            "ORDER BY position",
        )
        self._next: Any = next(self._stored, None)

    def see(self, position: int, wallet_id: UUID, amount: int | None, after: int | None) -> None:
        if position > self.until:
            return
        row = self._next
        while row is not None and row[0] < position:
            self._extra(row)
            row = next(self._stored, None)
        if row is None or row[0] != position:
            self._next = row
            self.rows.add(position, f"missing (the stream has a money event of wallet {wallet_id})")
            return
        self._next = next(self._stored, None)
        if row[1] != wallet_id:
            self.rows.add(position, f"wallet_id stored {row[1]}, stream {wallet_id}")
        elif amount is not None and (row[2] != amount or row[3] != after):
            diffs = [
                f"{name} stored {stored}, stream {want}"
                for name, stored, want in (
                    ("amount", row[2], amount),
                    ("available_after", row[3], after),
                )
                if stored != want
            ]
            self.rows.add(position, f"wallet {wallet_id}: " + "; ".join(diffs))

    def _extra(self, row: Any) -> None:
        self.rows.add(row[0], f"a row of wallet {row[1]} where the stream has no money event")

    def findings(self) -> list[Finding]:
        while self._next is not None:
            self._extra(self._next)
            self._next = next(self._stored, None)
        return self.rows.findings()


class ReadModelChecks:
    """Schedules each projection's comparison at its stored position."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.notes: list[str] = []
        self.positions: dict[str, int] = {}
        if has_table(conn, "projection_positions"):
            self.positions = dict(
                conn.execute("SELECT name, position FROM projection_positions").fetchall()
            )
        self.due: list[tuple[int, str]] = []
        for name, tables in TABLES.items():
            if not all(has_table(conn, t) for t in tables):
                self.notes.append(f"{name}: read model absent, not compared")
                continue
            self.due.append((int(self.positions.get(name, 0)), name))
        self.due.sort()
        self.coverage = (
            JournalCoverage(conn, int(self.positions.get("journal", 0)))
            if any(name == "journal" for _, name in self.due)
            else None
        )
        self.transactions = (
            TransactionCoverage(conn, int(self.positions.get("wallets", 0)))
            if any(name == "wallets" for _, name in self.due)
            else None
        )
        self.findings: list[Finding] = []
        self.compared: dict[str, int] = {}

    @property
    def next_at(self) -> int:
        """Compare once the stream is past this position (before its next event)."""
        return self.due[0][0] if self.due else 1 << 62

    def run_due(self, replay: Replay, before: int | None = None) -> None:
        """Compare every projection whose position is below ``before`` (None: all left)."""
        while self.due and (before is None or self.due[0][0] < before):
            at, name = self.due.pop(0)
            self.findings += COMPARISONS[name](self.conn, replay, at)
            self.compared[name] = at

    def finish(self, replay: Replay) -> None:
        self.run_due(replay)
        if self.coverage is not None:
            self.findings += self.coverage.findings()
        if self.transactions is not None:
            self.findings += self.transactions.findings()
