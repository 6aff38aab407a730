"""Submissions and peer review (rules §4): upload a proof, read it, vote on others'.

Each route parses its input, makes one call to the submission service
(:mod:`application.submissions`, where the upload's plan, store, submit and clean-up live)
and maps the answer. The form is read by :mod:`api.proof_form`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.deps import CurrentUser, ServicesDep, SubmissionsDep, cause_of, wait_for_position
from api.idempotency import run_idempotent
from api.proof_form import MULTIPART_BODY, read_proof
from api.submission_schemas import (
    ReviewOut,
    SubmissionItemOut,
    SubmissionMadeOut,
    SubmissionOut,
    VoteIn,
    VoteOut,
)

router = APIRouter(tags=["submissions"])

Key = Annotated[str | None, Header(max_length=200)]


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
    idempotency_key: Key = None,
) -> Any:
    """Submit a proof for the current slot (multipart: ``proof_type``, ``text``, ``file``)."""
    proof = await read_proof(request, services.config.max_proof_bytes)
    cause = cause_of(user, request)

    def act() -> tuple[int, dict[str, Any]]:
        made = services.submissions.submit(challenge_id, user, proof, cause)
        return 201, SubmissionMadeOut.of(challenge_id, proof.proof_type, made).model_dump(
            mode="json"
        )

    fingerprint = {"proof_type": proof.proof_type, "sha256": proof.sha256}
    route = f"POST /challenges/{challenge_id}/submissions"
    return await run_in_threadpool(
        run_idempotent, services, user.id, route, idempotency_key, fingerprint, act
    )


@router.get(
    "/challenges/{challenge_id}/submissions",
    response_model=list[SubmissionItemOut],
    responses={403: {"description": "participants only"}, 404: {}},
)
def list_submissions(
    challenge_id: UUID,
    user: CurrentUser,
    submissions: SubmissionsDep,
    status: Literal["pending", "accepted", "rejected", "expired"] | None = None,
) -> list[SubmissionItemOut]:
    """Every submission of the challenge (participants only), by slot."""
    return [SubmissionItemOut.of(s) for s in submissions.submissions(challenge_id, user, status)]


@router.get(
    "/submissions/{submission_id}",
    response_model=SubmissionOut,
    responses={403: {"description": "participants only"}, 404: {}},
)
def get_submission(
    submission_id: UUID, user: CurrentUser, submissions: SubmissionsDep
) -> SubmissionOut:
    return SubmissionOut.of(submissions.submission(submission_id, user), user.id)


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
    idempotency_key: Key = None,
) -> Any:
    """Approve or reject another participant's submission; the deciding vote settles its
    verdict (and a rejection's penalty)."""

    def act() -> tuple[int, dict[str, Any]]:
        cause = cause_of(user, request)
        counted = services.submissions.vote(submission_id, user, body.approve, cause)
        return 201, VoteOut.of(counted).model_dump(mode="json")

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
    return [ReviewOut.of(r) for r in services.submissions.reviews(user.id)]
