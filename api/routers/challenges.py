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

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, Header, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from adapters.users import AuthUser
from api.bootstrap import Services
from api.deps import CurrentUser, ServicesDep, wait_for_position
from api.errors import ApiError
from api.idempotency import run_idempotent
from api.routers.wallet import request_id
from api.schemas import Body
from domain import ids
from domain.aggregate import Cause
from domain.challenge import CANCELLED, DRAFT, SETTLED, Challenge
from domain.errors import NotFound
from projections import challenge_queries as queries

router = APIRouter(prefix="/challenges", tags=["challenges"])

Key = Annotated[str | None, Header(max_length=200, description="replays the first response")]
MinPosition = Annotated[int | None, Query(ge=0, description="wait until read models reach it")]
ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["07:00"])]
Whole = Annotated[int, Field(strict=True, ge=0)]

# -- request bodies ---------------------------------------------------------------------


class TimeWindowIn(Body):
    start: ClockTime = "00:00"
    end: ClockTime = Field("00:00", description="end <= start runs overnight into the next day")
    timezone: str = Field("UTC", description="IANA name", examples=["Europe/Paris"])
    scope: Literal["participant_local", "challenge_tz"] = "participant_local"


class VerificationIn(Body):
    mode: Literal["auto", "quorum"] = "auto"
    quorum_pct: Annotated[int, Field(strict=True, ge=50, le=100)] = 60


class RulesIn(Body):
    frequency: Literal["daily", "weekdays", "weekly"] = "daily"
    time_window: TimeWindowIn = Field(default_factory=TimeWindowIn)
    proof_types: list[Literal["photo", "text"]] = Field(
        default_factory=lambda: ["photo", "text"], min_length=1
    )
    verification: VerificationIn = Field(default_factory=VerificationIn)
    grace: Whole = Field(0, description="missed slots tolerated")
    penalty_tokens: Whole = Field(0, description="charged per rejected submission")


class ChallengeIn(Body):
    name: Annotated[str, Field(min_length=3, max_length=120)]
    description: Annotated[str, Field(max_length=2000)] = ""
    visibility: Literal["public", "private", "unlisted"] = "public"
    allow_list: list[UUID] = Field(default_factory=list, description="private only: user ids")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    entry_stake: Whole = 0
    max_participants: Annotated[int, Field(strict=True, ge=2)] = 10
    rules: RulesIn = Field(default_factory=RulesIn)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Run every morning",
                    "starts_at": "2030-01-07T00:00:00Z",
                    "ends_at": "2030-01-14T00:00:00Z",
                    "entry_stake": 500,
                    "rules": {
                        "frequency": "daily",
                        "time_window": {"start": "06:00", "end": "09:00", "timezone": "UTC"},
                        "proof_types": ["photo"],
                        "verification": {"mode": "quorum", "quorum_pct": 60},
                        "penalty_tokens": 50,
                    },
                }
            ]
        },
    )


class TimeWindowPatch(Body):
    start: ClockTime | None = None
    end: ClockTime | None = None
    timezone: str | None = None
    scope: Literal["participant_local", "challenge_tz"] | None = None


class VerificationPatch(Body):
    mode: Literal["auto", "quorum"] | None = None
    quorum_pct: Annotated[int, Field(strict=True, ge=50, le=100)] | None = None


class RulesPatch(Body):
    frequency: Literal["daily", "weekdays", "weekly"] | None = None
    time_window: TimeWindowPatch | None = None
    proof_types: Annotated[list[Literal["photo", "text"]], Field(min_length=1)] | None = None
    verification: VerificationPatch | None = None
    grace: Whole | None = None
    penalty_tokens: Whole | None = None


class ChallengePatch(Body):
    """Only the fields given change (``null`` means unchanged); rules are checked whole."""

    name: Annotated[str, Field(min_length=3, max_length=120)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    visibility: Literal["public", "private", "unlisted"] | None = None
    allow_list: list[UUID] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    entry_stake: Whole | None = None
    max_participants: Annotated[int, Field(strict=True, ge=2)] | None = None
    rules: RulesPatch | None = None


class PublishIn(Body):
    timezone: str | None = Field(None, description="the owner's timezone; default the rules'")


class JoinIn(Body):
    invite_code: Annotated[str, Field(min_length=6, max_length=6, examples=["K7Q2ZX"])]
    timezone: str = Field(description="IANA name: your slots follow it", examples=["UTC"])


class CancelIn(Body):
    reason: Annotated[str, Field(max_length=500)] = ""


# -- responses --------------------------------------------------------------------------


class TimeWindowOut(BaseModel):
    start: str
    end: str
    timezone: str
    scope: str


class VerificationOut(BaseModel):
    mode: str
    quorum_pct: int


class RulesOut(BaseModel):
    frequency: str
    time_window: TimeWindowOut
    proof_types: list[str]
    verification: VerificationOut
    grace: int
    penalty_tokens: int


class OutcomeOut(BaseModel):
    result: Literal["paid_out", "forfeited", "cancelled"]
    finishers: list[UUID]
    fee: int
    forfeited: int
    returned: int
    paid_out: int


class MeOut(BaseModel):
    participant: bool
    owner: bool
    timezone: str | None = None
    stake: int = 0
    penalties: int = 0


class ChallengeOut(BaseModel):
    id: UUID
    owner_id: UUID
    name: str
    description: str
    visibility: str
    allow_list: list[UUID] | None = Field(None, description="shown to the owner and admins")
    invite_code: str
    status: Literal["draft", "active", "settled", "cancelled"]
    starts_at: datetime
    ends_at: datetime
    settles_at: datetime
    entry_stake: int
    max_participants: int
    rules: RulesOut
    participants: int
    pool: int
    outcome: OutcomeOut | None
    me: MeOut
    version: int
    position: int | None = Field(None, description="after a command: its stream position")


class ChallengeCreatedOut(BaseModel):
    id: UUID
    invite_code: str
    status: Literal["draft"] = "draft"
    position: int


class JoinOut(BaseModel):
    challenge_id: UUID
    joined: bool = Field(description="false: you already take part (no second stake)")
    stake: int
    timezone: str
    position: int


class ChallengeSummaryOut(BaseModel):
    id: UUID = Field(validation_alias="challenge_id")
    owner_id: UUID
    name: str
    visibility: str
    invite_code: str
    status: str
    starts_at: datetime
    ends_at: datetime
    entry_stake: int
    max_participants: int
    frequency: str
    timezone: str
    verification_mode: str
    penalty_tokens: int
    participants: int
    pool: int
    finishers: int
    outcome: str | None
    created_at: datetime


class ChallengePage(BaseModel):
    items: list[ChallengeSummaryOut]
    next_cursor: str | None


class ParticipantOut(BaseModel):
    user_id: UUID
    timezone: str
    stake: int
    penalties: int
    joined_at: datetime
    expected: int | None = Field(None, description="after settlement")
    accepted: int | None = None
    finished: bool | None = None
    share: int | None = None


class PostingOut(BaseModel):
    account: str
    amount: int


class LedgerEntryOut(BaseModel):
    position: int
    event_type: str
    event_time: datetime
    postings: list[PostingOut]


class AccountOut(BaseModel):
    account: str
    balance: int


class ChallengeLedgerOut(BaseModel):
    challenge_id: UUID
    pool: int = Field(description="Σ of the challenge's accounts in the journal")
    accounts: list[AccountOut]
    entries: list[LedgerEntryOut]
    position: int


# -- access -----------------------------------------------------------------------------


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
    # With a key, a retried request names the same challenge: it is drafted once.
    challenge_id = (
        uuid5(ids.NAMESPACE, f"challenge:{user.id}:{idempotency_key}")
        if idempotency_key
        else uuid4()
    )

    def act() -> tuple[int, dict[str, Any]]:
        made = services.ledger.create_challenge(
            user.id,
            cause_of(user, request),
            challenge_id=challenge_id,
            **terms_of(body.model_dump()),
        )
        out = ChallengeCreatedOut(
            id=made.challenge_id, invite_code=made.invite_code, position=made.position
        )
        return 201, out.model_dump(mode="json")

    return run_idempotent(
        services, user.id, "POST /challenges", idempotency_key, body.model_dump(mode="json"), act
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

    def act() -> tuple[int, dict[str, Any]]:
        visible_challenge(services, challenge_id, user)
        changes = terms_of(body.model_dump(exclude_unset=True))
        done = services.ledger.edit_challenge(
            challenge_id, user.id, cause_of(user, request), **changes
        )
        return 200, _after(services, challenge_id, user, done.position).model_dump(mode="json")

    route = f"PATCH /challenges/{challenge_id}"
    return run_idempotent(
        services, user.id, route, idempotency_key, body.model_dump(mode="json"), act
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
    return run_idempotent(services, user.id, route, idempotency_key, body.model_dump(), act)


@router.post(
    "/join",
    status_code=201,
    response_model=JoinOut,
    responses={
        200: {"model": JoinOut, "description": "already a participant: nothing changed"},
        402: {"description": "cannot afford the stake"},
        403: {"description": "a private challenge you are not invited to"},
        404: {"description": "no challenge has that invite code"},
        409: {"description": "full, started, or not open"},
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
    return run_idempotent(services, user.id, route, idempotency_key, body.model_dump(), act)


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
    return run_idempotent(services, user.id, route, idempotency_key, {}, act)


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
