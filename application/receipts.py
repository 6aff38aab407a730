"""What a command tells its caller: always the stream position of its last event.

A client passes that position back to a query to read its own writes (rules §8, issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.challenge import Challenge
from domain.values import ProofType, SubmissionFlag, SubmissionStatus
from domain.verification import Verification, tally_of


@dataclass(frozen=True)
class Receipt:
    position: int


@dataclass(frozen=True)
class ChallengeCreated(Receipt):
    challenge_id: UUID
    invite_code: str


@dataclass(frozen=True)
class Joined(Receipt):
    """A participation: new (``joined``), or the one the user already had (no second stake)."""

    challenge_id: UUID
    joined: bool
    stake: int
    timezone: str

    @classmethod
    def recorded(cls, challenge: Challenge, user_id: UUID, position: int, joined: bool) -> Joined:
        """The user's participation as the command left it (new, or the one they had)."""
        me = challenge.participant(user_id)
        return cls(position, challenge.id, joined, me.stake, me.timezone)


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
    challenge_id: UUID
    slot: str
    status: SubmissionStatus
    flags: tuple[SubmissionFlag, ...]
    proof_type: ProofType
    flag_reasons: dict[str, str]
    """Why each of ``flags`` was raised."""

    @classmethod
    def recorded(cls, verification: Verification, position: int) -> SubmissionMade:
        """The submission as its save recorded it."""
        v = verification
        return cls(
            position, v.id, v.challenge_id, v.slot, v.status, v.flags, v.proof_type, v.reasons()
        )


@dataclass(frozen=True)
class VoteCounted(Receipt):
    status: SubmissionStatus
    approvals: int
    rejections: int
    needed: int
    eligible: int

    @classmethod
    def recorded(cls, verification: Verification, position: int) -> VoteCounted:
        """The count as the vote's save left the submission (decided or still pending)."""
        t = tally_of(verification)
        return cls(position, t.status, t.approvals, t.rejections, t.needed, t.eligible)


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
