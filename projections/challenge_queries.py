"""Queries over the challenge read models and the challenge's side of the journal.

Plain SQL over ``challenge_summaries``, ``challenge_participants`` and ``journal_postings``
(migrations 0002); the API decides who may ask, these only answer.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from projections.queries import ReadModels

Scope = Literal["mine", "joined", "public"]

SUMMARY_COLUMNS = (
    "s.challenge_id, s.owner_id, s.name, s.visibility, s.invite_code, s.status, s.starts_at, "
    "s.ends_at, s.entry_stake, s.max_participants, s.frequency, s.timezone, "
    "s.verification_mode, s.penalty_tokens, s.participants, s.pool, s.finishers, s.outcome, "
    "s.created_at, s.last_position"
)


def list_challenges(
    reads: ReadModels, user_id: UUID, scope: Scope, *, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. ``mine``: every challenge the user owns, drafts included; ``joined``:
    every challenge the user takes part in; ``public``: published public challenges.

    Raises ValueError for a cursor we did not issue.
    """
    clauses: list[str] = []
    params: list[Any] = []
    source = "challenge_summaries s"
    if scope == "mine":
        clauses.append("s.owner_id = %s")
        params.append(user_id)
    elif scope == "joined":
        source += " JOIN challenge_participants p ON p.challenge_id = s.challenge_id"
        clauses.append("p.user_id = %s")
        params.append(user_id)
    else:
        clauses.append("s.visibility = 'public' AND s.status <> 'draft'")
    if cursor:
        created_at, challenge_id = decode_cursor(cursor)
        clauses.append("(s.created_at, s.challenge_id) < (%s, %s)")
        params += [created_at, challenge_id]
    rows = reads.all(
        f"SELECT {SUMMARY_COLUMNS} FROM {source} WHERE {' AND '.join(clauses)} "
        "ORDER BY s.created_at DESC, s.challenge_id DESC LIMIT %s",
        *params,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return rows, encode_cursor(last["created_at"], last["challenge_id"]) if last else None


def participants(reads: ReadModels, challenge_id: UUID) -> list[dict[str, Any]]:
    """Each participant's stake, penalties and, once settled, its result; in join order."""
    return reads.all(
        "SELECT user_id, timezone, stake, penalties, joined_at, expected, accepted, finished, "
        "share FROM challenge_participants WHERE challenge_id = %s ORDER BY joined_at, user_id",
        challenge_id,
    )


def active_challenges_of(reads: ReadModels, user_id: UUID) -> list[UUID]:
    """The active challenges the user takes part in (where there may be votes to cast)."""
    rows = reads.all(
        "SELECT s.challenge_id FROM challenge_summaries s JOIN challenge_participants p "
        "ON p.challenge_id = s.challenge_id WHERE p.user_id = %s AND s.status = 'active' "
        "ORDER BY s.ends_at, s.challenge_id",
        user_id,
    )
    return [r["challenge_id"] for r in rows]


def challenge_ledger(reads: ReadModels, challenge_id: UUID) -> dict[str, Any]:
    """The pool as the journal sees it: the balance of every ``challenge:{id}:*`` account
    and each entry that moved one, with only those accounts' postings (a participant sees
    the pool move, not other wallets' insides)."""
    prefix = f"challenge:{challenge_id}:%"
    postings = reads.all(
        "SELECT p.position, p.account, p.amount, e.event_type, e.event_time "
        "FROM journal_postings p JOIN journal_entries e ON e.position = p.position "
        "WHERE p.account LIKE %s ORDER BY p.position, p.account",
        prefix,
    )
    balances: dict[str, int] = {}
    entries: list[dict[str, Any]] = []
    for row in postings:
        amount = int(row["amount"])
        balances[row["account"]] = balances.get(row["account"], 0) + amount
        if not entries or entries[-1]["position"] != row["position"]:
            entries.append(
                {
                    "position": row["position"],
                    "event_type": row["event_type"],
                    "event_time": row["event_time"],
                    "postings": [],
                }
            )
        entries[-1]["postings"].append({"account": row["account"], "amount": amount})
    return {
        "pool": sum(balances.values()),
        "accounts": [{"account": a, "balance": b} for a, b in sorted(balances.items())],
        "entries": entries,
    }


def encode_cursor(created_at: datetime, challenge_id: UUID) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "id": str(challenge_id)})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        created_at = datetime.fromisoformat(data["t"])
        challenge_id = UUID(data["id"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError("invalid cursor") from e
    if created_at.tzinfo is None:
        raise ValueError("invalid cursor")
    return created_at, challenge_id
