"""Request and response bodies of the challenge routes (rules §3, §5).

The choices and bounds are the domain's (``domain.values``): the schema declares them so the
OpenAPI shows them and a malformed body is refused before any command; the domain enforces
them again (``domain.rules.make_terms``). Responses are the domain's views, field for field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.schemas import Body, View
from domain.values import (
    CLOCK_TIME_PATTERN,
    DESCRIPTION_LENGTH,
    INVITE_CODE_LENGTH,
    MIN_PARTICIPANTS,
    NAME_LENGTH,
    QUORUM_PCT,
    REASON_MAX_LENGTH,
    ChallengeResult,
    ChallengeStatus,
    Frequency,
    ProofType,
    Scope,
    VerificationMode,
    Visibility,
)

ClockTime = Annotated[str, Field(pattern=CLOCK_TIME_PATTERN, examples=["07:00"])]
Whole = Annotated[int, Field(strict=True, ge=0)]
Name = Annotated[str, Field(min_length=NAME_LENGTH.low, max_length=NAME_LENGTH.high)]
Description = Annotated[str, Field(max_length=DESCRIPTION_LENGTH.high)]
QuorumPct = Annotated[int, Field(strict=True, ge=QUORUM_PCT.low, le=QUORUM_PCT.high)]
MaxParticipants = Annotated[int, Field(strict=True, ge=MIN_PARTICIPANTS)]
ProofTypes = Annotated[list[ProofType], Field(min_length=1)]

# -- request bodies ---------------------------------------------------------------------


class TimeWindowIn(Body):
    start: ClockTime = "00:00"
    end: ClockTime = Field("00:00", description="end <= start runs overnight into the next day")
    timezone: str = Field("UTC", description="IANA name", examples=["Europe/Paris"])
    scope: Scope = Scope.PARTICIPANT_LOCAL


class VerificationIn(Body):
    mode: VerificationMode = VerificationMode.AUTO
    quorum_pct: QuorumPct = 60


class RulesIn(Body):
    frequency: Frequency = Frequency.DAILY
    time_window: TimeWindowIn = Field(default_factory=lambda: TimeWindowIn())
    proof_types: ProofTypes = Field(default_factory=lambda: list(ProofType))
    verification: VerificationIn = Field(default_factory=lambda: VerificationIn())
    grace: Whole = Field(0, description="missed slots tolerated")
    penalty_tokens: Whole = Field(0, description="charged per rejected submission")


class ChallengeIn(Body):
    name: Name
    description: Description = ""
    visibility: Visibility = Visibility.PUBLIC
    allow_list: list[UUID] = Field(default_factory=list, description="private only: user ids")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    entry_stake: Whole = 0
    max_participants: MaxParticipants = 10
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
    scope: Scope | None = None


class VerificationPatch(Body):
    mode: VerificationMode | None = None
    quorum_pct: QuorumPct | None = None


class RulesPatch(Body):
    frequency: Frequency | None = None
    time_window: TimeWindowPatch | None = None
    proof_types: ProofTypes | None = None
    verification: VerificationPatch | None = None
    grace: Whole | None = None
    penalty_tokens: Whole | None = None


class ChallengePatch(Body):
    """Only the fields given change (``null`` means unchanged); rules are checked whole."""

    name: Name | None = None
    description: Description | None = None
    visibility: Visibility | None = None
    allow_list: list[UUID] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    entry_stake: Whole | None = None
    max_participants: MaxParticipants | None = None
    rules: RulesPatch | None = None


class PublishIn(Body):
    timezone: str | None = Field(None, description="the owner's timezone; default the rules'")


class JoinIn(Body):
    invite_code: Annotated[
        str,
        Field(min_length=INVITE_CODE_LENGTH, max_length=INVITE_CODE_LENGTH, examples=["K7Q2ZX"]),
    ]
    timezone: str = Field(description="IANA name: your slots follow it", examples=["UTC"])


class CancelIn(Body):
    reason: Annotated[str, Field(max_length=REASON_MAX_LENGTH)] = ""


# -- responses (``domain.challenge_view``) ------------------------------------------------


class TimeWindowOut(View):
    start: str
    end: str
    timezone: str
    scope: Scope


class VerificationOut(View):
    mode: VerificationMode
    quorum_pct: int


class RulesOut(View):
    frequency: Frequency
    time_window: TimeWindowOut
    proof_types: list[ProofType]
    verification: VerificationOut
    grace: int
    penalty_tokens: int


class OutcomeOut(View):
    result: ChallengeResult
    finishers: list[UUID]
    fee: int
    forfeited: int
    returned: int
    paid_out: int


class MeOut(View):
    participant: bool
    owner: bool
    timezone: str | None = None
    stake: int = 0
    penalties: int = 0


class ChallengeOut(View):
    id: UUID
    owner_id: UUID
    name: str
    description: str
    visibility: Visibility
    allow_list: list[UUID] | None = Field(None, description="shown to the owner and admins")
    invite_code: str
    status: ChallengeStatus
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
    status: ChallengeStatus = ChallengeStatus.DRAFT
    position: int


class JoinOut(View):
    challenge_id: UUID
    joined: bool = Field(description="false: you already take part (no second stake)")
    stake: int
    timezone: str
    position: int


class ChallengeSummaryOut(BaseModel):
    id: UUID = Field(validation_alias="challenge_id")
    owner_id: UUID
    name: str
    visibility: Visibility
    invite_code: str
    status: ChallengeStatus
    starts_at: datetime
    ends_at: datetime
    entry_stake: int
    max_participants: int
    frequency: Frequency
    timezone: str
    verification_mode: VerificationMode
    penalty_tokens: int
    participants: int
    pool: int
    finishers: int
    outcome: ChallengeResult | None
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
