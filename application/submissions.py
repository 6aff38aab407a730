"""Submitting proofs and reviewing them (rules §4), as use cases.

Uploading: the challenge decides on a private copy first whether the submission would be
accepted and for which slot, so the object's key (:func:`proof_key`) is known before the
upload and a refusal costs no upload. Then the proof is stored (write-once) and ``submit``
records its key, MIME type, size and SHA-256. If ``submit`` refuses, the object is deleted;
if it fails in a way that leaves its outcome unknown, the object is left (an orphan no event
names, replaced by the next upload for that slot once it is ``ORPHAN_AFTER`` old).

Text proofs are stored the same way: events never carry their words.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from application.access import Caller, participant_challenge, visible_challenge
from application.ledger import Ledger
from application.ports import Clock, ProofExists, ProofStore, SystemClock
from application.receipts import SubmissionMade, VoteCounted
from domain.aggregate import Cause
from domain.challenge import Challenge
from domain.errors import (
    Conflict,
    DomainError,
    InvalidProof,
    ProofTooLarge,
    ProofTypeNotAllowed,
    UnsupportedImage,
)
from domain.values import (
    MAX_TEXT_PROOF_CHARS,
    TEXT_MIME,
    ProofType,
    SubmissionFlag,
    SubmissionStatus,
    image_type,
)
from domain.verification import (
    PENDING,
    ProofFacts,
    SubmissionView,
    Verification,
    submission_view,
    tally_of,
)

ORPHAN_AFTER = timedelta(minutes=10)
"""An object no event names is an orphan (a crash between upload and ``submit``) once it is
this old; younger, it is taken for another upload of the same slot still in flight."""

PROOF_URL_SECONDS = 300
"""How long a presigned URL to a proof stays valid (S3)."""


@dataclass(frozen=True)
class Proof:
    """An uploaded proof, read and fingerprinted, not yet stored."""

    proof_type: str
    data: bytes
    mime_type: str
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def facts(self, key: str) -> ProofFacts:
        return ProofFacts(self.proof_type, key, self.mime_type, len(self.data), self.sha256)


def proof_from_form(
    proof_type: object, text: object, has_file: bool, photo: bytes | None, max_bytes: int
) -> Proof:
    """The proof a submission form carries (rules §4): a text of at most
    ``MAX_TEXT_PROOF_CHARS`` characters, or a JPEG or PNG photo of at most ``max_bytes``
    (``photo`` holds the file's first ``max_bytes + 1`` bytes), recognised by its content."""
    if proof_type not in tuple(ProofType):
        raise InvalidProof("invalid_proof_type", "proof_type must be photo or text")
    if proof_type == ProofType.TEXT:
        if has_file:
            raise InvalidProof("unexpected_file", "a text proof has no file")
        if not isinstance(text, str) or not text.strip():
            raise InvalidProof("missing_text", "a text proof needs text")
        if len(text) > MAX_TEXT_PROOF_CHARS:
            raise ProofTooLarge(f"text proofs are {MAX_TEXT_PROOF_CHARS} chars max")
        return Proof(ProofType.TEXT, text.encode(), TEXT_MIME)
    if text:
        raise InvalidProof("unexpected_text", "text is for text proofs")
    if photo is None:
        raise InvalidProof("missing_file", "a photo proof needs a file")
    if len(photo) > max_bytes:
        raise ProofTooLarge(f"proofs are at most {max_bytes} bytes")
    mime = image_type(photo)
    if mime is None:
        raise UnsupportedImage("a photo proof must be a JPEG or a PNG")
    return Proof(ProofType.PHOTO, photo, mime)


def proof_key(challenge_id: UUID, user_id: UUID, slot: str, submission_id: UUID) -> str:
    """Where a submission's proof is stored (rules §4): one key per submission."""
    return f"challenges/{challenge_id}/{user_id}/{slot}/{submission_id}"


def store_proof(store: ProofStore, key: str, proof: Proof, wall_clock: Clock | None = None) -> None:
    """Write once; an old orphan (no event names it) under the key is replaced.

    The age is measured on the wall clock, as the store dates its objects.
    """
    try:
        store.put(key, proof.data, proof.mime_type)
        return
    except ProofExists:
        uploaded = store.uploaded_at(key)
        now = (wall_clock or SystemClock()).now()
        if uploaded is not None and now - uploaded < ORPHAN_AFTER:
            raise Conflict("another upload for this slot is in progress") from None
    store.delete(key)
    store.put(key, proof.data, proof.mime_type)


@dataclass(frozen=True)
class SubmissionItem:
    """One submission of a challenge, as its participants list them."""

    submission_id: UUID
    user_id: UUID
    slot: str
    status: SubmissionStatus
    proof_type: ProofType
    flags: tuple[SubmissionFlag, ...]


@dataclass(frozen=True)
class ServedProof:
    """How to hand a proof to a reader: a short-lived URL, or its bytes."""

    mime_type: str
    url: str | None = None
    data: bytes = b""


@dataclass(frozen=True)
class Review:
    """A submission the user can still vote on, and when voting on it closes."""

    submission_id: UUID
    challenge_id: UUID
    challenge_name: str
    user_id: UUID
    slot: str
    proof_type: ProofType
    flags: tuple[SubmissionFlag, ...]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    closes_at: datetime

    @classmethod
    def of(cls, v: Verification, challenge: Challenge, closes_at: datetime) -> Review:
        t = tally_of(v)
        return cls(
            v.id,
            challenge.id,
            challenge.terms.name,
            v.user_id,
            v.slot,
            v.proof_type,
            v.flags,
            t.approvals,
            t.rejections,
            t.needed,
            t.eligible,
            closes_at,
        )


class Submissions:
    """The submission and peer-review use cases, over the ledger and the proof store."""

    def __init__(
        self,
        ledger: Ledger,
        proofs: ProofStore,
        active_challenges_of: Callable[[UUID], Iterable[UUID]],
        *,
        wall_clock: Clock | None = None,
    ) -> None:
        self.ledger = ledger
        self.proofs = proofs
        # Where the user may have votes to cast: a read model, so a new participation
        # shows once it is projected.
        self.active_challenges_of = active_challenges_of
        self.wall_clock = wall_clock or SystemClock()

    def submit(
        self, challenge_id: UUID, caller: Caller, proof: Proof, cause: Cause
    ) -> SubmissionMade:
        """Store the proof and record the submission; a refusal leaves no object behind."""
        challenge = participant_challenge(self.ledger, challenge_id, caller)
        if proof.proof_type not in challenge.terms.proof_types:
            raise ProofTypeNotAllowed(f"{proof.proof_type} proofs are not allowed here")
        # The challenge decides on a copy that is never saved: the slot and the
        # submission's id (or the refusal) before anything is uploaded.
        planned = copy.deepcopy(challenge).receive_submission(
            caller.id, proof.proof_type, proof.sha256, cause, self.ledger.clock.now()
        )
        key = proof_key(challenge_id, caller.id, planned.slot, planned.submission_id)
        store_proof(self.proofs, key, proof, self.wall_clock)
        try:
            return self.ledger.submit(challenge_id, caller.id, proof.facts(key), cause)
        except DomainError:
            self.proofs.delete(key)  # refused: nothing names the object
            raise

    def submissions(
        self, challenge_id: UUID, caller: Caller, status: str | None = None
    ) -> list[SubmissionItem]:
        """Every submission of the challenge (participants only), by slot then user."""
        challenge = participant_challenge(self.ledger, challenge_id, caller)
        items = [
            SubmissionItem(
                r.submission_id,
                r.user_id,
                r.slot,
                r.status,
                r.proof_type,
                challenge.photo_flags(r.sha256, r.submission_id),
            )
            for r in challenge.submissions.values()
            if status is None or r.status == status
        ]
        return sorted(items, key=lambda s: (s.slot, str(s.user_id)))

    def submission(self, submission_id: UUID, caller: Caller) -> SubmissionView:
        """The submission as the caller sees it, for its challenge's participants (NotFound
        if the challenge is invisible to the caller, else NotParticipant)."""
        return submission_view(self._submission(submission_id, caller), caller.id)

    def _submission(self, submission_id: UUID, caller: Caller) -> Verification:
        verification = self.ledger.verification(submission_id)
        participant_challenge(self.ledger, verification.challenge_id, caller)
        return verification

    def proof(self, submission_id: UUID, caller: Caller) -> ServedProof:
        """The submission's proof: a presigned URL where the store offers one, else bytes."""
        v = self._submission(submission_id, caller)
        url = self.proofs.url_for(v.proof_key, PROOF_URL_SECONDS)
        if url is not None:
            return ServedProof(v.mime_type, url=url)
        return ServedProof(v.mime_type, data=self.proofs.get(v.proof_key))

    def vote(self, submission_id: UUID, caller: Caller, approve: bool, cause: Cause) -> VoteCounted:
        """Approve or reject another participant's submission (NotFound if its challenge is
        invisible to the caller); the deciding vote settles its verdict."""
        verification = self.ledger.verification(submission_id)
        visible_challenge(self.ledger, verification.challenge_id, caller)
        return self.ledger.vote(submission_id, caller.id, approve, cause)

    def reviews(self, user_id: UUID) -> list[Review]:
        """Others' pending submissions the user can still vote on, by challenge (soonest
        ending first) and submission."""
        delay, now = self.ledger.settings.settlement_delay, self.ledger.clock.now()
        found: list[Review] = []
        for challenge_id in self.active_challenges_of(user_id):
            challenge = self.ledger.challenge(challenge_id)
            if not challenge.accepts_votes(now, delay):
                continue
            is_participant = challenge.is_participant(user_id)
            for record in challenge.submissions.values():
                if record.status != PENDING or record.user_id == user_id:
                    continue
                v = self.ledger.verification(record.submission_id)
                if v.may_vote(user_id, is_participant):
                    found.append(Review.of(v, challenge, challenge.settles_at(delay)))
        return found
