"""Request and response bodies of the submission and review routes (rules §4).

Responses are read off the application's receipts and the domain's views, attribute for
attribute; only the proof's URL is the API's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AliasChoices, BaseModel, Field, computed_field

from api.schemas import Body, View
from domain.proofs import Proof
from domain.values import ProofType, SubmissionFlag, SubmissionStatus, Vote

SubmissionId = Annotated[UUID, Field(validation_alias=AliasChoices("id", "submission_id"))]


def proof_url(submission_id: UUID) -> str:
    return f"/v1/submissions/{submission_id}/proof"


class SubmissionMadeOut(View):
    id: SubmissionId
    challenge_id: UUID
    slot: str
    status: SubmissionStatus
    flags: list[SubmissionFlag]
    flag_reasons: dict[str, str]
    proof_type: ProofType
    position: int


class ProofSent(BaseModel):
    """What an ``Idempotency-Key`` on an upload covers: the proof's type and content."""

    proof_type: str
    sha256: str

    @classmethod
    def of(cls, proof: Proof) -> ProofSent:
        return cls(proof_type=proof.proof_type, sha256=proof.sha256)


class SubmissionItemOut(View):
    id: SubmissionId
    user_id: UUID
    slot: str
    status: SubmissionStatus
    proof_type: ProofType
    flags: list[SubmissionFlag]


class SubmissionOut(View):
    id: UUID
    challenge_id: UUID
    user_id: UUID
    slot: str
    proof_type: ProofType
    mime_type: str
    size: int
    sha256: str
    flags: list[SubmissionFlag]
    flag_reasons: dict[str, str]
    status: SubmissionStatus
    approvals: int
    rejections: int
    needed: int
    eligible: int
    penalty: int
    my_vote: Vote | None

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented use on a property
    @property
    def proof_url(self) -> str:
        return proof_url(self.id)


class VoteIn(Body):
    approve: Annotated[bool, Field(strict=True)]


class VoteOut(View):
    status: SubmissionStatus
    approvals: int
    rejections: int
    needed: int
    eligible: int
    position: int


class ReviewOut(View):
    submission_id: UUID
    challenge_id: UUID
    challenge_name: str
    user_id: UUID
    slot: str
    proof_type: ProofType
    flags: list[SubmissionFlag]
    flag_reasons: dict[str, str]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    closes_at: datetime

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented use on a property
    @property
    def proof_url(self) -> str:
        return proof_url(self.submission_id)
