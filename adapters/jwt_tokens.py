"""Access and refresh tokens: JWT HS256, with refresh-token families kept in PostgreSQL.

A login starts a *family* (a session). Each refresh uses up its token and issues the next one
in the same family (rotation). Presenting a used refresh token again means two parties hold
it, so the whole family is revoked (reuse detection, rules §7); logout revokes it too. Access
tokens name their family (``sid``), so revoking a session also ends its access tokens at once.

Expiry is checked against the wall clock, never the application's business clock.

Checking a session costs a query on every request, so a process keeps each session it found
live for ``AUTH_CACHE_SECONDS`` (2 s): a logout, a reuse, an erasure or a role change is
seen at once by the process that made it and at most that long after by the others.
Verifying an access token's signature and claims gives the same answer every time until it
expires, so a process also keeps each access token it verified until its ``exp``: a request
with a token seen before pays neither the HMAC nor the decoding (a sixth of a wallet read's
CPU), and expiry still applies to the second.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import jwt
import psycopg

if TYPE_CHECKING:
    from adapters.settings import ServiceSettings
    from adapters.users import UserStore

ALGORITHM = "HS256"
ISSUER = "peerpush"
ACCESS = "access"
REFRESH = "refresh"
# A browser session on the admin pages (a cookie): never accepted where an access token is.
BROWSER = "browser"
BROWSER_SESSION_TTL = timedelta(hours=8)
# Used and revoked refresh tokens are kept this long past their expiry, then purged.
REFRESH_RETENTION = timedelta(days=1)
PURGE_EVERY_SECONDS = 600.0
# The most sessions a process remembers as checked, and access tokens as verified; past it the
# memory starts afresh.
MAX_CACHED_SESSIONS = 100_000
MAX_CACHED_TOKENS = 100_000


@dataclass(frozen=True)
class AuthUser:
    """The caller, as a verified access token and the users table name them."""

    id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    """A missing, expired, tampered, wrong-type, revoked or reused token (401)."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    token_type: str = "bearer"


class TokenService:
    """Issues, rotates, revokes and verifies tokens for the users in ``users``."""

    def __init__(
        self,
        config: ServiceSettings,
        users: UserStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not config.jwt_secret:
            raise ValueError("no JWT signing key: set JWT_SECRET (ServiceSettings.jwt_secret)")
        self.secret: str = config.jwt_secret
        self.access_ttl = timedelta(minutes=config.access_token_minutes)
        self.refresh_ttl = timedelta(days=config.refresh_token_days)
        self.users = users
        self._next_purge = 0.0
        self.cache_seconds = config.auth_cache_seconds
        self._monotonic = monotonic
        self._wall = wall  # expiry: the wall clock, in seconds since the epoch (JWT's `exp`)
        # access token -> (user, session, exp): tokens whose signature and claims checked out
        self._verified: dict[str, tuple[UUID, UUID, int]] = {}
        # (user, session) -> (trusted until, role): sessions this process found live
        self._checked: dict[tuple[UUID, UUID], tuple[float, str]] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a check that began before one is not remembered (it may
        # have read the session just before it ended).
        self._generation = 0
        users.on_change.append(self.forget_user)

    # -- sessions --------------------------------------------------------------------------

    def issue(self, user_id: UUID, role: str) -> TokenPair:
        """Start a new session for a user who has just proved who they are."""
        now, family, jti = _now(), uuid4(), uuid4()
        with self.users.transaction() as cur:
            self._insert_refresh(cur, jti, family, user_id, now)
        self._maybe_purge()
        return self._pair(user_id, role, family, jti, now)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Use up ``refresh_token`` and return the session's next pair.

        A token that was already used revokes its whole family and is refused.
        """
        claims = self._decode(refresh_token, REFRESH)
        jti, now = UUID(claims["jti"]), _now()
        with self.users.transaction() as cur:
            row = cur.execute(
                "SELECT r.family, r.user_id, r.used_at, r.revoked_at, u.role, u.erased_at "
                "FROM refresh_tokens r JOIN users u ON u.id = r.user_id "
                "WHERE r.jti = %s FOR UPDATE OF r",
                (jti,),
            ).fetchone()
            if row is None or str(row["user_id"]) != claims["sub"]:
                raise InvalidToken("the refresh token is not one we issued")
            if row["revoked_at"] is not None:
                raise InvalidToken("the session has been revoked")
            if row["erased_at"] is not None:
                raise InvalidToken("the account no longer exists")
            reused = row["used_at"] is not None
            if reused:
                _revoke_family(cur, row["family"], now)
            else:
                cur.execute("UPDATE refresh_tokens SET used_at = %s WHERE jti = %s", (now, jti))
                next_jti = uuid4()
                self._insert_refresh(cur, next_jti, row["family"], row["user_id"], now)
        # Raised after the commit: the family's revocation must stick.
        if reused:
            self.forget_session(row["user_id"], row["family"])
            raise InvalidToken("the refresh token was already used: the session is revoked")
        return self._pair(row["user_id"], row["role"], row["family"], next_jti, now)

    def revoke(self, refresh_token: str) -> None:
        """Log out: end the session ``refresh_token`` belongs to (even if it has expired)."""
        claims = self._decode(refresh_token, REFRESH, verify_exp=False)
        with self.users.transaction() as cur:
            row = cur.execute(
                "SELECT family FROM refresh_tokens WHERE jti = %s AND user_id = %s",
                (UUID(claims["jti"]), UUID(claims["sub"])),
            ).fetchone()
            if row is not None:
                _revoke_family(cur, row["family"], _now())
        if row is not None:
            self.forget_session(UUID(claims["sub"]), row["family"])

    # -- browser sessions (the admin pages' cookie) ------------------------------------------

    def issue_browser(self, user_id: UUID, role: str) -> tuple[str, int]:
        """A browser session for a user who has just proved who they are: the cookie's value
        and its lifetime in seconds. Like a login, it starts a session family of its own (one
        refresh record no token is ever issued for), so ending the family ends it."""
        now, family = _now(), uuid4()
        ttl = min(BROWSER_SESSION_TTL, self.refresh_ttl)
        with self.users.transaction() as cur:
            self._insert_refresh(cur, uuid4(), family, user_id, now)
        claims = {"sub": str(user_id), "role": role, "typ": BROWSER, "sid": str(family)}
        return self._encode(claims, now, ttl, uuid4()), int(ttl.total_seconds())

    def verify_browser(self, token: str) -> AuthUser:
        """The user a browser session names, if it is genuine, current and not ended."""
        return self._live(self._decode(token, BROWSER))

    def end_browser(self, token: str) -> None:
        """Sign out: end the browser session (even an expired one)."""
        claims = self._decode(token, BROWSER, verify_exp=False)
        try:
            family = UUID(str(claims.get("sid")))
        except ValueError:
            raise InvalidToken("the token is not valid") from None
        with self.users.transaction() as cur:
            _revoke_family(cur, family, _now())

    def form_token(self, binding: str) -> str:
        """The CSRF token a form must send back: a MAC of what the browser's cookie holds (the
        session, or the sign-in form's nonce), which another site can neither read nor make."""
        mac = hmac.new(self.secret.encode(), f"csrf:{binding}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def form_token_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(self.form_token(binding), token)

    # -- verification ----------------------------------------------------------------------

    def verify_access(self, token: str) -> AuthUser:
        """The caller an access token names, if it is genuine, current and its session live.

        The role comes from the users table, so a promotion or demotion applies at once.
        """
        user_id, session, trusted = self._access(token)
        if trusted is not None:
            return trusted
        generation = self._generation
        user = self._check_session(user_id, session)
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._checked) >= MAX_CACHED_SESSIONS:
                    self._checked.clear()
                if generation == self._generation:
                    expires = self._monotonic() + self.cache_seconds
                    self._checked[(user_id, session)] = (expires, user.role)
        return user

    def _check_session(self, user_id: UUID, session: UUID) -> AuthUser:
        """One query: the user still exists and the session is not ended."""
        row = self.users.read_one(
            "SELECT u.role, u.erased_at, EXISTS (SELECT 1 FROM refresh_tokens r "
            "  WHERE r.family = %s AND r.user_id = u.id AND r.revoked_at IS NULL) AS live "
            "FROM users u WHERE u.id = %s",
            session,
            user_id,
        )
        if row is None or row["erased_at"] is not None:
            raise InvalidToken("the account no longer exists")
        if not row["live"]:
            raise InvalidToken("the session has ended; log in again")
        return AuthUser(id=user_id, role=row["role"])

    def _live(self, claims: dict[str, Any]) -> AuthUser:
        """The user a browser session's claims name, checked in the database every time (the
        admin pages are few and rare; their sign-out must apply at once in every process)."""
        user_id, session = _session_of(claims)
        return self._check_session(user_id, session)

    def trusted_access(self, token: str) -> AuthUser | None:
        """The caller, if the token is genuine and current and its session was found live
        less than ``AUTH_CACHE_SECONDS`` ago; None when the session must be checked
        (`verify_access`). No I/O: the HTTP layer calls it on the event loop."""
        return self._access(token)[2]

    def _access(self, token: str) -> tuple[UUID, UUID, AuthUser | None]:
        """(user, session, the caller if the session is trusted without a check)."""
        user_id, session = self._verified_access(token)
        checked = self._checked.get((user_id, session))
        if checked is not None and self._monotonic() < checked[0]:
            return user_id, session, AuthUser(id=user_id, role=checked[1])
        return user_id, session, None

    def _verified_access(self, token: str) -> tuple[UUID, UUID]:
        """(user, session) of a genuine, current access token: decoded and verified once, then
        remembered until it expires (a token's signature and claims never change; whether its
        session is still live is the `_checked` memory's question, asked on every request)."""
        known = self._verified.get(token)
        if known is not None and self._wall() < known[2]:
            return known[0], known[1]
        claims = self._decode(token, ACCESS)
        user_id, session = _session_of(claims)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[token] = (user_id, session, int(claims["exp"]))
        return user_id, session

    def forget_session(self, user_id: UUID, session: UUID) -> None:
        """Check this session in the database again on its next request (it was revoked)."""
        with self._lock:
            self._generation += 1
            self._checked.pop((user_id, session), None)

    def forget_user(self, user_id: UUID) -> None:
        """Check every session of this user again (erased, or their role changed)."""
        with self._lock:
            self._generation += 1
            for key in [k for k in self._checked if k[0] == user_id]:
                del self._checked[key]

    def _decode(self, token: str, typ: str, *, verify_exp: bool = True) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # expiry is checked below against `wall`, the clock the token memory uses
                options={
                    "require": ["exp", "iat", "iss", "sub", "jti", "typ"],
                    "verify_exp": False,
                },
            )
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is not valid") from None
        try:
            expires = int(claims["exp"])
        except (TypeError, ValueError):
            raise InvalidToken("the token is not valid") from None
        if verify_exp and expires <= self._wall():
            raise InvalidToken("the token has expired")
        if claims["typ"] != typ:
            raise InvalidToken(f"expected an {typ} token")
        try:
            UUID(str(claims["sub"]))
            UUID(str(claims["jti"]))
        except ValueError:
            raise InvalidToken("the token is not valid") from None
        return claims

    # -- issuing ---------------------------------------------------------------------------

    def _pair(self, user_id: UUID, role: str, family: UUID, jti: UUID, now: datetime) -> TokenPair:
        access = self._encode(
            {"sub": str(user_id), "role": role, "typ": ACCESS, "sid": str(family)},
            now,
            self.access_ttl,
            uuid4(),
        )
        refresh = self._encode(
            {"sub": str(user_id), "role": role, "typ": REFRESH}, now, self.refresh_ttl, jti
        )
        return TokenPair(access, refresh, int(self.access_ttl.total_seconds()))

    def _encode(self, claims: dict[str, Any], now: datetime, ttl: timedelta, jti: UUID) -> str:
        payload = {**claims, "iss": ISSUER, "iat": now, "exp": now + ttl, "jti": str(jti)}
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM)

    def _insert_refresh(
        self, cur: psycopg.Cursor[Any], jti: UUID, family: UUID, user_id: UUID, now: datetime
    ) -> None:
        cur.execute(
            "INSERT INTO refresh_tokens (jti, family, user_id, issued_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (jti, family, user_id, now, now + self.refresh_ttl),
        )

    def purge_expired(self) -> int:
        """Forget refresh tokens long past their expiry; returns how many."""
        with self.users.transaction() as cur:
            cur.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < %s", (_now() - REFRESH_RETENTION,)
            )
            return cur.rowcount

    def _maybe_purge(self) -> None:
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            self.purge_expired()


def _revoke_family(cur: psycopg.Cursor[Any], family: UUID, now: datetime) -> None:
    cur.execute(
        "UPDATE refresh_tokens SET revoked_at = %s WHERE family = %s AND revoked_at IS NULL",
        (now, family),
    )


def _now() -> datetime:
    """The wall clock, whole seconds (JWT times are whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


def _session_of(claims: dict[str, Any]) -> tuple[UUID, UUID]:
    """(user, session family) of a decoded token's claims."""
    try:
        session = UUID(str(claims.get("sid")))
    except ValueError:
        raise InvalidToken("the token is not valid") from None
    return UUID(claims["sub"]), session
