"""Users: accounts and their personal data, in PostgreSQL, never in events (rules §7).

`UserStore` owns the users table and the connection pool the API's other shared state uses
(refresh tokens, rate limits, idempotency keys). The names the composition root wires up are
importable from here: `TokenService`, `RateLimiter`, `IdempotencyStore`, `AuthUser`,
`InvalidToken`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.idempotency_keys import IdempotencyStore
from adapters.jwt_tokens import AuthUser, InvalidToken, TokenPair, TokenService
from adapters.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords
from adapters.persistence import CONNECT_TIMEOUT_SECONDS, RECONNECT_SECONDS, DatabaseSettings
from adapters.rate_limits import LIMITS, Limit, RateLimited, RateLimiter

__all__ = [
    "LIMITS",
    "AuthUser",
    "DuplicateUser",
    "IdempotencyStore",
    "InvalidToken",
    "Limit",
    "Logins",
    "RateLimited",
    "RateLimiter",
    "TokenPair",
    "TokenService",
    "UserRecord",
    "UserStore",
    "email_key",
    "normalise_email",
]

# Invisible characters: controls (Cc) and format characters (Cf: bidirectional overrides and
# marks, zero-width spaces and joiners). None belongs in an address; they only disguise one.
FORBIDDEN_IN_EMAIL = ("Cc", "Cf")

USERNAME = re.compile(r"[a-z0-9_]{3,20}")
ROLES = ("user", "admin")
_COLUMNS = "id, email, username, role, created_at, erased_at, password_hash"


@dataclass(frozen=True)
class UserRecord:
    id: UUID
    email: str | None
    username: str | None
    role: str
    created_at: datetime
    erased_at: datetime | None
    password_hash: str | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


def normalise_email(email: str) -> str:
    """An email as stored and compared (rules §7): NFKC (full-width look-alikes fold to ASCII),
    trimmed; `ValueError` if it holds a control or bidirectional-override character.

    The case is kept for display; identity ignores it (``lower(email)``, which is also what the
    unique index is built on), so ``ＡＤＡ@example.com`` and ``ada@example.com`` are one account.
    """
    folded = unicodedata.normalize("NFKC", email)
    if any(unicodedata.category(c) in FORBIDDEN_IN_EMAIL for c in folded):
        raise ValueError("an email may not contain control or bidirectional-override characters")
    return folded.strip()


def email_key(email: str) -> str:
    """The case-free identity of an email (NFKC, trimmed, lower-cased), for keys outside SQL."""
    return normalise_email(email).lower()


class DuplicateUser(Exception):
    """The email (case-insensitively) or the username is already registered (409)."""

    def __init__(self, field_name: str) -> None:
        super().__init__(f"that {field_name} is already registered")
        self.field = field_name


class UserStore:
    """The users table, through a small connection pool of its own."""

    def __init__(
        self, db: DatabaseSettings, *, passwords: Passwords | None = None, pool_size: int = 5
    ) -> None:
        self.db = db
        self.passwords = passwords or Passwords()
        # Called with a user's id after their role changes or they are erased (the token
        # service forgets the sessions it had checked for them).
        self.on_change: list[Callable[[UUID], None]] = []
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            db.url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "options": f"-c search_path={db.schema}",
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            },
            open=True,
            timeout=CONNECT_TIMEOUT_SECONDS,
            # After a database restart every pooled connection is dead: checking each as it
            # is handed out discards those, so the service recovers by itself (rules §7).
            check=ConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_SECONDS,
        )

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """A cursor in one transaction: committed on exit, rolled back on an exception."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    # -- accounts --------------------------------------------------------------------------

    def register(
        self, email: str, username: str, password: str, *, role: str = "user"
    ) -> UserRecord:
        """A new account; `DuplicateUser` if the email or username is taken."""
        email = normalise_email(email)
        if not USERNAME.fullmatch(username):
            raise ValueError("a username is 3–20 of a–z, 0–9 and _")
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise ValueError("a password is 8–128 characters")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        password_hash = self.passwords.hash(password)
        try:
            with self.transaction() as cur:
                row = cur.execute(
                    f"INSERT INTO users (id, email, username, password_hash, role) "
                    f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (uuid4(), email, username, password_hash, role),
                ).fetchone()
        except psycopg.errors.UniqueViolation as e:
            index = e.diag.constraint_name or ""
            raise DuplicateUser("username" if "username" in index else "email") from None
        assert row is not None
        return UserRecord(**row)

    def authenticate(self, email: str, password: str) -> UserRecord | None:
        """The user whose email and password these are, or None (in the same time either way)."""
        user = self.by_email(email)
        if not self.passwords.verify(user.password_hash if user else None, password):
            return None
        assert user is not None and user.password_hash is not None
        if self.passwords.needs_rehash(user.password_hash):
            with self.transaction() as cur:
                cur.execute(
                    "UPDATE users SET password_hash = %s WHERE id = %s",
                    (self.passwords.hash(password), user.id),
                )
        return user

    def get(self, user_id: UUID) -> UserRecord | None:
        """A user by id, erased ones included (the ledger still refers to them)."""
        return self._one(f"SELECT {_COLUMNS} FROM users WHERE id = %s", user_id)

    def by_email(self, email: str) -> UserRecord | None:
        """The account an email names in any spelling (NFKC, case); None for none or an
        email no account can have (one with a control or bidirectional character)."""
        try:
            normalised = normalise_email(email)
        except ValueError:
            return None
        return self._one(f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower(%s)", normalised)

    def set_role(self, email: str, role: str) -> UserRecord | None:
        """Make the user with this email a ``user`` or an ``admin``; None if there is none."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        try:
            normalised = normalise_email(email)
        except ValueError:
            return None  # no account can have such an email
        with self.transaction() as cur:
            row = cur.execute(
                f"UPDATE users SET role = %s WHERE lower(email) = lower(%s) RETURNING {_COLUMNS}",
                (role, normalised),
            ).fetchone()
        if row is None:
            return None
        self._changed(row["id"])
        return UserRecord(**row)

    def erase(self, user_id: UUID) -> UserRecord | None:
        """Forget a user's personal data and end their sessions; the id (and ledger) remain.

        Whether erasure is allowed (rules §7: not while the wallet holds tokens) is the
        caller's rule to check first.
        """
        with self.transaction() as cur:
            row = cur.execute(
                f"UPDATE users SET email = NULL, username = NULL, password_hash = NULL, "
                f"erased_at = coalesce(erased_at, now()) WHERE id = %s RETURNING {_COLUMNS}",
                (user_id,),
            ).fetchone()
            cur.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE user_id = %s AND revoked_at IS NULL",
                (user_id,),
            )
        self._changed(user_id)
        return UserRecord(**row) if row else None

    def _changed(self, user_id: UUID) -> None:
        for listener in self.on_change:
            listener(user_id)

    def _one(self, sql: str, *params: Any) -> UserRecord | None:
        row = self.read_one(sql, *params)
        return UserRecord(**row) if row else None

    def read_one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        """One row of one statement: a single round trip (the connections autocommit, so a
        lone statement needs no BEGIN and COMMIT around it)."""
        with self.pool.connection() as conn:
            return conn.execute(sql, params).fetchone()


class Logins:
    """The one sign-in check, for the JSON API's login and the admin pages' alike (rules §7):
    the per-address limit, the failed-login limits per account, then the password."""

    def __init__(self, users: UserStore, limits: RateLimiter) -> None:
        self.users, self.limits = users, limits

    def authenticate(self, email: str, password: str, address: str) -> UserRecord | None:
        """The account these credentials open, or None (a failure, counted); `RateLimited`
        (429) when the address or the account has used its attempts."""
        self.limits.check("login", address)
        try:
            account = email_key(email)
        except ValueError:
            return None  # no account can have such an email: nothing to count against
        self.limits.check_login_failures(account, address)
        user = self.users.authenticate(email, password)
        if user is None:
            self.limits.count_login_failure(account, address)
        return user
