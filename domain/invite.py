"""Invite codes: a unique six-character name for a challenge (rules §3).

The code's aggregate id is derived from the code itself, so two challenges claiming one code
collide in the event store and the second is given another code.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerAggregate, LedgerCreated
from domain.rules import check_invite_code


class InviteCode(LedgerAggregate):
    TOPIC = "peerpush:InviteCode"

    class Claimed(LedgerCreated):
        TOPIC = "peerpush:InviteCode.Claimed"
        code: str
        challenge_id: UUID

    def __init__(self, code: str, challenge_id: UUID) -> None:
        self.code = code
        self.challenge_id = challenge_id

    @classmethod
    def claim(cls, code: str, challenge_id: UUID, cause: Cause, at: datetime) -> InviteCode:
        return cls._create(
            cls.Claimed,
            id=ids.invite_code_id(check_invite_code(code)),
            code=code,
            challenge_id=challenge_id,
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )
