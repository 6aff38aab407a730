"""Request and response bodies of the submission and review routes (rules §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas import Body
from application.receipts import SubmissionMade, VoteCounted
from application.submissions import Proof, Review, SubmissionItem
from domain.verification import Verification


def proof_url(submission_id: UUID) -> str:
    return f"/v1/submissions/{submission_id}/proof"


class SubmissionMadeOut(BaseModel):
    id: UUID
    challenge_id: UUID
    slot: str
    status: Literal["pending", "accepted"]
    flags: list[str]
    flag_reasons: dict[str, str]
    proof_type: Literal["photo", "text"]
    position: int

    @classmethod
    def of(cls, challenge_id: UUID, proof_type: str, made: SubmissionMade) -> SubmissionMadeOut:
        return cls.model_validate(
            {
                "id": made.submission_id,
                "challenge_id": challenge_id,
                "slot": made.slot,
                "status": made.status,
                "flags": list(made.flags),
                "flag_reasons": dict(zip(made.flags, made.flag_reasons, strict=False)),
                "proof_type": proof_type,
                "position": made.position,
            }
        )

    @classmethod
    def recorded(cls, verification: Verification, position: int) -> SubmissionMadeOut:
        """The submission as its save recorded it."""
        made = SubmissionMade(
            position,
            verification.id,
            verification.slot,
            verification.status,
            verification.flags,
            verification.flag_reasons,
        )
        return cls.of(verification.challenge_id, verification.proof_type, made)


class ProofSent(BaseModel):
    """What an ``Idempotency-Key`` on an upload covers: the proof's type and content."""

    proof_type: str
    sha256: str

    @classmethod
    def of(cls, proof: Proof) -> ProofSent:
        return cls(proof_type=proof.proof_type, sha256=proof.sha256)


class SubmissionItemOut(BaseModel):
    id: UUID
    user_id: UUID
    slot: str
    status: str
    proof_type: Literal["photo", "text"]
    flags: list[str]

    @classmethod
    def of(cls, item: SubmissionItem) -> SubmissionItemOut:
        return cls.model_validate(
            {
                "id": item.submission_id,
                "user_id": item.user_id,
                "slot": item.slot,
                "status": item.status,
                "proof_type": item.proof_type,
                "flags": list(item.flags),
            }
        )


class SubmissionOut(BaseModel):
    id: UUID
    challenge_id: UUID
    user_id: UUID
    slot: str
    proof_type: str
    mime_type: str
    size: int
    sha256: str
    flags: list[str]
    flag_reasons: dict[str, str]
    status: Literal["pending", "accepted", "rejected", "expired"]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    penalty: int
    my_vote: Literal["approve", "reject"] | None
    proof_url: str

    @classmethod
    def of(cls, v: Verification, reader_id: UUID) -> SubmissionOut:
        """The submission as ``reader_id`` sees it (with their own vote)."""
        return cls.model_validate(
            {
                "id": v.id,
                "challenge_id": v.challenge_id,
                "user_id": v.user_id,
                "slot": v.slot,
                "proof_type": v.proof_type,
                "mime_type": v.mime_type,
                "size": v.size,
                "sha256": v.sha256,
                "flags": list(v.flags),
                "flag_reasons": v.reasons(),
                "status": v.status,
                "approvals": len(v.approvals),
                "rejections": len(v.rejections),
                "needed": v.needed,
                "eligible": v.eligible,
                "penalty": v.penalty,
                "my_vote": v.vote_of(reader_id),
                "proof_url": proof_url(v.id),
            }
        )


class VoteIn(Body):
    approve: Annotated[bool, Field(strict=True)]


class VoteOut(BaseModel):
    status: Literal["pending", "accepted", "rejected"]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    position: int

    @classmethod
    def of(cls, counted: VoteCounted) -> VoteOut:
        return cls.model_validate(
            {
                "status": counted.status,
                "approvals": counted.approvals,
                "rejections": counted.rejections,
                "needed": counted.needed,
                "eligible": counted.eligible,
                "position": counted.position,
            }
        )

    @classmethod
    def recorded(cls, verification: Verification, position: int) -> VoteOut:
        """The count as the vote's save left the submission (decided or still pending)."""
        counted = VoteCounted(
            position,
            verification.status,
            len(verification.approvals),
            len(verification.rejections),
            verification.needed,
            verification.eligible,
        )
        return cls.of(counted)


class ReviewOut(BaseModel):
    submission_id: UUID
    challenge_id: UUID
    challenge_name: str
    user_id: UUID
    slot: str
    proof_type: str
    flags: list[str]
    flag_reasons: dict[str, str]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    closes_at: datetime
    proof_url: str

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        v = review.verification
        return cls(
            submission_id=v.id,
            challenge_id=review.challenge_id,
            challenge_name=review.challenge_name,
            user_id=v.user_id,
            slot=v.slot,
            proof_type=v.proof_type,
            flags=list(v.flags),
            flag_reasons=v.reasons(),
            approvals=len(v.approvals),
            rejections=len(v.rejections),
            needed=v.needed,
            eligible=v.eligible,
            closes_at=review.closes_at,
            proof_url=proof_url(v.id),
        )
