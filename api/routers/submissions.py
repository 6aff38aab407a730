"""Submissions and peer review (rules §4): upload a proof, read it, vote on others'.

Each route parses its input, makes one call to the submission service
(:mod:`application.submissions`, where the upload's plan, store, submit and clean-up live)
and maps the answer. The form is read by :mod:`api.proof_form`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.deps import CurrentUser, ServicesDep, SubmissionsDep, cause_of, wait_for_position
from api.idempotency import Idempotent
from api.proof_form import MULTIPART_BODY, read_proof
from api.submission_schemas import (
    ProofSent,
    ReviewOut,
    SubmissionItemOut,
    SubmissionMadeOut,
    SubmissionOut,
    VoteIn,
    VoteOut,
)
from api.threaded_routes import ThreadedRoute
from application.receipts import SubmissionMade, VoteCounted
from domain.values import SubmissionStatus
from domain.verification import Verification

router = APIRouter(tags=["submissions"], route_class=ThreadedRoute)


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
        415: {
            "description": "not a JPEG/PNG, sent as another type than its bytes are, or a "
            "proof type the rules do not allow"
        },
        422: {"description": "a bad form, or a photo that does not decode whole or is too big"},
    },
)
async def submit(
    challenge_id: UUID,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> SubmissionMadeOut:
    """Submit a proof for the current slot (multipart: ``proof_type``, ``text``, ``file``)."""
    proof = await read_proof(request, services.config.max_proof_bytes)
    cause = cause_of(user, request)

    def submitted(_: UUID, position: int, saved: Sequence[object]) -> SubmissionMadeOut | None:
        found = [a for a in saved if isinstance(a, Verification)]
        return (
            SubmissionMadeOut.model_validate(SubmissionMade.recorded(found[0], position))
            if found
            else None
        )

    def record() -> SubmissionMadeOut:
        # A key covers the proof's type and digest, not the multipart framing.
        with idempotent.operation(ProofSent.of(proof), submitted) as submission:
            made = services.submissions.submit(challenge_id, user, proof, cause)
            return submission.answer(SubmissionMadeOut.model_validate(made))

    return await run_in_threadpool(record)


@router.get(
    "/challenges/{challenge_id}/submissions",
    response_model=list[SubmissionItemOut],
    responses={403: {"description": "participants only"}, 404: {}},
)
def list_submissions(
    challenge_id: UUID,
    user: CurrentUser,
    submissions: SubmissionsDep,
    status: SubmissionStatus | None = None,
) -> list[SubmissionItemOut]:
    """Every submission of the challenge (participants only), by slot."""
    found = submissions.submissions(challenge_id, user, status)
    return [SubmissionItemOut.model_validate(s) for s in found]


@router.get(
    "/submissions/{submission_id}",
    response_model=SubmissionOut,
    responses={403: {"description": "participants only"}, 404: {}},
)
def get_submission(
    submission_id: UUID, user: CurrentUser, submissions: SubmissionsDep
) -> SubmissionOut:
    return SubmissionOut.model_validate(submissions.submission(submission_id, user))


@router.get(
    "/submissions/{submission_id}/proof",
    response_class=Response,
    responses={
        200: {
            "description": "the proof's bytes (local storage): a photo (re-encoded without "
            "its metadata), or a text proof",
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
def get_proof(submission_id: UUID, user: CurrentUser, submissions: SubmissionsDep) -> Response:
    served = submissions.proof(submission_id, user)
    headers = {"Cache-Control": "private, no-store"}
    if served.url is not None:
        return RedirectResponse(served.url, status_code=307, headers=headers)
    headers |= {"X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"}
    return Response(served.data, media_type=served.mime_type, headers=headers)


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
    idempotent: Idempotent,
) -> VoteOut:
    """Approve or reject another participant's submission; the deciding vote settles its
    verdict (and a rejection's penalty)."""

    def counted(_: UUID, position: int, saved: Sequence[object]) -> VoteOut | None:
        found = [a for a in saved if isinstance(a, Verification) and a.id == submission_id]
        return VoteOut.model_validate(VoteCounted.recorded(found[0], position)) if found else None

    with idempotent.operation(body, counted) as voting:
        cause = cause_of(user, request)
        done = services.submissions.vote(submission_id, user, body.approve, cause)
        return voting.answer(VoteOut.model_validate(done))


@router.get("/reviews", response_model=list[ReviewOut])
def reviews(
    user: CurrentUser,
    services: ServicesDep,
    min_position: Annotated[int | None, Query(ge=0)] = None,
) -> list[ReviewOut]:
    """Others' pending submissions you can still vote on, soonest closing first."""
    wait_for_position(services, min_position)
    return [ReviewOut.model_validate(r) for r in services.submissions.reviews(user.id)]
