"""Submissions and peer review (SPEC §4): upload a proof, read it, vote on others'.

Uploading: the body is read from the wire with a cap (``Content-Length`` is not trusted), a
photo is sniffed for JPEG or PNG, and the challenge decides on a private copy first whether
the submission would be accepted and for which slot, so the object's key
(``challenges/{challenge}/{participant}/{slot}/{submission}``) is known before the upload
and a refusal costs no upload. Then the proof is stored (write-once) and ``submit`` records
its key, MIME type, size and SHA-256. If ``submit`` refuses, the object is deleted; if it
fails in a way that leaves its outcome unknown, the object is left (an orphan no event
names, replaced by the next upload for that slot once it is ``ORPHAN_AFTER`` old).

Text proofs are stored the same way, as ``text/plain``: events never carry their words.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from adapters.proof_store import ProofExists, ProofObjects
from adapters.users import AuthUser
from api.bootstrap import Services
from api.deps import CurrentUser, ServicesDep, wait_for_position
from api.errors import ApiError
from api.idempotency import run_idempotent
from api.routers.challenges import cause_of, participant_challenge, visible_challenge
from api.schemas import Body
from domain.challenge import ACTIVE, Challenge
from domain.errors import Conflict, DomainError, ProofTypeNotAllowed
from domain.verification import PENDING, ProofFacts, Verification
from projections import challenge_queries as queries

router = APIRouter(tags=["submissions"])

MAX_TEXT_CHARS = 10_000
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields
PROOF_URL_SECONDS = 300
ORPHAN_AFTER = timedelta(minutes=10)
TEXT_MIME = "text/plain; charset=utf-8"
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))

MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["proof_type"],
                    "properties": {
                        "proof_type": {"type": "string", "enum": ["photo", "text"]},
                        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG or PNG, at most 10 MiB (photo proofs)",
                        },
                    },
                }
            },
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["proof_type", "text"],
                    "properties": {
                        "proof_type": {"type": "string", "enum": ["text"]},
                        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS},
                    },
                }
            },
        },
    }
}


class SubmissionMadeOut(BaseModel):
    id: UUID
    challenge_id: UUID
    slot: str
    status: Literal["pending", "accepted"]
    flags: list[str]
    proof_type: Literal["photo", "text"]
    position: int


class SubmissionItemOut(BaseModel):
    id: UUID
    user_id: UUID
    slot: str
    status: str
    proof_type: Literal["photo", "text"]
    flags: list[str]


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
    status: Literal["pending", "accepted", "rejected", "expired"]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    penalty: int
    my_vote: Literal["approve", "reject"] | None
    proof_url: str


class VoteIn(Body):
    approve: Annotated[bool, Field(strict=True)]


class VoteOut(BaseModel):
    status: Literal["pending", "accepted", "rejected"]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    position: int


class ReviewOut(BaseModel):
    submission_id: UUID
    challenge_id: UUID
    challenge_name: str
    user_id: UUID
    slot: str
    proof_type: str
    flags: list[str]
    approvals: int
    rejections: int
    needed: int
    eligible: int
    closes_at: datetime
    proof_url: str


# -- uploading --------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class Proof:
    """An uploaded proof, read and fingerprinted, not yet stored."""

    def __init__(self, proof_type: str, data: bytes, mime_type: str) -> None:
        self.proof_type, self.data, self.mime_type = proof_type, data, mime_type
        self.sha256 = hashlib.sha256(data).hexdigest()

    def facts(self, key: str) -> ProofFacts:
        return ProofFacts(self.proof_type, key, self.mime_type, len(self.data), self.sha256)


async def read_proof(request: Request, max_bytes: int) -> Proof:
    """The form body, read with a cap; 413 past it, 415 for what is not JPEG/PNG.

    ``multipart/form-data`` carries either kind of proof; a text proof may also come as
    ``application/x-www-form-urlencoded``.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        kind: type[MultiPartParser] | type[FormParser] = MultiPartParser
        limits: dict[str, Any] = {"max_files": 1}
    elif content_type.startswith("application/x-www-form-urlencoded"):
        kind, limits = FormParser, {}
    else:
        raise ApiError(415, "unsupported_content_type", "send the proof as multipart/form-data")

    async def capped() -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > max_bytes + FORM_OVERHEAD:
                raise _TooLarge
            yield chunk

    parser = kind(request.headers, capped(), max_fields=2, max_part_size=FORM_OVERHEAD, **limits)
    try:
        form = await parser.parse()
    except _TooLarge:
        raise _too_large(max_bytes) from None
    except MultiPartException as e:
        if "maximum size" in str(e):
            raise _too_large(max_bytes) from None
        raise ApiError(422, "invalid_form", str(e)) from None
    try:
        return await _proof_of(form, max_bytes)
    finally:
        await form.close()


async def _proof_of(form: Any, max_bytes: int) -> Proof:
    proof_type, text, file = form.get("proof_type"), form.get("text"), form.get("file")
    if proof_type not in ("photo", "text"):
        raise ApiError(422, "invalid_proof_type", "proof_type must be photo or text")
    if proof_type == "text":
        if file is not None:
            raise ApiError(422, "unexpected_file", "a text proof has no file")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(422, "missing_text", "a text proof needs text")
        if len(text) > MAX_TEXT_CHARS:
            raise ApiError(413, "proof_too_large", f"text proofs are {MAX_TEXT_CHARS} chars max")
        return Proof("text", text.encode(), TEXT_MIME)
    if text:
        raise ApiError(422, "unexpected_text", "text is for text proofs")
    if not isinstance(file, UploadFile):
        raise ApiError(422, "missing_file", "a photo proof needs a file")
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return Proof("photo", data, mime)
    raise ApiError(415, "unsupported_image", "a photo proof must be a JPEG or a PNG")


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "proof_too_large", f"proofs are at most {max_bytes} bytes")


def store_proof(store: ProofObjects, key: str, proof: Proof) -> None:
    """Write once; an old orphan (no event names it) under the key is replaced."""
    try:
        store.put(key, proof.data, proof.mime_type)
        return
    except ProofExists:
        uploaded = store.uploaded_at(key)
        if uploaded is not None and datetime.now(UTC) - uploaded < ORPHAN_AFTER:
            raise Conflict("another upload for this slot is in progress") from None
    store.delete(key)
    store.put(key, proof.data, proof.mime_type)


@router.post(
    "/challenges/{challenge_id}/submissions",
    status_code=201,
    response_model=SubmissionMadeOut,
    openapi_extra=MULTIPART_BODY,
    responses={
        403: {"description": "not a participant"},
        404: {},
        409: {"description": "outside the time window, or this slot already has one"},
        413: {"description": "more than 10 MiB"},
        415: {"description": "not a JPEG/PNG, or a proof type the rules do not allow"},
    },
)
async def submit(
    challenge_id: UUID,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Submit a proof for the current slot (multipart: ``proof_type``, ``text``, ``file``)."""
    proof = await read_proof(request, services.config.max_proof_bytes)
    store: ProofObjects = services.proofs  # type: ignore[assignment]
    cause = cause_of(user, request)

    def act() -> tuple[int, dict[str, Any]]:
        challenge = participant_challenge(services, challenge_id, user)
        if proof.proof_type not in challenge.terms.proof_types:
            raise ProofTypeNotAllowed(f"{proof.proof_type} proofs are not allowed here")
        # The challenge decides on a copy that is never saved: the slot and the
        # submission's id (or the refusal) before anything is uploaded.
        planned = copy.deepcopy(challenge).receive_submission(
            user.id, proof.proof_type, proof.sha256, cause, services.clock.now()
        )
        key = f"challenges/{challenge_id}/{user.id}/{planned.slot}/{planned.submission_id}"
        store_proof(store, key, proof)
        try:
            made = services.ledger.submit(challenge_id, user.id, proof.facts(key), cause)
        except DomainError:
            store.delete(key)  # refused: nothing names the object
            raise
        out = SubmissionMadeOut(
            id=made.submission_id,
            challenge_id=challenge_id,
            slot=made.slot,
            status=made.status,  # type: ignore[arg-type]
            flags=list(made.flags),
            proof_type=proof.proof_type,  # type: ignore[arg-type]
            position=made.position,
        )
        return 201, out.model_dump(mode="json")

    fingerprint = {"proof_type": proof.proof_type, "sha256": proof.sha256}
    route = f"POST /challenges/{challenge_id}/submissions"
    return await run_in_threadpool(
        run_idempotent, services, user.id, route, idempotency_key, fingerprint, act
    )


# -- reading ----------------------------------------------------------------------------


@router.get(
    "/challenges/{challenge_id}/submissions",
    response_model=list[SubmissionItemOut],
    responses={403: {"description": "participants only"}, 404: {}},
)
def list_submissions(
    challenge_id: UUID,
    user: CurrentUser,
    services: ServicesDep,
    status: Literal["pending", "accepted", "rejected", "expired"] | None = None,
) -> list[SubmissionItemOut]:
    """Every submission of the challenge (participants only), by slot."""
    challenge = participant_challenge(services, challenge_id, user)
    items = [
        SubmissionItemOut(
            id=r.submission_id,
            user_id=r.user_id,
            slot=r.slot,
            status=r.status,
            proof_type="photo" if r.sha256 else "text",
            flags=_flags(challenge, r.submission_id, r.sha256),
        )
        for r in challenge.submissions.values()
        if status is None or r.status == status
    ]
    return sorted(items, key=lambda s: (s.slot, str(s.user_id)))


def _flags(challenge: Challenge, submission_id: UUID, sha256: str) -> list[str]:
    first = challenge.photo_hashes.get(sha256) if sha256 else None
    return ["duplicate"] if first is not None and first != str(submission_id) else []


def _submission(
    services: Services, submission_id: UUID, user: AuthUser
) -> tuple[Verification, Challenge]:
    """The submission and its challenge, for a participant (404 if the challenge is
    invisible to the caller, else 403)."""
    verification = services.ledger.verification(submission_id)
    challenge = participant_challenge(services, verification.challenge_id, user)
    return verification, challenge


@router.get(
    "/submissions/{submission_id}",
    response_model=SubmissionOut,
    responses={403: {"description": "participants only"}, 404: {}},
)
def get_submission(submission_id: UUID, user: CurrentUser, services: ServicesDep) -> SubmissionOut:
    v, _ = _submission(services, submission_id, user)
    mine = str(user.id)
    return SubmissionOut(
        id=submission_id,
        challenge_id=v.challenge_id,
        user_id=v.user_id,
        slot=v.slot,
        proof_type=v.proof_type,
        mime_type=v.mime_type,
        size=v.size,
        sha256=v.sha256,
        flags=list(v.flags),
        status=v.status,  # type: ignore[arg-type]
        approvals=len(v.approvals),
        rejections=len(v.rejections),
        needed=v.needed,
        eligible=v.eligible,
        penalty=v.penalty,
        my_vote="approve" if mine in v.approvals else "reject" if mine in v.rejections else None,
        proof_url=f"/v1/submissions/{submission_id}/proof",
    )


@router.get(
    "/submissions/{submission_id}/proof",
    response_class=Response,
    responses={
        200: {
            "description": "the proof's bytes (local storage): a photo, or a text proof",
            "content": {
                mime: {"schema": {"type": "string", "format": "binary"}}
                for mime in ("image/jpeg", "image/png", "text/plain")
            },
        },
        307: {"description": "a presigned URL, valid for 5 minutes (S3)"},
        403: {"description": "participants only"},
        404: {},
    },
)
def get_proof(submission_id: UUID, user: CurrentUser, services: ServicesDep) -> Response:
    v, _ = _submission(services, submission_id, user)
    headers = {"Cache-Control": "private, no-store"}
    url = services.proofs.url_for(v.proof_key, PROOF_URL_SECONDS)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=headers)
    data = services.proofs.get(v.proof_key)
    headers |= {"X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"}
    return Response(data, media_type=v.mime_type, headers=headers)


# -- voting -----------------------------------------------------------------------------


@router.post(
    "/submissions/{submission_id}/votes",
    status_code=201,
    response_model=VoteOut,
    responses={
        403: {"description": "your own submission, or not a participant"},
        404: {},
        409: {"description": "already voted, or the submission is decided or closed"},
    },
)
def vote(
    submission_id: UUID,
    body: VoteIn,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Approve or reject another participant's submission; the deciding vote settles its
    verdict (and a rejection's penalty)."""

    def act() -> tuple[int, dict[str, Any]]:
        verification = services.ledger.verification(submission_id)
        visible_challenge(services, verification.challenge_id, user)
        counted = services.ledger.vote(
            submission_id, user.id, body.approve, cause_of(user, request)
        )
        out = VoteOut(
            status=counted.status,  # type: ignore[arg-type]
            approvals=counted.approvals,
            rejections=counted.rejections,
            needed=counted.needed,
            eligible=counted.eligible,
            position=counted.position,
        )
        return 201, out.model_dump(mode="json")

    route = f"POST /submissions/{submission_id}/votes"
    return run_idempotent(services, user.id, route, idempotency_key, body.model_dump(), act)


@router.get("/reviews", response_model=list[ReviewOut])
def reviews(
    user: CurrentUser,
    services: ServicesDep,
    min_position: Annotated[int | None, Query(ge=0)] = None,
) -> list[ReviewOut]:
    """Others' pending submissions you can still vote on, soonest closing first."""
    wait_for_position(services, min_position)
    delay, now, me = services.ledger.settings.settlement_delay, services.clock.now(), str(user.id)
    found: list[ReviewOut] = []
    for challenge_id in queries.active_challenges_of(services.reads, user.id):
        challenge = services.ledger.challenge(challenge_id)
        closes_at = challenge.settles_at(delay)
        if challenge.status != ACTIVE or now >= closes_at:
            continue
        for record in challenge.submissions.values():
            if record.status != PENDING or record.user_id == user.id:
                continue
            v = services.ledger.verification(record.submission_id)
            if v.status != PENDING or me in v.approvals or me in v.rejections:
                continue
            found.append(
                ReviewOut(
                    submission_id=record.submission_id,
                    challenge_id=challenge_id,
                    challenge_name=challenge.terms.name,
                    user_id=record.user_id,
                    slot=record.slot,
                    proof_type=v.proof_type,
                    flags=list(v.flags),
                    approvals=len(v.approvals),
                    rejections=len(v.rejections),
                    needed=v.needed,
                    eligible=v.eligible,
                    closes_at=closes_at,
                    proof_url=f"/v1/submissions/{record.submission_id}/proof",
                )
            )
    return found
