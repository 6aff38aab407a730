"""What one reader sees of a challenge (rules §3, §5, §7).

The view is decided here, from the challenge alone: the allow-list names other users, so only
the challenge's owner and admins see it; the reader sees their own participation (their
timezone, stake and penalties) and nobody else's; the outcome exists once the challenge has
ended. The HTTP answer is this view, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.challenge import Challenge
from domain.values import (
    ChallengeResult,
    ChallengeStatus,
    Frequency,
    ProofType,
    Scope,
    VerificationMode,
    Visibility,
)


@dataclass(frozen=True)
class TimeWindowView:
    start: str
    end: str
    timezone: str
    scope: Scope


@dataclass(frozen=True)
class VerificationView:
    mode: VerificationMode
    quorum_pct: int


@dataclass(frozen=True)
class RulesView:
    frequency: Frequency
    time_window: TimeWindowView
    proof_types: tuple[ProofType, ...]
    verification: VerificationView
    grace: int
    penalty_tokens: int


@dataclass(frozen=True)
class OutcomeView:
    result: ChallengeResult
    finishers: tuple[UUID, ...]
    fee: int
    forfeited: int
    returned: int
    paid_out: int


@dataclass(frozen=True)
class MeView:
    """The reader's own part in the challenge."""

    participant: bool
    owner: bool
    timezone: str | None = None
    stake: int = 0
    penalties: int = 0


@dataclass(frozen=True)
class ChallengeView:
    id: UUID
    owner_id: UUID
    name: str
    description: str
    visibility: Visibility
    allow_list: tuple[UUID, ...] | None
    invite_code: str
    status: ChallengeStatus
    starts_at: datetime
    ends_at: datetime
    settles_at: datetime
    entry_stake: int
    max_participants: int
    rules: RulesView
    participants: int
    pool: int
    outcome: OutcomeView | None
    me: MeView
    version: int
    position: int | None = None


def challenge_view(
    challenge: Challenge,
    reader_id: UUID,
    reader_is_admin: bool,
    delay: timedelta,
    position: int | None = None,
) -> ChallengeView:
    """The challenge as ``reader_id`` sees it; ``position``: the command's that changed it."""
    t = challenge.terms
    me = challenge.participants.get(str(reader_id))
    shown = challenge.allow_list_shown_to(reader_id, reader_is_admin)
    return ChallengeView(
        id=challenge.id,
        owner_id=challenge.owner_id,
        name=t.name,
        description=t.description,
        visibility=t.visibility,
        allow_list=t.allow_list if shown else None,
        invite_code=challenge.invite_code,
        status=challenge.status,
        starts_at=t.starts_at,
        ends_at=t.ends_at,
        settles_at=challenge.settles_at(delay),
        entry_stake=t.entry_stake,
        max_participants=t.max_participants,
        rules=RulesView(
            frequency=t.frequency,
            time_window=TimeWindowView(t.window_start, t.window_end, t.timezone, t.scope),
            proof_types=t.proof_types,
            verification=VerificationView(t.verification_mode, t.quorum_pct),
            grace=t.grace,
            penalty_tokens=t.penalty_tokens,
        ),
        participants=len(challenge.participants),
        pool=challenge.pool,
        outcome=_outcome(challenge),
        me=MeView(
            participant=me is not None,
            owner=reader_id == challenge.owner_id,
            timezone=me.timezone if me else None,
            stake=me.stake if me else 0,
            penalties=me.penalties if me else 0,
        ),
        version=challenge.version,
        position=position,
    )


def _outcome(challenge: Challenge) -> OutcomeView | None:
    if challenge.outcome is None:
        return None
    return OutcomeView(
        result=challenge.outcome,
        finishers=tuple(UUID(u) for u in challenge.finishers),
        fee=challenge.fee,
        forfeited=challenge.forfeited,
        returned=challenge.returned,
        paid_out=challenge.paid_out,
    )
