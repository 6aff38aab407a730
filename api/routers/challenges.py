"""Challenges: draft, edit, publish, join, cancel, settle, and the views of them (SPEC §3, §5).

Who sees what (SPEC §7): a draft only its owner; a private challenge only its owner,
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
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request

from adapters.atomic_responses import Responder
from adapters.users import AuthUser
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
    MeOut,
    OutcomeOut,
    ParticipantOut,
    PublishIn,
    RulesOut,
    TimeWindowOut,
    VerificationOut,
)
from api.deps import CurrentUser, ServicesDep, wait_for_position
from api.errors import ApiError
from api.idempotency import run_creating, run_idempotent
from api.routers.wallet import request_id
from domain.aggregate import Cause
from domain.challenge import CANCELLED, DRAFT, SETTLED, Challenge
from domain.errors import NotFound
from projections import challenge_queries as queries

router = APIRouter(prefix="/challenges", tags=["challenges"])

Key = Annotated[str | None, Header(max_length=200, description="replays the first response")]
MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]


def can_see(challenge: Challenge, user: AuthUser) -> bool:
    if user.is_admin or challenge.owner_id == user.id or challenge.is_participant(user.id):
        return True
    if challenge.status == DRAFT:
        return False
    if challenge.terms.visibility == "private":
        return user.id in challenge.terms.allow_list
    return True


def visible_challenge(services: Services, challenge_id: UUID, user: AuthUser) -> Challenge:
    """The challenge, or 404 exactly as if it did not exist."""
    challenge = services.ledger.challenge(challenge_id)
    if not can_see(challenge, user):
        raise NotFound(f"no challenge {challenge_id}")
    return challenge


def participant_challenge(services: Services, challenge_id: UUID, user: AuthUser) -> Challenge:
    """The challenge, for a participant only (404 if invisible, else 403)."""
    challenge = visible_challenge(services, challenge_id, user)
    challenge.participant(user.id)
    return challenge


def cause_of(user: AuthUser, request: Request, *, as_admin: bool = False) -> Cause:
    rid = request_id(request)
    return Cause.admin(user.id, rid) if as_admin else Cause.user(user.id, rid)


def view(
    challenge: Challenge, user: AuthUser, delay: timedelta, position: int | None = None
) -> ChallengeOut:
    t = challenge.terms
    me = challenge.participants.get(str(user.id))
    outcome = None
    if challenge.status in (SETTLED, CANCELLED):
        finishers = [UUID(u) for u in challenge.finishers]
        outcome = OutcomeOut(
            result="cancelled"
            if challenge.status == CANCELLED
            else ("paid_out" if finishers else "forfeited"),
            finishers=finishers,
            fee=challenge.fee,
            forfeited=challenge.forfeited,
            returned=challenge.returned,
            paid_out=challenge.paid_out,
        )
    return ChallengeOut(
        id=challenge.id,
        owner_id=challenge.owner_id,
        name=t.name,
        description=t.description,
        visibility=t.visibility,
        allow_list=list(t.allow_list) if user.is_admin or user.id == challenge.owner_id else None,
        invite_code=challenge.invite_code,
        status=challenge.status,  # type: ignore[arg-type]
        starts_at=t.starts_at,
        ends_at=t.ends_at,
        settles_at=challenge.settles_at(delay),
        entry_stake=t.entry_stake,
        max_participants=t.max_participants,
        rules=RulesOut(
            frequency=t.frequency,
            time_window=TimeWindowOut(
                start=t.window_start, end=t.window_end, timezone=t.timezone, scope=t.scope
            ),
            proof_types=list(t.proof_types),
            verification=VerificationOut(mode=t.verification_mode, quorum_pct=t.quorum_pct),
            grace=t.grace,
            penalty_tokens=t.penalty_tokens,
        ),
        participants=len(challenge.participants),
        pool=challenge.pool,
        outcome=outcome,
        me=MeOut(
            participant=me is not None,
            owner=user.id == challenge.owner_id,
            timezone=me.timezone if me else None,
            stake=me.stake if me else 0,
            penalties=me.penalties if me else 0,
        ),
        version=challenge.version,
        position=position,
    )


def terms_of(given: dict[str, Any]) -> dict[str, Any]:
    """The HTTP shape (nested rules) as the ledger's flat terms; ``None`` means not given."""
    rules = given.pop("rules", None) or {}
    window = rules.pop("time_window", None) or {}
    verification = rules.pop("verification", None) or {}
    flat = {
        **given,
        **rules,
        "window_start": window.get("start"),
        "window_end": window.get("end"),
        "timezone": window.get("timezone"),
        "scope": window.get("scope"),
        "verification_mode": verification.get("mode"),
        "quorum_pct": verification.get("quorum_pct"),
    }
    return {k: v for k, v in flat.items() if v is not None}


def _after(services: Services, challenge_id: UUID, user: AuthUser, position: int) -> ChallengeOut:
    challenge = services.ledger.challenge(challenge_id)
    return view(challenge, user, services.ledger.settings.settlement_delay, position)


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

    def answer(challenge_id: UUID, invite_code: str, position: int) -> tuple[int, dict[str, Any]]:
        out = ChallengeCreatedOut(id=challenge_id, invite_code=invite_code, position=position)
        return 201, out.model_dump(mode="json")

    def act(challenge_id: UUID) -> tuple[int, dict[str, Any]]:
        # The id is the Idempotency-Key's (a retry names the same draft), or new.
        made = services.ledger.create_challenge(
            user.id,
            cause_of(user, request),
            challenge_id=challenge_id,
            **terms_of(body.model_dump()),
        )
        return answer(made.challenge_id, made.invite_code, made.position)

    def respond(
        challenge_id: UUID, position: int, saved: Sequence[object]
    ) -> tuple[int, dict[str, Any]] | None:
        challenge = saved_challenge(saved, challenge_id)
        if challenge is None or challenge.invite_code is None:
            return None  # not this command's save: the response is stored after it
        return answer(challenge.id, challenge.invite_code, position)

    return run_creating(
        services,
        user.id,
        "POST /challenges",
        idempotency_key,
        body.model_dump(mode="json"),
        act,
        respond,
    )


def saved_challenge(saved: Sequence[object], challenge_id: UUID) -> Challenge | None:
    """The challenge among the aggregates a command saved (as they are after the command)."""
    found = [a for a in saved if isinstance(a, Challenge) and a.id == challenge_id]
    return found[0] if found else None


def responder(challenge_id: UUID, user: AuthUser, services: Services) -> Responder:
    """The challenge's view after a command, built in the command's transaction."""
    delay = services.ledger.settings.settlement_delay

    def respond(
        _: UUID, position: int, saved: Sequence[object]
    ) -> tuple[int, dict[str, Any]] | None:
        challenge = saved_challenge(saved, challenge_id)
        if challenge is None:
            return None  # the challenge did not change: the response is stored after the command
        return 200, view(challenge, user, delay, position).model_dump(mode="json")

    return respond


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

    def act() -> tuple[int, dict[str, Any]]:
        visible_challenge(services, challenge_id, user)
        changes = terms_of(body.model_dump(exclude_unset=True))
        done = services.ledger.edit_challenge(
            challenge_id, user.id, cause_of(user, request), **changes
        )
        return 200, _after(services, challenge_id, user, done.position).model_dump(mode="json")

    route = f"PATCH /challenges/{challenge_id}"
    return run_creating(
        services,
        user.id,
        route,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda _: act(),
        responder(challenge_id, user, services),
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
    body = body or PublishIn(timezone=None)

    def act() -> tuple[int, dict[str, Any]]:
        visible_challenge(services, challenge_id, user)
        done = services.ledger.publish(
            challenge_id, user.id, cause_of(user, request), timezone=body.timezone
        )
        return 200, _after(services, challenge_id, user, done.position).model_dump(mode="json")

    route = f"POST /challenges/{challenge_id}/publish"
    return run_creating(
        services,
        user.id,
        route,
        idempotency_key,
        body.model_dump(),
        lambda _: act(),
        responder(challenge_id, user, services),
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

    def act() -> tuple[int, dict[str, Any]]:
        done = services.ledger.join(
            body.invite_code, user.id, body.timezone, cause_of(user, request)
        )
        me = services.ledger.challenge(done.challenge_id).participant(user.id)
        out = JoinOut(
            challenge_id=done.challenge_id,
            joined=done.joined,
            stake=me.stake,
            timezone=me.timezone,
            position=done.position,
        )
        return (201 if done.joined else 200), out.model_dump(mode="json")

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
    body = body or CancelIn()

    def act() -> tuple[int, dict[str, Any]]:
        challenge = visible_challenge(services, challenge_id, user)
        as_admin = user.is_admin and challenge.owner_id != user.id
        done = services.ledger.cancel(
            challenge_id,
            user.id,
            cause_of(user, request, as_admin=as_admin),
            is_admin=user.is_admin,
            reason=body.reason,
        )
        return 200, _after(services, challenge_id, user, done.position).model_dump(mode="json")

    route = f"POST /challenges/{challenge_id}/cancel"
    return run_creating(
        services,
        user.id,
        route,
        idempotency_key,
        body.model_dump(),
        lambda _: act(),
        responder(challenge_id, user, services),
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

    def act() -> tuple[int, dict[str, Any]]:
        challenge = visible_challenge(services, challenge_id, user)
        as_admin = user.is_admin and challenge.owner_id != user.id
        done = services.ledger.settle(
            challenge_id,
            user.id,
            cause_of(user, request, as_admin=as_admin),
            is_admin=user.is_admin,
        )
        return 200, _after(services, challenge_id, user, done.position).model_dump(mode="json")

    route = f"POST /challenges/{challenge_id}/settle"
    return run_creating(
        services,
        user.id,
        route,
        idempotency_key,
        {},
        lambda _: act(),
        responder(challenge_id, user, services),
    )


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
    challenge = visible_challenge(services, challenge_id, user)
    return view(challenge, user, services.ledger.settings.settlement_delay)


@router.get(
    "/{challenge_id}/participants", response_model=list[ParticipantOut], responses={404: {}}
)
def get_participants(
    challenge_id: UUID, user: CurrentUser, services: ServicesDep, min_position: MinPosition = None
) -> list[ParticipantOut]:
    visible_challenge(services, challenge_id, user)
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
    participant_challenge(services, challenge_id, user)
    wait_for_position(services, min_position)
    found = queries.challenge_ledger(services.reads, challenge_id)
    return ChallengeLedgerOut(
        challenge_id=challenge_id, position=services.reads.position(), **found
    )
