"""How the domain's small value objects are stored inside snapshots."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from eventsourcing.persistence import Transcoding

from domain.cashouts import CashoutHold
from domain.challenge import Participant, SubmissionRecord
from domain.rules import ChallengeTerms
from domain.tokens import Lot
from domain.wallet_state import EarlyLoss, LotPart, WithdrawalHold, WriteOffRecord


class DataclassTranscoding(Transcoding):
    """Stores a dataclass as the dict of its fields (nested values transcoded as usual)."""

    def __init__(self, cls: type[Any], name: str) -> None:
        assert is_dataclass(cls)
        self.type = cls
        self.name = name
        self._fields = tuple(f.name for f in fields(cls))

    def encode(self, obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in self._fields}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


SNAPSHOT_TYPES: tuple[tuple[type[Any], str], ...] = (
    (Lot, "peerpush_lot"),
    (WithdrawalHold, "peerpush_withdrawal_hold"),
    (CashoutHold, "peerpush_cashout_hold"),
    (LotPart, "peerpush_lot_part"),
    (EarlyLoss, "peerpush_early_loss"),
    (WriteOffRecord, "peerpush_write_off"),
    (Participant, "peerpush_participant"),
    (SubmissionRecord, "peerpush_submission_record"),
    (ChallengeTerms, "peerpush_challenge_terms"),
)


def snapshot_transcodings() -> list[Transcoding]:
    return [DataclassTranscoding(cls, name) for cls, name in SNAPSHOT_TYPES]
