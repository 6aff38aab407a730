"""``Idempotency-Key`` records (rules §7), in PostgreSQL so every API process sees them.

A key is scoped to (user, route). The first request *claims* it (state ``running``), runs, and
stores its response (state ``done``); a repeat with the same body gets that response back.
A claim is a fresh UUID, so only the request holding it can complete or release the key.
Times come from the database's clock, the same for every process.

The record also names the *operation*: ``operation_id`` is drawn at random when the key is
first claimed and handed to every later claim of the key, so a command that creates something
takes its id from here and a retry names the same thing, whatever became of the earlier attempt
(an error, a commit whose answer was lost, a takeover of an abandoned claim). A record is never
deleted before it expires: a failed attempt marks it ``released`` and the next request runs
again with the same id. After expiry the key starts afresh, with a new id.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from application.idempotency import Claim, Outcome

if TYPE_CHECKING:
    from adapters.users import UserStore

PURGE_EVERY_SECONDS = 600.0


class IdempotencyStore:
    """Claims, completes, releases and forgets idempotency keys (the ``IdempotencyKeys`` port)."""

    # rules §7: keys are kept 24 h; after that the same key starts afresh.
    retention = timedelta(hours=24)
    # A claim this old was abandoned (its process died); another request may take it over.
    # The takeover runs with the record's operation id, so running again cannot spend twice.
    abandoned_after = timedelta(seconds=60)

    def __init__(self, users: UserStore) -> None:
        self.users = users
        self._next_purge = 0.0

    def begin(self, user_id: UUID, route: str, key: str, request_hash: str) -> Claim:
        """Claim (user, route, key) for a request whose body hashes to ``request_hash``."""
        self._maybe_purge()
        token = uuid4()
        params = {
            "user_id": user_id,
            "route": route,
            "key": key,
            "hash": request_hash,
            "claim": token,
            "operation": uuid4(),  # used only if the key is new, expired, or has none yet
            "retention": self.retention,
            "abandoned": self.abandoned_after,
        }
        with self.users.transaction() as cur:
            # New, or expired (then it starts afresh with a new operation id); otherwise the row
            # is left as it is, locked.
            inserted = cur.execute(
                """INSERT INTO idempotency_keys AS k (user_id, route, key, request_hash, state,
                    claim, operation_id, created_at, claimed_at)
                VALUES (%(user_id)s, %(route)s, %(key)s, %(hash)s, 'running', %(claim)s,
                    %(operation)s, now(), now())
                ON CONFLICT (user_id, route, key) DO UPDATE SET
                    request_hash = EXCLUDED.request_hash, state = 'running',
                    claim = EXCLUDED.claim, operation_id = EXCLUDED.operation_id,
                    status = NULL, body = NULL,
                    created_at = EXCLUDED.created_at, claimed_at = EXCLUDED.claimed_at,
                    completed_at = NULL
                WHERE k.created_at <= now() - %(retention)s
                RETURNING operation_id""",
                params,
            ).fetchone()
            if inserted is not None:
                operation = inserted["operation_id"]
                return Claim(Outcome.STARTED, user_id, route, key, token, operation_id=operation)
            row = cur.execute(
                """SELECT request_hash, state, status, body,
                    claimed_at <= now() - %(abandoned)s AS abandoned
                FROM idempotency_keys
                WHERE user_id = %(user_id)s AND route = %(route)s AND key = %(key)s""",
                params,
            ).fetchone()
            assert row is not None, "the conflicting row is locked by the upsert"
            if row["request_hash"] != request_hash:
                return Claim(Outcome.MISMATCH, user_id, route, key)
            if row["state"] == "done":
                return Claim(Outcome.REPLAY, user_id, route, key, None, row["status"], row["body"])
            if row["state"] == "running" and not row["abandoned"]:
                return Claim(Outcome.RUNNING, user_id, route, key)
            # Released by a failed attempt, or abandoned: run again under the same operation id
            # (a row stored before operation ids existed gets one now).
            taken = cur.execute(
                """UPDATE idempotency_keys SET state = 'running', claim = %(claim)s,
                    claimed_at = now(), operation_id = coalesce(operation_id, %(operation)s)
                WHERE user_id = %(user_id)s AND route = %(route)s AND key = %(key)s
                RETURNING operation_id""",
                params,
            ).fetchone()
            assert taken is not None
            return Claim(
                Outcome.STARTED, user_id, route, key, token, operation_id=taken["operation_id"]
            )

    def complete(self, claim: Claim, status: int, body: Any) -> bool:
        """Store the response of a claimed request; False if the claim was taken over."""
        with self.users.transaction() as cur:
            return store_response(cur, None, claim, status, body)

    def release(self, claim: Claim) -> None:
        """Give the key back (the request failed): the next request with it runs again.

        The record, and with it the operation id, is kept: the failed attempt may have
        committed its effect even though its answer was lost, and a retry must name the same
        operation rather than make a second one.
        """
        with self.users.transaction() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET state = 'released' "
                "WHERE user_id = %s AND route = %s AND key = %s AND claim = %s "
                "AND state = 'running'",
                (claim.user_id, claim.route, claim.key, claim.token),
            )

    def purge_expired(self) -> int:
        """Forget keys older than the retention; returns how many."""
        with self.users.transaction() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE created_at <= now() - %s", (self.retention,)
            )
            return cur.rowcount

    def _maybe_purge(self) -> None:
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            self.purge_expired()


def store_response(
    cur: psycopg.Cursor[Any], schema: str | None, claim: Claim, status: int, body: Any
) -> bool:
    """Store a claimed request's response with ``cur`` (in whatever transaction it is in);
    False if the claim was taken over. ``schema`` qualifies the table when the cursor's
    connection does not search the users' schema."""
    table = (
        sql.Identifier(schema, "idempotency_keys") if schema else sql.Identifier("idempotency_keys")
    )
    cur.execute(
        sql.SQL(
            """UPDATE {} SET state = 'done', status = %s, body = %s, completed_at = now()
            WHERE user_id = %s AND route = %s AND key = %s AND claim = %s
            AND state = 'running' RETURNING 1"""
        ).format(table),
        (status, Jsonb(body), claim.user_id, claim.route, claim.key, claim.token),
    )
    return cur.fetchone() is not None
