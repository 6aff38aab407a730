"""Peer review of one submission (rules §4).

With ``eligible = participants − 1`` and ``needed = ceil(quorum_pct × eligible / 100)``, a
submission is accepted once approvals reach ``needed`` and rejected once so many have
rejected that ``needed`` can no longer be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.aggregate import Cause, LedgerAggregate, LedgerCreated, LedgerEvent
from domain.errors import (
    DomainError,
    DuplicateVote,
    NotParticipant,
    OwnSubmission,
    VoteRefused,
)
from domain.photos import EARLIER_REASONS, PhotoEvidence
from domain.values import ProofType, SubmissionFlag, SubmissionStatus, Vote

PENDING, ACCEPTED, REJECTED, EXPIRED = tuple(SubmissionStatus)


def votes_needed(quorum_pct: int, eligible: int) -> int:
    """``ceil(quorum_pct × eligible / 100)`` in integers."""
    return -(-quorum_pct * eligible // 100)


class Verification(LedgerAggregate):
    TOPIC = "peerpush:Verification"
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before photos were re-encoded: the stored object is the upload."""
        state.update(_upcast_submitted(dict(state)))

    class Submitted(LedgerCreated):
        """A proof was submitted; ``status`` is ``accepted`` at once or ``pending`` review.

        ``sha256`` and ``size`` describe the bytes uploaded (kept for audit); the object
        stored and served (a photo re-encoded without its metadata) has ``stored_sha256``
        and ``stored_size``. ``flag_reasons`` says why each of ``flags`` was raised;
        ``phash`` is a photo's perceptual hash. v1 events stored the upload itself.
        """

        TOPIC = "peerpush:Verification.Submitted"
        class_version = 2
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
        flag_reasons: tuple[str, ...]
        phash: str
        stored_sha256: str
        stored_size: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(_upcast_submitted(state))

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
        """Settlement closed the vote on a still-pending submission: it ``expired`` (not
        accepted), or was ``accepted`` (a flagged photo of an ``auto`` challenge that no
        peer rejected and that was no exact copy). v1 events always expired."""

        TOPIC = "peerpush:Verification.Closed"
        class_version = 2
        status: SubmissionStatus

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(status=EXPIRED)

        def apply(self, verification: Verification) -> None:
            verification.status = SubmissionStatus(self.status)

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
        flag_reasons: tuple[str, ...],
        phash: str,
        stored_sha256: str,
        stored_size: int,
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
        self.flag_reasons = tuple(flag_reasons)
        self.phash = phash
        self.stored_sha256 = stored_sha256
        self.stored_size = stored_size
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
        *,
        reasons: tuple[str, ...] = (),
    ) -> Verification:
        """Record the submission; ``reasons`` says why each of ``flags`` was raised."""
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
            flag_reasons=reasons,
            eligible=eligible,
            needed=votes_needed(quorum_pct, eligible),
            status=status,
            phash=proof.phash,
            stored_sha256=proof.stored_sha256,
            stored_size=proof.stored_size,
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

    def close(self, cause: Cause, at: datetime, *, accepted: bool = False) -> None:
        """Voting closed: a still-pending submission expires, or counts as ``accepted``."""
        if self.status == PENDING:
            self._record(self.Closed, cause, at, status=ACCEPTED if accepted else EXPIRED)

    def reasons(self) -> dict[str, str]:
        """Each flag and why it was raised, for reviewers."""
        return dict(zip(self.flags, self.flag_reasons, strict=False))

    @property
    def stored_with_metadata(self) -> bool:
        """Whether the stored object is a photo as uploaded, metadata and all: recorded
        before photos were re-encoded (its ``stored_sha256`` is unknown)."""
        return self.proof_type == ProofType.PHOTO and not self.stored_sha256


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
    flag_reasons: dict[str, str]
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
        flag_reasons=v.reasons(),
        status=v.status,
        approvals=tally.approvals,
        rejections=tally.rejections,
        needed=v.needed,
        eligible=v.eligible,
        penalty=v.penalty,
        my_vote=v.vote_of(reader_id),
    )


class ProofFacts:
    """What the ledger keeps of a proof: where it is stored and its fingerprints.

    ``size`` and ``sha256`` are the upload's; ``stored_size`` and ``stored_sha256`` the
    stored object's (the same for a text proof); ``photo`` what the challenge judges a photo
    by.
    """

    __slots__ = (
        "key",
        "mime_type",
        "photo",
        "proof_type",
        "sha256",
        "size",
        "stored_sha256",
        "stored_size",
    )

    def __init__(
        self,
        proof_type: str,
        key: str,
        mime_type: str,
        size: int,
        sha256: str,
        *,
        photo: PhotoEvidence | None = None,
        stored_size: int | None = None,
        stored_sha256: str | None = None,
    ):
        self.proof_type = proof_type
        self.key = key
        self.mime_type = mime_type
        self.size = size
        self.sha256 = sha256
        self.photo = photo or (PhotoEvidence(sha256) if proof_type == "photo" else None)
        self.stored_size = size if stored_size is None else stored_size
        self.stored_sha256 = sha256 if stored_sha256 is None else stored_sha256

    @property
    def phash(self) -> str:
        return "" if self.photo is None else self.photo.phash


def _upcast_submitted(state: dict[str, Any]) -> dict[str, Any]:
    """The v2 fields of a submission recorded in v1: the stored object was the upload (its
    own SHA-256 left unknown: ``""``), no perceptual hash was taken, and ``duplicate`` was
    the only flag there was."""
    flags = tuple(state.get("flags", ()))
    return {
        "flag_reasons": tuple(EARLIER_REASONS.get(f, f) for f in flags),
        "phash": "",
        "stored_sha256": "",
        "stored_size": state["size"],
    }
