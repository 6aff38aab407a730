"""PLACEHOLDER — being written (users, passwords, JWT, rate limits, idempotency keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class AuthUser:
    id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    """A missing, expired, tampered or wrong-type token (401)."""


class UserStore:
    def __init__(self, db: Any) -> None:
        self.db = db

    def close(self) -> None:
        pass


class TokenService:
    def __init__(self, config: Any, users: UserStore) -> None:
        self.config, self.users = config, users

    def verify_access(self, token: str) -> AuthUser:
        raise InvalidToken("not implemented yet")


class RateLimiter:
    def __init__(self, users: UserStore, *, enabled: bool) -> None:
        self.enabled = enabled

    def hit(self, bucket: str, key: str, limit: int, per_seconds: int) -> int | None:
        return None


class IdempotencyStore:
    def __init__(self, users: UserStore) -> None:
        self.users = users
