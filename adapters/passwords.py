"""Password hashing with argon2id (rules §7), through argon2-cffi.

Hashes carry their own parameters, so raising the cost later only needs ``needs_rehash`` on
the next successful login.
"""

from __future__ import annotations

from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


class Passwords:
    """Hashes and checks passwords; never stores or logs one."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher(type=Type.ID)

    @cached_property
    def _decoy(self) -> str:
        """Checked against when the email is unknown, so both failures take the same time."""
        return self.hasher.hash("not a password anyone has")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash, spends the same time and says no."""
        try:
            return self.hasher.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)
