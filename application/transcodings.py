"""How the domain's small value objects are stored inside snapshots."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Transcoding
from eventsourcing.utils import register_topic

from domain.cashouts import CashoutHold
from domain.challenge import Participant, SubmissionRecord
from domain.rules import ChallengeTerms
from domain.tokens import Lot, LotSource
from domain.wallet_snapshot import COLUMNS, LotColumns, WalletSnapshot
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


class LotRowTranscoding(Transcoding):
    """Stores a lot record as one flat row of plain JSON values.

    A busy wallet's snapshot holds hundreds of lot records (those of the dispute window) and
    a new process loads it before its first command on the wallet: as a dict of fields, each
    record cost a dozen decoding steps (its id and times each a nested typed object); as a
    row, one. Snapshots written before it (``peerpush_lot``) still load.
    """

    type = Lot
    name = "peerpush_lot_row"

    def encode(self, obj: Lot) -> list[Any]:
        return [
            obj.lot_id.hex,
            obj.seq,
            obj.source.value,
            obj.amount,
            obj.remaining,
            obj.created_at.isoformat(),
            None if obj.refundable_until is None else obj.refundable_until.isoformat(),
            obj.payment_intent_id,
            obj.cents_paid,
            obj.token_price,
            obj.frozen,
            obj.written_off,
            obj.loss,
        ]

    def decode(self, data: list[Any]) -> Lot:
        lot_id, seq, source, amount, remaining, created, refundable, *rest = data
        return Lot(
            UUID(lot_id),
            seq,
            LotSource(source),
            amount,
            remaining,
            datetime.fromisoformat(created),
            None if refundable is None else datetime.fromisoformat(refundable),
            *rest,
        )


class LotColumnsTranscoding(Transcoding):
    """Stores a wallet snapshot's lot records (:class:`LotColumns`) as one JSON value per
    field, times as ISO strings: a list, or, for a field nearly every record shares (most
    records are of empty payout lots: no refund window, no PaymentIntent, not frozen, no
    loss), ``{"all": value, "n": count, "but": [[index, value], ...]}``. Plain values a
    decoder reads without a hook each, and a third fewer of them."""

    type = LotColumns
    name = "peerpush_lot_columns"

    def encode(self, obj: LotColumns) -> dict[str, list[Any] | dict[str, Any]]:
        columns = {name: getattr(obj, name) for name in COLUMNS}
        columns["created_at"] = [at.isoformat() for at in obj.created_at]
        columns["refundable_until"] = [_iso(at) for at in obj.refundable_until]
        return {name: _packed(column) for name, column in columns.items()}

    def decode(self, data: dict[str, list[Any] | dict[str, Any]]) -> LotColumns:
        columns = {name: _unpacked(value) for name, value in data.items()}
        parse = datetime.fromisoformat
        columns["created_at"] = list(map(parse, columns["created_at"]))
        columns["refundable_until"] = [
            None if at is None else parse(at) for at in columns["refundable_until"]
        ]
        return LotColumns(**columns)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _packed(column: list[Any]) -> list[Any] | dict[str, Any]:
    """A column as its list, or as the value three quarters of it or more share, and the
    others by index."""
    if len(column) < 8:
        return column
    common, count = Counter(column).most_common(1)[0]
    if count * 4 < len(column) * 3:
        return column
    but = [[i, v] for i, v in enumerate(column) if v != common or type(v) is not type(common)]
    return {"all": common, "n": len(column), "but": but}


def _unpacked(value: list[Any] | dict[str, Any]) -> list[Any]:
    if isinstance(value, list):
        return value
    column = [value["all"]] * value["n"]
    for i, v in value["but"]:
        column[i] = v
    return column


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
    """Registered in this order: for a type registered twice, the last one encodes (both
    decode their own name), so a lot is written as a row and read either way."""
    return [
        *(DataclassTranscoding(cls, name) for cls, name in SNAPSHOT_TYPES),
        LotRowTranscoding(),
        LotColumnsTranscoding(),
    ]


# Stored snapshots name their class by this topic, whichever module holds it.
register_topic(WalletSnapshot.TOPIC, WalletSnapshot)
