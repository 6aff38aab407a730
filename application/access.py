"""Who may reach a challenge (rules §7), as every use case that names one asks it.

The rule itself is the challenge's (:meth:`Challenge.is_visible_to`); these functions load
the challenge and turn a refusal into the answer the caller sees: an invisible challenge is
:class:`NotFound` exactly as if it did not exist, a visible one the caller does not take
part in is :class:`NotParticipant`.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from application.ledger import Ledger
from domain.aggregate import Cause
from domain.challenge import Challenge
from domain.challenge_view import ChallengeView, challenge_view
from domain.errors import NotFound


class Caller(Protocol):
    """The signed-in user a use case acts for."""

    @property
    def id(self) -> UUID: ...

    @property
    def is_admin(self) -> bool: ...


def visible_challenge(ledger: Ledger, challenge_id: UUID, caller: Caller) -> Challenge:
    """The challenge, or :class:`NotFound` exactly as if it did not exist."""
    challenge = ledger.challenge(challenge_id)
    if not challenge.is_visible_to(caller.id, caller.is_admin):
        raise NotFound(f"no challenge {challenge_id}")
    return challenge


def seen_by(
    ledger: Ledger, challenge_id: UUID, caller: Caller, position: int | None = None
) -> ChallengeView:
    """The challenge as the caller sees it (:mod:`domain.challenge_view`), or NotFound;
    ``position``: the command's that just changed it."""
    challenge = visible_challenge(ledger, challenge_id, caller)
    delay = ledger.settings.settlement_delay
    return challenge_view(challenge, caller.id, caller.is_admin, delay, position)


def acting_on(ledger: Ledger, challenge_id: UUID, caller: Caller, request_id: str) -> Cause:
    """Who a command on a visible challenge is recorded as (NotFound if invisible): an admin
    acting on another's challenge intervenes as an admin; anyone else acts as themselves."""
    challenge = visible_challenge(ledger, challenge_id, caller)
    if challenge.acts_as_admin(caller.id, caller.is_admin):
        return Cause.admin(caller.id, request_id)
    return Cause.user(caller.id, request_id)


def participant_challenge(ledger: Ledger, challenge_id: UUID, caller: Caller) -> Challenge:
    """The challenge, for a participant only (NotFound if invisible, else NotParticipant)."""
    challenge = visible_challenge(ledger, challenge_id, caller)
    challenge.participant(caller.id)
    return challenge
