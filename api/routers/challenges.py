"""Challenges: draft, edit, publish, join, cancel, settle, and the views of them (rules §3, §5).

Who sees what (rules §7): a draft only its owner; a private challenge only its owner,
allow-listed users and participants; admins everything. For anyone else such a challenge
does not exist (404). Public and unlisted challenges are visible to every signed-in user;
the challenge's ledger is for participants only (403).

The single-challenge view is built from the challenge aggregate (it holds the rules, the
allow-list and the outcome, and needs no read-your-writes wait); lists, participants and the
challenge's ledger come from the read models (``min_position`` waits for a command's
position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request

from api.bootstrap import Services
from api.challenge_schemas import (
    CancelIn,
    ChallengeCreatedOut,
    ChallengeIn,
    ChallengeLedgerOut,
    ChallengeOut,
    ChallengePage,
    ChallengePatch,
    ChallengeSummaryOut,
    JoinIn,
    JoinOut,
    ParticipantOut,
    PublishIn,
    terms_of,
)
from api.deps import CurrentUser, ServicesDep, cause_of, request_id, wait_for_position
from api.errors import ApiError
from api.idempotency import Idempotent, Respond
from api.threaded_routes import ThreadedRoute
from application.access import (
    Caller,
    acting_on,
    participant_challenge,
    seen_by,
    visible_challenge,
)
from application.receipts import Joined
from domain.challenge import Challenge
from domain.challenge_view import challenge_view
from projections import challenge_queries as queries

router = APIRouter(prefix="/challenges", tags=["challenges"], route_class=ThreadedRoute)

MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]


def view(
    challenge: Challenge, user: Caller, services: Services, position: int | None = None
) -> ChallengeOut:
    delay = services.ledger.settings.settlement_delay
    seen = challenge_view(challenge, user.id, user.is_admin, delay, position)
    return ChallengeOut.model_validate(seen)


def seen(
    challenge_id: UUID, user: Caller, services: Services, position: int | None = None
) -> ChallengeOut:
    return ChallengeOut.model_validate(seen_by(services.ledger, challenge_id, user, position))


def saved_challenge(saved: Sequence[object], challenge_id: UUID) -> Challenge | None:
    """The challenge among the aggregates a command saved (as they are after the command)."""
    found = [a for a in saved if isinstance(a, Challenge) and a.id == challenge_id]
    return found[0] if found else None


def viewed_after(challenge_id: UUID, user: Caller, services: Services) -> Respond:
    """The challenge's view after a command, built in the command's transaction from the
    challenge it saved (see ``api.idempotency``)."""

    def respond(_: UUID, position: int, saved: Sequence[object]) -> ChallengeOut | None:
        challenge = saved_challenge(saved, challenge_id)
        if challenge is None:
            return None  # the challenge did not change: the response is stored after the command
        return view(challenge, user, services, position)

    return respond


# -- commands ---------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=ChallengeCreatedOut,
    responses={422: {"description": "a rule is out of bounds"}},
)
def create_challenge(
    body: ChallengeIn,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> ChallengeCreatedOut:
    """Draft a challenge (its invite code is drawn now; publish it to open it)."""

    def drafted(
        challenge_id: UUID, position: int, saved: Sequence[object]
    ) -> ChallengeCreatedOut | None:
        challenge = saved_challenge(saved, challenge_id)
        if challenge is None or challenge.invite_code is None:
            return None  # not this command's save: the response is stored after it
        return ChallengeCreatedOut(
            id=challenge.id, invite_code=challenge.invite_code, position=position
        )

    # The id is the Idempotency-Key's (a retry names the same draft), or new.
    with idempotent.operation(body, drafted) as draft:
        terms, cause = terms_of(body.model_dump()), cause_of(user, request)
        made = services.ledger.create_challenge(user.id, cause, challenge_id=draft.id, **terms)
        return draft.answer(
            ChallengeCreatedOut(
                id=made.challenge_id, invite_code=made.invite_code, position=made.position
            )
        )


@router.patch(
    "/{challenge_id}",
    response_model=ChallengeOut,
    responses={403: {}, 404: {}, 409: {"description": "no longer a draft"}},
)
def edit_challenge(
    challenge_id: UUID,
    body: ChallengePatch,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> ChallengeOut:
    """Change a draft's fields or rules (owner only)."""
    changes = terms_of(body.model_dump(exclude_unset=True))
    with idempotent.operation(body, viewed_after(challenge_id, user, services)) as edit:
        cause = acting_on(services.ledger, challenge_id, user, request_id(request))
        done = services.ledger.edit_challenge(challenge_id, user.id, cause, **changes)
        return edit.answer(seen(challenge_id, user, services, done.position))


@router.post(
    "/{challenge_id}/publish",
    response_model=ChallengeOut,
    responses={402: {"description": "the owner cannot stake"}, 403: {}, 404: {}, 409: {}},
)
def publish(
    challenge_id: UUID,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
    body: PublishIn | None = None,
) -> ChallengeOut:
    """Open the challenge; the owner joins and stakes in the same step."""
    given = body or PublishIn(timezone=None)
    with idempotent.operation(given, viewed_after(challenge_id, user, services)) as publishing:
        cause = acting_on(services.ledger, challenge_id, user, request_id(request))
        done = services.ledger.publish(challenge_id, user.id, cause, timezone=given.timezone)
        return publishing.answer(seen(challenge_id, user, services, done.position))


@router.post(
    "/join",
    status_code=201,
    response_model=JoinOut,
    responses={
        200: {"model": JoinOut, "description": "already a participant: nothing changed"},
        402: {"description": "cannot afford the stake"},
        404: {
            "description": "no challenge has that invite code, or none you may see: a draft's "
            "code and a private challenge's you are not invited to answer the same"
        },
        409: {"description": "full, started, or not open"},
        429: {"description": "more than 30 join attempts in a minute"},
    },
)
def join(
    body: JoinIn,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> JoinOut:
    """Join by invite code, locking the stake. Joining again answers 200 with
    ``joined: false`` and the existing participation (no second stake)."""
    services.limits.check("join", str(user.id))  # 30/min: codes cannot be probed at speed

    def joined(_: UUID, position: int, saved: Sequence[object]) -> JoinOut | None:
        # Only a join that took the user in changes the challenge (a re-join changes nothing,
        # or opens a wallet missing since an old join).
        found = [a for a in saved if isinstance(a, Challenge) and a.is_participant(user.id)]
        return (
            JoinOut.model_validate(Joined.recorded(found[0], user.id, position, True))
            if found
            else None
        )

    with idempotent.operation(body, joined) as joining:
        cause = cause_of(user, request)
        done = services.ledger.join(body.invite_code, user.id, body.timezone, cause)
        return joining.answer(JoinOut.model_validate(done), status=201 if done.joined else 200)


@router.post(
    "/{challenge_id}/cancel",
    response_model=ChallengeOut,
    responses={403: {}, 404: {}, 409: {"description": "started, settled or cancelled"}},
)
def cancel(
    challenge_id: UUID,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
    body: CancelIn | None = None,
) -> ChallengeOut:
    """The owner cancels a draft, or an active challenge before it starts; an admin may
    cancel any unsettled challenge. Every stake and penalty goes back to its lots."""
    given = body or CancelIn()
    with idempotent.operation(given, viewed_after(challenge_id, user, services)) as cancelling:
        cause = acting_on(services.ledger, challenge_id, user, request_id(request))
        done = services.ledger.cancel(
            challenge_id, user.id, cause, is_admin=user.is_admin, reason=given.reason
        )
        return cancelling.answer(seen(challenge_id, user, services, done.position))


@router.post(
    "/{challenge_id}/settle",
    response_model=ChallengeOut,
    responses={403: {}, 404: {}, 409: {"description": "not due yet, or cancelled"}},
)
def settle(
    challenge_id: UUID,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    idempotent: Idempotent,
) -> ChallengeOut:
    """Divide the pool once ``settles_at`` has passed (owner or admin; the settlement worker
    does it by itself). Settling a settled challenge changes nothing."""
    with idempotent.operation(None, viewed_after(challenge_id, user, services)) as settling:
        cause = acting_on(services.ledger, challenge_id, user, request_id(request))
        done = services.ledger.settle(challenge_id, user.id, cause, is_admin=user.is_admin)
        return settling.answer(seen(challenge_id, user, services, done.position))


# -- queries ----------------------------------------------------------------------------


@router.get("", response_model=ChallengePage)
def list_challenges(
    user: CurrentUser,
    services: ServicesDep,
    scope: Literal["mine", "joined", "public"] = "public",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    min_position: MinPosition = None,
) -> ChallengePage:
    """``mine``: yours, drafts included; ``joined``: those you take part in; ``public``:
    published public challenges. Newest first."""
    wait_for_position(services, min_position)
    try:
        rows, next_cursor = queries.list_challenges(
            services.reads, user.id, scope, cursor=cursor, limit=limit
        )
    except ValueError:
        raise ApiError(422, "invalid_cursor", "the cursor is not one we issued") from None
    return ChallengePage(
        items=[ChallengeSummaryOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{challenge_id}", response_model=ChallengeOut, responses={404: {}})
def get_challenge(challenge_id: UUID, user: CurrentUser, services: ServicesDep) -> ChallengeOut:
    """Status, rules, pool, participants and outcome."""
    return seen(challenge_id, user, services)


@router.get(
    "/{challenge_id}/participants", response_model=list[ParticipantOut], responses={404: {}}
)
def get_participants(
    challenge_id: UUID, user: CurrentUser, services: ServicesDep, min_position: MinPosition = None
) -> list[ParticipantOut]:
    visible_challenge(services.ledger, challenge_id, user)
    wait_for_position(services, min_position)
    return [ParticipantOut(**r) for r in queries.participants(services.reads, challenge_id)]


@router.get(
    "/{challenge_id}/ledger",
    response_model=ChallengeLedgerOut,
    responses={403: {"description": "participants only"}, 404: {}},
)
def get_ledger(
    challenge_id: UUID, user: CurrentUser, services: ServicesDep, min_position: MinPosition = None
) -> ChallengeLedgerOut:
    """The pool and every journal entry that moved it (participants only)."""
    participant_challenge(services.ledger, challenge_id, user)
    wait_for_position(services, min_position)
    found = queries.challenge_ledger(services.reads, challenge_id)
    return ChallengeLedgerOut(
        challenge_id=challenge_id, position=services.reads.position(), **found
    )
