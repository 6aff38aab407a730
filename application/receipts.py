"""What a command tells its caller: always the stream position of its last event.

A client passes that position back to a query to read its own writes (rules §8, issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.challenge import Participant


@dataclass(frozen=True)
class Receipt:
    position: int


@dataclass(frozen=True)
class ChallengeCreated(Receipt):
    challenge_id: UUID
    invite_code: str


@dataclass(frozen=True)
class Joined(Receipt):
    challenge_id: UUID
    joined: bool
    # The user's participation as the command left it (new, or the one they already had).
    participant: Participant


@dataclass(frozen=True)
class WithdrawalHeld(Receipt):
    withdrawal_id: UUID
    lots: tuple[tuple[UUID, int], ...]


@dataclass(frozen=True)
class CashoutHeld(Receipt):
    cashout_id: UUID
    tokens: int
    cents: int
    lots: tuple[tuple[UUID, int], ...]


@dataclass(frozen=True)
class SubmissionMade(Receipt):
    submission_id: UUID
    slot: str
    status: str
    flags: tuple[str, ...]
    flag_reasons: tuple[str, ...] = ()
    """Why each of ``flags`` was raised."""


@dataclass(frozen=True)
class VoteCounted(Receipt):
    status: str
    approvals: int
    rejections: int
    needed: int
    eligible: int


@dataclass(frozen=True)
class Swept(Receipt):
    """What one pass of the settlement worker did; ``failed`` are retried on the next.

    ``due``: how many challenges were due at the start of the pass (those neither settled
    nor cancelled are the backlog).
    """

    settled: tuple[UUID, ...]
    cancelled: tuple[UUID, ...]
    failed: tuple[UUID, ...] = ()
    due: int = 0
