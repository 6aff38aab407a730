"""Submitting proofs and reviewing them (rules §4), as use cases.

Uploading: the challenge says first whether the submission would be accepted and for
which slot, so the object's key (:func:`proof_key`) is known before the upload and a refusal
costs neither a decode nor an upload. A photo is then decoded whole by the
:class:`~application.photos.PhotoInspector` (a refusal there stores and records nothing),
and its re-encoded copy, without metadata, is what is stored. Then ``submit`` records the
key, MIME type, the upload's size and SHA-256, the stored copy's, and the photo's perceptual
hash; the challenge judges the photo's capture time and likeness to earlier photos (rules
§4). If ``submit`` refuses, the object is deleted; if it fails in a way that leaves its
outcome unknown, the object is left (an orphan no event names, replaced by the next upload
for that slot once it is ``ORPHAN_AFTER`` old).

Text proofs are stored the same way: events never carry their words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from application.access import Caller, participant_challenge, visible_challenge
from application.ledger import Ledger
from application.photos import PhotoInspector
from application.ports import Clock, ProofExists, ProofStore, SystemClock
from application.receipts import SubmissionMade, VoteCounted
from domain.aggregate import Cause
from domain.challenge import Challenge
from domain.errors import Conflict, DomainError, ProofTypeNotAllowed
from domain.photos import PhotoEvidence
from domain.proofs import Proof
from domain.values import ProofType, SubmissionFlag, SubmissionStatus
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
class PreparedProof:
    """A proof ready to store: the object to write, and what the ledger records of it."""

    stored: Proof
    facts: ProofFacts


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
    flag_reasons: dict[str, str]
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
            v.reasons(),
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
        photos: PhotoInspector,
        *,
        wall_clock: Clock | None = None,
    ) -> None:
        self.ledger = ledger
        self.proofs = proofs
        self.photos = photos
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
        # The slot and the submission's id (or the refusal) before anything is decoded
        # or uploaded; the ledger decides again on fresh state.
        slot, submission_id = challenge.plan_submission(
            caller.id, proof.proof_type, self.ledger.clock.now()
        )
        key = proof_key(challenge_id, caller.id, slot, submission_id)
        prepared = self.prepare(proof, key)
        store_proof(self.proofs, key, prepared.stored, self.wall_clock)
        try:
            return self.ledger.submit(challenge_id, caller.id, prepared.facts, cause)
        except DomainError:
            self.proofs.delete(key)  # refused: nothing names the object
            raise

    def prepare(self, proof: Proof, key: str) -> PreparedProof:
        """What to store for a proof and what to record: a text as it is; a photo decoded
        whole and re-encoded without its metadata (refused if it does not decode)."""
        if proof.proof_type != ProofType.PHOTO:
            return PreparedProof(proof, proof.facts(key))
        inspected = self.photos.inspect(proof.data, proof.mime_type)
        stored = Proof(ProofType.PHOTO, inspected.data, proof.mime_type)
        facts = ProofFacts(
            ProofType.PHOTO,
            key,
            proof.mime_type,
            len(proof.data),
            proof.sha256,
            photo=PhotoEvidence(proof.sha256, inspected.phash, inspected.capture),
            stored_size=len(stored.data),
            stored_sha256=stored.sha256,
        )
        return PreparedProof(stored, facts)

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
                challenge.flags_of(r),
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
        """The submission's proof: a presigned URL where the store offers one, else bytes.

        A photo stored as it was uploaded (before photos were re-encoded) may carry its
        camera's metadata, its location too: it is served re-encoded, never as stored.
        """
        v = self._submission(submission_id, caller)
        if v.stored_with_metadata:
            kept = self.proofs.get(v.proof_key)
            return ServedProof(v.mime_type, data=self.photos.strip(kept, v.mime_type))
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
