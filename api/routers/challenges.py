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

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request

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
    challenge_view,
    terms_of,
)
from api.deps import CurrentUser, ServicesDep, cause_of, wait_for_position
from api.errors import ApiError
from api.idempotency import run_creating, run_idempotent
from application.access import Caller, participant_challenge, visible_challenge
from domain.challenge import Challenge
from projections import challenge_queries as queries

router = APIRouter(prefix="/challenges", tags=["challenges"])

Answer = tuple[int, dict[str, Any]]
Responder = Callable[[UUID, int, Sequence[object]], Answer | None]
"""Builds a command's response from what its save stored (see ``api.idempotency``)."""

Key = Annotated[str | None, Header(max_length=200, description="replays the first response")]
MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]


def view(
    challenge: Challenge, user: Caller, services: Services, position: int | None = None
) -> ChallengeOut:
    delay = services.ledger.settings.settlement_delay
    return challenge_view(challenge, user.id, user.is_admin, delay, position)


def created(challenge_id: UUID, invite_code: str, position: int) -> Answer:
    out = ChallengeCreatedOut(id=challenge_id, invite_code=invite_code, position=position)
    return 201, out.model_dump(mode="json")


def respond_created(challenge_id: UUID, position: int, saved: Sequence[object]) -> Answer | None:
    """The draft's answer, built in the save that created it."""
    challenge = saved_challenge(saved, challenge_id)
    if challenge is None or challenge.invite_code is None:
        return None  # not this command's save: the response is stored after it
    return created(challenge.id, challenge.invite_code, position)


def saved_challenge(saved: Sequence[object], challenge_id: UUID) -> Challenge | None:
    """The challenge among the aggregates a command saved (as they are after the command)."""
    found = [a for a in saved if isinstance(a, Challenge) and a.id == challenge_id]
    return found[0] if found else None


def responder(challenge_id: UUID, user: Caller, services: Services) -> Responder:
    """The challenge's view after a command, built in the command's transaction."""

    def respond(
        _: UUID, position: int, saved: Sequence[object]
    ) -> tuple[int, dict[str, Any]] | None:
        challenge = saved_challenge(saved, challenge_id)
        if challenge is None:
            return None  # the challenge did not change: the response is stored after the command
        return 200, view(challenge, user, services, position).model_dump(mode="json")

    return respond


def run_on_challenge(
    services: Services,
    user: Caller,
    challenge_id: UUID,
    route: str,
    key: str | None,
    body: Any,
    command: Callable[[Challenge], int],
) -> Any:
    """Run a command on a challenge the user can see (404 otherwise) once per
    Idempotency-Key; ``command`` returns its position and the answer is the challenge's
    view after it."""

    def act(_: UUID) -> tuple[int, dict[str, Any]]:
        position = command(visible_challenge(services.ledger, challenge_id, user))
        after = services.ledger.challenge(challenge_id)
        return 200, view(after, user, services, position).model_dump(mode="json")

    respond = responder(challenge_id, user, services)
    return run_creating(services, user.id, route, key, body, act, respond)


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
    idempotency_key: Key = None,
) -> Any:
    """Draft a challenge (its invite code is drawn now; publish it to open it)."""

    def act(challenge_id: UUID) -> Answer:
        # The id is the Idempotency-Key's (a retry names the same draft), or new.
        terms, cause = terms_of(body.model_dump()), cause_of(user, request)
        made = services.ledger.create_challenge(user.id, cause, challenge_id=challenge_id, **terms)
        return created(made.challenge_id, made.invite_code, made.position)

    fingerprint = body.model_dump(mode="json")
    return run_creating(
        services, user.id, "POST /challenges", idempotency_key, fingerprint, act, respond_created
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
    idempotency_key: Key = None,
) -> Any:
    """Change a draft's fields or rules (owner only)."""
    changes = terms_of(body.model_dump(exclude_unset=True))

    def command(_: Challenge) -> int:
        cause = cause_of(user, request)
        return services.ledger.edit_challenge(challenge_id, user.id, cause, **changes).position

    route, fingerprint = f"PATCH /challenges/{challenge_id}", body.model_dump(mode="json")
    return run_on_challenge(
        services, user, challenge_id, route, idempotency_key, fingerprint, command
    )


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
    body: PublishIn | None = None,
    idempotency_key: Key = None,
) -> Any:
    """Open the challenge; the owner joins and stakes in the same step."""
    given = body or PublishIn(timezone=None)

    def command(_: Challenge) -> int:
        cause = cause_of(user, request)
        return services.ledger.publish(
            challenge_id, user.id, cause, timezone=given.timezone
        ).position

    route = f"POST /challenges/{challenge_id}/publish"
    return run_on_challenge(
        services, user, challenge_id, route, idempotency_key, given.model_dump(), command
    )


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
    idempotency_key: Key = None,
) -> Any:
    """Join by invite code, locking the stake. Joining again answers 200 with
    ``joined: false`` and the existing participation (no second stake)."""
    services.limits.check("join", str(user.id))  # 30/min: codes cannot be probed at speed

    def act() -> Answer:
        cause = cause_of(user, request)
        done = services.ledger.join(body.invite_code, user.id, body.timezone, cause)
        me = services.ledger.challenge(done.challenge_id).participant(user.id)
        return (201 if done.joined else 200), JoinOut.of(done, me).model_dump(mode="json")

    return run_idempotent(
        services, user.id, "POST /challenges/join", idempotency_key, body.model_dump(), act
    )


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
    body: CancelIn | None = None,
    idempotency_key: Key = None,
) -> Any:
    """The owner cancels a draft, or an active challenge before it starts; an admin may
    cancel any unsettled challenge. Every stake and penalty goes back to its lots."""
    given = body or CancelIn()

    def command(challenge: Challenge) -> int:
        as_admin = challenge.acts_as_admin(user.id, user.is_admin)
        cause = cause_of(user, request, as_admin=as_admin)
        return services.ledger.cancel(
            challenge_id, user.id, cause, is_admin=user.is_admin, reason=given.reason
        ).position

    route = f"POST /challenges/{challenge_id}/cancel"
    return run_on_challenge(
        services, user, challenge_id, route, idempotency_key, given.model_dump(), command
    )


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
    idempotency_key: Key = None,
) -> Any:
    """Divide the pool once ``settles_at`` has passed (owner or admin; the settlement worker
    does it by itself). Settling a settled challenge changes nothing."""

    def command(challenge: Challenge) -> int:
        as_admin = challenge.acts_as_admin(user.id, user.is_admin)
        cause = cause_of(user, request, as_admin=as_admin)
        return services.ledger.settle(challenge_id, user.id, cause, is_admin=user.is_admin).position

    route = f"POST /challenges/{challenge_id}/settle"
    return run_on_challenge(services, user, challenge_id, route, idempotency_key, {}, command)


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
    challenge = visible_challenge(services.ledger, challenge_id, user)
    return view(challenge, user, services)


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
