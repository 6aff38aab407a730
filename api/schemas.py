"""Request and response bodies shared by several routers. Token amounts are integers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.persistence import holds_nul
from domain.tokens import MAX_TOKENS, LotSource
from domain.values import CashoutStatus, WithdrawalStatus
from domain.wallet_state import LotOutcome

Tokens = Annotated[
    int, Field(strict=True, gt=0, le=MAX_TOKENS, description="whole tokens (1 = 1¢)")
]


class Body(BaseModel):
    """A request body: no unknown fields, and no NUL character in any text (PostgreSQL text
    cannot hold one; a name with one would be recorded, then stop the read models)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if holds_nul(value):
            raise ValueError("text may not contain NUL characters")
        return value


class View(BaseModel):
    """A response read off a domain or application view, attribute for attribute."""

    model_config = ConfigDict(from_attributes=True)


class Position(BaseModel):
    position: int = Field(description="stream position of the command's last event")


class Balances(BaseModel):
    user_id: UUID
    available: int
    frozen: int
    staked: int
    withdrawal_pending: int
    cashout_pending: int
    deposited: int
    refunded: int
    cashed_out: int
    won: int
    forfeited: int
    penalised: int
    written_off: int
    refundable: int | None = Field(
        None, description="what a withdrawal may refund to the card now (null as of a moment)"
    )
    cashoutable: int | None = Field(
        None,
        description="what a cash-out may take now: payout and adjustment lots past their "
        "hold, within the daily limit (null as of a moment)",
    )
    position: int = Field(description="stream position these balances reflect")


class LotOut(BaseModel):
    lot_id: UUID
    seq: int
    source: LotSource
    amount: int
    remaining: int
    created_at: datetime
    refundable_until: datetime | None = None
    payment_intent_id: str | None = None
    token_price: int | None = None
    frozen: bool
    written_off: bool


class TransactionOut(BaseModel):
    position: int
    type: str
    amount: int = Field(description="signed change of available")
    tokens: int = Field(description="tokens moved")
    available_after: int
    challenge_id: UUID | None = None
    withdrawal_id: UUID | None = None
    payment_intent_id: str | None = None
    lot_id: UUID | None = None
    event_time: datetime


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class WithdrawalIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tokens": 1500}]})

    tokens: Tokens


class WithdrawalLot(BaseModel):
    lot_id: UUID
    tokens: int
    status: LotOutcome = LotOutcome.PENDING


class WithdrawalOut(BaseModel):
    withdrawal_id: UUID
    status: WithdrawalStatus
    tokens: int
    lots: list[WithdrawalLot]
    position: int


class CashoutLot(BaseModel):
    lot_id: UUID
    tokens: int


class CashoutIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tokens": 1500}]})

    tokens: Tokens


class CashoutOut(BaseModel):
    cashout_id: UUID
    status: CashoutStatus
    tokens: int
    cents: int = Field(description="what the transfer pays: tokens × the token price then")
    token_price: int
    transfer_id: str | None = None
    reason: str | None = None  # why it failed
    reversed_tokens: int = 0  # tokens given back by reversed transfers
    lots: list[CashoutLot]
    position: int


class PayoutAccountOut(BaseModel):
    linked: bool
    account_id: str | None = None
    payouts_enabled: bool = False
    onboarding_url: str | None = None  # Stripe's onboarding page (answered by POST)
