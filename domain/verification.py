"""Peer review of one submission (rules §4).

With ``eligible = participants − 1`` and ``needed = ceil(quorum_pct × eligible / 100)``, a
submission is accepted once approvals reach ``needed`` and rejected once so many have
rejected that ``needed`` can no longer be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.aggregate import Cause, LedgerAggregate, LedgerCreated, LedgerEvent
from domain.errors import (
    DomainError,
    DuplicateVote,
    NotParticipant,
    OwnSubmission,
    VoteRefused,
)
from domain.values import ProofType, SubmissionFlag, SubmissionStatus, Vote

PENDING, ACCEPTED, REJECTED, EXPIRED = tuple(SubmissionStatus)


def votes_needed(quorum_pct: int, eligible: int) -> int:
    """``ceil(quorum_pct × eligible / 100)`` in integers."""
    return -(-quorum_pct * eligible // 100)


class Verification(LedgerAggregate):
    TOPIC = "peerpush:Verification"

    class Submitted(LedgerCreated):
        """A proof was submitted; ``status`` is ``accepted`` at once or ``pending`` review."""

        TOPIC = "peerpush:Verification.Submitted"
        challenge_id: UUID
        user_id: UUID
        slot: str
        proof_type: str
        proof_key: str
        mime_type: str
        size: int
        sha256: str
        flags: tuple[SubmissionFlag, ...]
        eligible: int
        needed: int
        status: SubmissionStatus

    class VoteCast(LedgerEvent):
        TOPIC = "peerpush:Verification.VoteCast"
        voter_id: UUID
        approve: bool

        def apply(self, verification: Verification) -> None:
            (verification.approvals if self.approve else verification.rejections).append(
                str(self.voter_id)
            )

    class Decided(LedgerEvent):
        TOPIC = "peerpush:Verification.Decided"
        status: SubmissionStatus
        penalty: int

        def apply(self, verification: Verification) -> None:
            verification.status = SubmissionStatus(self.status)
            verification.penalty = self.penalty

    class Closed(LedgerEvent):
        """Settlement closed the vote: a still-pending submission counts as not accepted."""

        TOPIC = "peerpush:Verification.Closed"

        def apply(self, verification: Verification) -> None:
            verification.status = EXPIRED

    def __init__(
        self,
        challenge_id: UUID,
        user_id: UUID,
        slot: str,
        proof_type: str,
        proof_key: str,
        mime_type: str,
        size: int,
        sha256: str,
        flags: tuple[str, ...],
        eligible: int,
        needed: int,
        status: str,
    ) -> None:
        # The event's strings, given their types (a stored event reads back plain strings).
        self.challenge_id = challenge_id
        self.user_id = user_id
        self.slot = slot
        self.proof_type = ProofType(proof_type)
        self.proof_key = proof_key
        self.mime_type = mime_type
        self.size = size
        self.sha256 = sha256
        self.flags = tuple(SubmissionFlag(f) for f in flags)
        self.eligible = eligible
        self.needed = needed
        self.status = SubmissionStatus(status)
        self.approvals: list[str] = []
        self.rejections: list[str] = []
        self.penalty = 0

    @classmethod
    def submit(
        cls,
        submission_id: UUID,
        challenge_id: UUID,
        user_id: UUID,
        slot: str,
        proof: ProofFacts,
        flags: tuple[SubmissionFlag, ...],
        eligible: int,
        quorum_pct: int,
        status: SubmissionStatus,
        cause: Cause,
        at: datetime,
    ) -> Verification:
        return cls._create(
            cls.Submitted,
            id=submission_id,
            challenge_id=challenge_id,
            user_id=user_id,
            slot=slot,
            proof_type=proof.proof_type,
            proof_key=proof.key,
            mime_type=proof.mime_type,
            size=proof.size,
            sha256=proof.sha256,
            flags=flags,
            eligible=eligible,
            needed=votes_needed(quorum_pct, eligible),
            status=status,
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )

    def vote(
        self, voter_id: UUID, approve: bool, is_participant: bool, cause: Cause, at: datetime
    ) -> SubmissionStatus | None:
        """Record a vote; returns the verdict when this vote decides the submission."""
        refusal = self._vote_refusal(voter_id, is_participant)
        if refusal is not None:
            raise refusal
        self._record(self.VoteCast, cause, at, voter_id=voter_id, approve=approve)
        if len(self.approvals) >= self.needed:
            return ACCEPTED
        if len(self.rejections) > self.eligible - self.needed:
            return REJECTED
        return None

    def may_vote(self, voter_id: UUID, is_participant: bool) -> bool:
        """Whether this user can still vote on the submission: another participant than
        its author, who has not voted yet, while it is pending (rules §4). This is what a
        user's review queue lists; :meth:`vote` refuses exactly the others."""
        return self._vote_refusal(voter_id, is_participant) is None

    def vote_of(self, user_id: UUID) -> Vote | None:
        """The user's vote on this submission: ``approve``, ``reject`` or ``None``."""
        if str(user_id) in self.approvals:
            return Vote.APPROVE
        if str(user_id) in self.rejections:
            return Vote.REJECT
        return None

    def _vote_refusal(self, voter_id: UUID, is_participant: bool) -> DomainError | None:
        if voter_id == self.user_id:
            return OwnSubmission("you cannot vote on your own submission")
        if not is_participant:
            return NotParticipant("only participants may vote")
        if self.status != PENDING:
            return VoteRefused(f"the submission is {self.status}")
        if self.vote_of(voter_id) is not None:
            return DuplicateVote("you have already voted on this submission")
        return None

    def decide(self, status: SubmissionStatus, penalty: int, cause: Cause, at: datetime) -> None:
        self._record(self.Decided, cause, at, status=status, penalty=penalty)

    def close(self, cause: Cause, at: datetime) -> None:
        if self.status == PENDING:
            self._record(self.Closed, cause, at)


@dataclass(frozen=True)
class Tally:
    """Where a submission's review stands: its status and the votes counted so far."""

    status: SubmissionStatus
    approvals: int
    rejections: int
    needed: int
    eligible: int


@dataclass(frozen=True)
class SubmissionView:
    """A submission as one participant sees it: the proof's facts, the tally, their vote."""

    id: UUID
    challenge_id: UUID
    user_id: UUID
    slot: str
    proof_type: ProofType
    mime_type: str
    size: int
    sha256: str
    flags: tuple[SubmissionFlag, ...]
    status: SubmissionStatus
    approvals: int
    rejections: int
    needed: int
    eligible: int
    penalty: int
    my_vote: Vote | None


def tally_of(verification: Verification) -> Tally:
    v = verification
    return Tally(v.status, len(v.approvals), len(v.rejections), v.needed, v.eligible)


def submission_view(verification: Verification, reader_id: UUID) -> SubmissionView:
    v, tally = verification, tally_of(verification)
    return SubmissionView(
        id=v.id,
        challenge_id=v.challenge_id,
        user_id=v.user_id,
        slot=v.slot,
        proof_type=v.proof_type,
        mime_type=v.mime_type,
        size=v.size,
        sha256=v.sha256,
        flags=v.flags,
        status=v.status,
        approvals=tally.approvals,
        rejections=tally.rejections,
        needed=v.needed,
        eligible=v.eligible,
        penalty=v.penalty,
        my_vote=v.vote_of(reader_id),
    )


class ProofFacts:
    """What the ledger keeps of a proof: where it is stored and its fingerprint."""

    __slots__ = ("key", "mime_type", "proof_type", "sha256", "size")

    def __init__(self, proof_type: str, key: str, mime_type: str, size: int, sha256: str):
        self.proof_type = proof_type
        self.key = key
        self.mime_type = mime_type
        self.size = size
        self.sha256 = sha256
