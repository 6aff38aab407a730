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
from domain.challenge import Challenge
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


def participant_challenge(ledger: Ledger, challenge_id: UUID, caller: Caller) -> Challenge:
    """The challenge, for a participant only (NotFound if invisible, else NotParticipant)."""
    challenge = visible_challenge(ledger, challenge_id, caller)
    challenge.participant(caller.id)
    return challenge
