"""Request and response bodies of the challenge routes (rules §3, §5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.schemas import Body
from application.receipts import Joined
from domain.challenge import Challenge, Participant

ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["07:00"])]
Whole = Annotated[int, Field(strict=True, ge=0)]

# -- request bodies ---------------------------------------------------------------------


ProofType = Literal["photo", "text"]
PROOF_TYPES: tuple[ProofType, ...] = ("photo", "text")


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
    time_window: TimeWindowIn = Field(default_factory=lambda: TimeWindowIn())
    proof_types: list[ProofType] = Field(default_factory=lambda: list(PROOF_TYPES), min_length=1)
    verification: VerificationIn = Field(default_factory=lambda: VerificationIn())
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
    rules: RulesIn = Field(default_factory=lambda: RulesIn())

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

    @classmethod
    def of(cls, done: Joined, me: Participant) -> JoinOut:
        return cls(
            challenge_id=done.challenge_id,
            joined=done.joined,
            stake=me.stake,
            timezone=me.timezone,
            position=done.position,
        )

    @classmethod
    def joined_in(cls, challenge: Challenge, user_id: UUID, position: int) -> JoinOut:
        """A new participation, as the join's save left the challenge."""
        me = challenge.participant(user_id)
        return cls.of(Joined(position, challenge.id, True, me), me)


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


# -- mapping ----------------------------------------------------------------------------


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


def challenge_view(
    challenge: Challenge,
    reader_id: UUID,
    reader_is_admin: bool,
    delay: timedelta,
    position: int | None = None,
) -> ChallengeOut:
    """The challenge as one reader sees it: the allow-list only for its owner and admins,
    and the reader's own participation."""
    t = challenge.terms
    me = challenge.participants.get(str(reader_id))
    is_owner = reader_id == challenge.owner_id
    result = challenge.outcome
    outcome = None
    if result is not None:
        outcome = OutcomeOut.model_validate(
            {
                "result": result,
                "finishers": [UUID(u) for u in challenge.finishers],
                "fee": challenge.fee,
                "forfeited": challenge.forfeited,
                "returned": challenge.returned,
                "paid_out": challenge.paid_out,
            }
        )
    return ChallengeOut.model_validate(
        {
            "id": challenge.id,
            "owner_id": challenge.owner_id,
            "name": t.name,
            "description": t.description,
            "visibility": t.visibility,
            "allow_list": list(t.allow_list) if reader_is_admin or is_owner else None,
            "invite_code": challenge.invite_code,
            "status": challenge.status,
            "starts_at": t.starts_at,
            "ends_at": t.ends_at,
            "settles_at": challenge.settles_at(delay),
            "entry_stake": t.entry_stake,
            "max_participants": t.max_participants,
            "rules": RulesOut(
                frequency=t.frequency,
                time_window=TimeWindowOut(
                    start=t.window_start, end=t.window_end, timezone=t.timezone, scope=t.scope
                ),
                proof_types=list(t.proof_types),
                verification=VerificationOut(mode=t.verification_mode, quorum_pct=t.quorum_pct),
                grace=t.grace,
                penalty_tokens=t.penalty_tokens,
            ),
            "participants": len(challenge.participants),
            "pool": challenge.pool,
            "outcome": outcome,
            "me": MeOut(
                participant=me is not None,
                owner=is_owner,
                timezone=me.timezone if me else None,
                stake=me.stake if me else 0,
                penalties=me.penalties if me else 0,
            ),
            "version": challenge.version,
            "position": position,
        }
    )
