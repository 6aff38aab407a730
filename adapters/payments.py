"""Payments: which Stripe to talk to, the checkout sessions we opened, and shared locks.

``build_payment_gateway`` picks the real Stripe (``STRIPE_MODE=stripe``) or the simulated one
(the embedded default). :class:`PgCheckoutSessions` keeps deposit checkouts in PostgreSQL so
every API process counts the same open sessions against the daily limit (rules §2), and
:class:`PgLocks` gives workers and webhook handlers advisory locks shared by every process.
Both open a connection per use: they are called a few times per deposit or worker pass,
and hold nothing between calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from adapters.persistence import CONNECT_TIMEOUT_SECONDS, DatabaseSettings
from adapters.settings import ServiceSettings
from adapters.simulated_stripe import SimulatedStripe
from adapters.stripe_gateway import StripeGateway
from application.ports import CheckoutSession, PaymentGateway

LOCK_CLASS = 0x70617973  # "pays": advisory locks of the payment flows, keyed per schema
LOCK_WAIT = "10s"


def build_payment_gateway(
    config: ServiceSettings, db: DatabaseSettings | None = None
) -> PaymentGateway:
    """The gateway ``config.stripe_mode`` names; simulated Stripe is refused in production.

    The simulated Stripe keeps the money it moves in ``db`` (every process sees the same, as
    Stripe would), so ``peerpush reconcile`` can reconcile against it."""
    if config.stripe_mode == "stripe":
        return StripeGateway(
            api_key=config.stripe_api_key,
            webhook_secret=config.stripe_webhook_secret,
            connect_webhook_secret=config.stripe_connect_webhook_secret,
            api_base=config.stripe_api_base,
        )
    if config.stripe_mode != "simulated":
        raise ValueError(f"STRIPE_MODE must be stripe or simulated, not {config.stripe_mode!r}")
    if config.production:
        raise RuntimeError("simulated Stripe is refused when ENV=production")
    return SimulatedStripe(
        base_url=config.base_url,
        webhook_secret=config.stripe_webhook_secret,
        connect_webhook_secret=config.stripe_connect_webhook_secret,
        db=db,
    )


def _connect(db: DatabaseSettings, *, autocommit: bool) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(
        db.url,
        autocommit=autocommit,
        row_factory=dict_row,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        options=f"-c search_path={db.schema}",
    )


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _session(row: dict[str, Any]) -> CheckoutSession:
    return CheckoutSession(
        session_id=row["session_id"],
        deposit_id=str(row["deposit_id"]),
        user_id=str(row["user_id"]),
        tokens=int(row["tokens"]),
        cents=int(row["cents"]),
        checkout_url=row["checkout_url"],
        success_url=row["success_url"],
        cancel_url=row["cancel_url"],
        created_at=row["created_at"],
        status=row["status"],
        payment_intent_id=row["payment_intent_id"],
    )


class _Book:
    """One user's sessions inside the transaction that holds their checkout lock."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], user_id: UUID) -> None:
        self.conn, self.user_id = conn, user_id

    def find(self, deposit_id: str) -> CheckoutSession | None:
        row = self.conn.execute(
            "SELECT * FROM checkout_sessions WHERE deposit_id = %s AND user_id = %s",
            (_uuid(deposit_id), self.user_id),
        ).fetchone()
        return _session(row) if row else None

    def open_tokens(self, since: datetime) -> int:
        row = self.conn.execute(
            "SELECT coalesce(sum(tokens), 0) AS tokens FROM checkout_sessions "
            "WHERE user_id = %s AND status = 'open' AND created_at > %s",
            (self.user_id, since),
        ).fetchone()
        return int(row["tokens"]) if row else 0

    def record(self, session: CheckoutSession) -> None:
        self.conn.execute(
            "INSERT INTO checkout_sessions (session_id, deposit_id, user_id, tokens, cents, "
            "status, checkout_url, success_url, cancel_url, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                session.session_id,
                UUID(session.deposit_id),
                UUID(session.user_id),
                session.tokens,
                session.cents,
                session.status,
                session.checkout_url,
                session.success_url,
                session.cancel_url,
                session.created_at,
            ),
        )


class PgCheckoutSessions:
    """The ``checkout_sessions`` table (migration 0005)."""

    def __init__(self, db: DatabaseSettings) -> None:
        self.db = db

    @contextmanager
    def exclusive(self, user_id: str) -> Iterator[_Book]:
        """One transaction holding the user's checkout lock: the limit is checked and the
        new session recorded without another checkout of theirs in between."""
        user = UUID(user_id)
        with _connect(self.db, autocommit=False) as conn:
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (LOCK_CLASS, f"{self.db.schema}:checkout:{user}"),
            )
            yield _Book(conn, user)

    def get(self, session_id: str) -> CheckoutSession | None:
        with _connect(self.db, autocommit=True) as conn:
            row = conn.execute(
                "SELECT * FROM checkout_sessions WHERE session_id = %s", (session_id,)
            ).fetchone()
        return _session(row) if row else None

    def finish(
        self,
        *,
        status: str,
        session_id: str | None = None,
        deposit_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> None:
        if status not in ("complete", "expired"):
            raise ValueError(f"a session finishes complete or expired, not {status!r}")
        with _connect(self.db, autocommit=True) as conn:
            conn.execute(
                "UPDATE checkout_sessions SET "
                "status = CASE WHEN status = 'open' THEN %s ELSE status END, "
                "payment_intent_id = coalesce(payment_intent_id, %s), "
                "finished_at = coalesce(finished_at, now()) "
                "WHERE session_id = %s OR deposit_id = %s",
                (status, payment_intent_id, session_id, _uuid(deposit_id)),
            )

    def owner_of(self, payment_intent_id: str) -> str | None:
        with _connect(self.db, autocommit=True) as conn:
            row = conn.execute(
                "SELECT user_id FROM checkout_sessions WHERE payment_intent_id = %s LIMIT 1",
                (payment_intent_id,),
            ).fetchone()
        return str(row["user_id"]) if row else None


class PgLocks:
    """PostgreSQL advisory locks, named, per schema, shared by every process."""

    def __init__(self, db: DatabaseSettings) -> None:
        self.db = db

    def _key(self, name: str) -> tuple[int, str]:
        return LOCK_CLASS, f"{self.db.schema}:{name}"

    @contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        with _connect(self.db, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got", self._key(name)
            ).fetchone()
            got = bool(row and row["got"])
            try:
                yield got
            finally:
                if got:
                    _unlock(conn, self._key(name))

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        with _connect(self.db, autocommit=True) as conn:
            conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", self._key(name))
            try:
                yield
            finally:
                _unlock(conn, self._key(name))


def _unlock(conn: psycopg.Connection[dict[str, Any]], key: tuple[int, str]) -> None:
    # A broken connection has already released the lock (locks die with their session).
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
