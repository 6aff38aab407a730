"""Request rate limits (rules §7), counted in PostgreSQL so every API process shares them.

Each (bucket, key) has one fixed window that starts at its first hit and lasts the limit's
period; one atomic upsert counts a hit and opens a new window when the old one has passed.
Windows are timed by the database's wall clock, the same for every process.

Operators relax limits by setting (read by ``adapters.settings``): ``RATE_LIMITS=off`` turns
them all off, ``RATE_LIMIT_<BUCKET>=<count>/<seconds>`` (e.g. ``RATE_LIMIT_LOGIN=20/60``)
replaces one bucket's limit and ``RATE_LIMIT_<BUCKET>=off`` turns it off.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.users import UserStore

ENV_PREFIX = "RATE_LIMIT_"
PURGE_EVERY_SECONDS = 600.0


@dataclass(frozen=True)
class Limit:
    count: int
    per_seconds: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.per_seconds < 1:
            raise ValueError(f"a rate limit needs a positive count and period, not {self}")


# rules §7. The key is the client address for the anonymous routes and the user for the rest;
# the login_* buckets count failed logins only (see `RateLimiter.check_login_failures`).
LIMITS: dict[str, Limit] = {
    "login": Limit(5, 60),
    "login_account": Limit(10, 900),  # per (email, client address)
    "login_email": Limit(100, 900),  # per email, from every address
    "register": Limit(2, 60),
    "refresh": Limit(10, 60),
    "deposit_checkout": Limit(10, 3600),
    "join": Limit(30, 60),  # joins by invite code, per user: codes cannot be probed at speed
}


class RateLimited(Exception):
    """Over a limit; the API answers 429 with ``Retry-After`` (mapped in ``api.errors``)."""

    def __init__(self, bucket: str, retry_after: int) -> None:
        super().__init__(f"too many {bucket.replace('_', ' ')} requests; retry in {retry_after} s")
        self.bucket, self.retry_after = bucket, retry_after


class RateLimiter:
    """Counts requests per (bucket, key) and refuses those over the bucket's limit."""

    def __init__(
        self,
        users: UserStore,
        *,
        enabled: bool,
        overrides: Mapping[str, Limit | None] | None = None,
    ) -> None:
        self.users = users
        self.enabled = enabled
        self.overrides = dict(overrides or {})
        self._next_purge = 0.0

    def check(
        self, bucket: str, key: str, limit: int | None = None, per_seconds: int | None = None
    ) -> None:
        """Count one request; raise `RateLimited` (429, ``Retry-After``) if it is over the limit.

        ``limit``/``per_seconds`` default to ``LIMITS[bucket]``; an operator's override wins.
        """
        retry_after = self.hit(bucket, key, limit, per_seconds)
        if retry_after is not None:
            raise RateLimited(bucket, retry_after)

    def hit(
        self, bucket: str, key: str, limit: int | None = None, per_seconds: int | None = None
    ) -> int | None:
        """Count one request; the whole seconds to wait if it is over the limit, else None."""
        rule = self.limit_for(bucket, limit, per_seconds)
        if not self.enabled or rule is None:
            return None
        with self.users.transaction() as cur:
            row = cur.execute(
                """INSERT INTO rate_limit_hits AS h (bucket, key, window_start, count)
                VALUES (%(bucket)s, %(key)s, clock_timestamp(), 1)
                ON CONFLICT (bucket, key) DO UPDATE SET
                    window_start = CASE WHEN h.window_start + %(period)s <= EXCLUDED.window_start
                        THEN EXCLUDED.window_start ELSE h.window_start END,
                    count = CASE WHEN h.window_start + %(period)s <= EXCLUDED.window_start
                        THEN 1 ELSE least(h.count + 1, 2147483647) END
                RETURNING count,
                    extract(epoch FROM window_start + %(period)s - clock_timestamp()) AS left""",
                {"bucket": bucket, "key": key, "period": _interval(rule.per_seconds)},
            ).fetchone()
        self._maybe_purge()
        assert row is not None
        if row["count"] <= rule.count:
            return None
        return max(1, math.ceil(float(row["left"])))

    def over(self, bucket: str, key: str) -> int | None:
        """Without counting: the whole seconds to wait if (bucket, key) has used its limit."""
        rule = self.limit_for(bucket)
        if not self.enabled or rule is None:
            return None
        with self.users.transaction() as cur:
            row = cur.execute(
                """SELECT count,
                    extract(epoch FROM window_start + %(period)s - clock_timestamp()) AS left
                FROM rate_limit_hits
                WHERE bucket = %(bucket)s AND key = %(key)s
                    AND window_start + %(period)s > clock_timestamp()""",
                {"bucket": bucket, "key": key, "period": _interval(rule.per_seconds)},
            ).fetchone()
        if row is None or row["count"] < rule.count:
            return None
        return max(1, math.ceil(float(row["left"])))

    def check_login_failures(self, account: str, address: str) -> None:
        """Refuse a login (`RateLimited`) for an email that failed too often: from this
        address (``login_account``), or from every address together (``login_email``).

        ``account`` is the normalised email. Per pair, so a rival guessing from one address
        does not lock the owner out elsewhere; per email, so guessing spread over many
        addresses still stops.
        """
        for bucket, key in _login_keys(account, address):
            retry_after = self.over(bucket, key)
            if retry_after is not None:
                raise RateLimited(bucket, retry_after)

    def count_login_failure(self, account: str, address: str) -> None:
        """Count one wrong email or password against the ``login_*`` buckets."""
        for bucket, key in _login_keys(account, address):
            self.hit(bucket, key)

    def limit_for(
        self, bucket: str, limit: int | None = None, per_seconds: int | None = None
    ) -> Limit | None:
        """The limit in force for ``bucket``; None when an operator turned it off."""
        if bucket in self.overrides:
            return self.overrides[bucket]
        if limit is not None:
            return Limit(limit, per_seconds or 60)
        try:
            return LIMITS[bucket]
        except KeyError:
            raise ValueError(f"no limit named {bucket!r}: pass limit and per_seconds") from None

    def reset(self) -> None:
        """Forget every count (tests, or an operator after an incident)."""
        with self.users.transaction() as cur:
            cur.execute("DELETE FROM rate_limit_hits")

    def purge_expired(self) -> int:
        """Drop windows that ended long ago (no limit is longer than a day)."""
        with self.users.transaction() as cur:
            cur.execute(
                "DELETE FROM rate_limit_hits WHERE window_start < clock_timestamp() - %s",
                (_interval(86400),),
            )
            return cur.rowcount

    def _maybe_purge(self) -> None:
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            self.purge_expired()


def limits_from_env(env: Mapping[str, str]) -> dict[str, Limit | None]:
    """``RATE_LIMIT_LOGIN=20/60`` → ``{"login": Limit(20, 60)}``; ``=off`` → ``None``."""
    found: dict[str, Limit | None] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or not value.strip():
            continue
        bucket = name[len(ENV_PREFIX) :].lower()
        if value.strip().lower() == "off":
            found[bucket] = None
            continue
        count, _, seconds = value.partition("/")
        try:
            found[bucket] = Limit(int(count), int(seconds or 60))
        except ValueError:
            raise ValueError(f"{name}={value!r}: expected <count>/<seconds> or off") from None
    return found


def _login_keys(account: str, address: str) -> list[tuple[str, str]]:
    """The emails are hashed: the counts are not a second copy of personal data (erasure)."""
    digest = hashlib.sha256(account.encode()).hexdigest()
    return [("login_account", f"{digest}|{address}"), ("login_email", digest)]


def _interval(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)
