"""The configurable numbers of SPEC (the bold ones), read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from domain.rules import ChallengeLimits


@dataclass(frozen=True)
class LedgerSettings:
    token_price_usd_cents: int = 1
    refund_window_days: int = 90
    dispute_window_days: int = 180
    platform_fee_bps: int = 0
    settlement_delay_hours: int = 24
    max_entry_stake: int = 100_000
    max_participants: int = 500
    max_deposit_tokens_day: int = 100_000
    command_retries: int = 12
    max_start_ahead_days: int = 365
    max_duration_days: int = 366

    @property
    def refund_window(self) -> timedelta:
        return timedelta(days=self.refund_window_days)

    @property
    def dispute_window(self) -> timedelta:
        """How long an empty lot's record is kept for disputes (rules §1)."""
        return timedelta(days=self.dispute_window_days)

    @property
    def settlement_delay(self) -> timedelta:
        return timedelta(hours=self.settlement_delay_hours)

    @property
    def challenge_limits(self) -> ChallengeLimits:
        return ChallengeLimits(
            self.max_entry_stake,
            self.max_participants,
            self.max_start_ahead_days,
            self.max_duration_days,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LedgerSettings:
        env = os.environ if env is None else env
        names = {
            "token_price_usd_cents": "TOKEN_PRICE_USD_CENTS",
            "refund_window_days": "REFUND_WINDOW_DAYS",
            "dispute_window_days": "DISPUTE_WINDOW_DAYS",
            "platform_fee_bps": "PLATFORM_FEE_BPS",
            "settlement_delay_hours": "SETTLEMENT_DELAY_HOURS",
            "max_entry_stake": "MAX_ENTRY_STAKE",
            "max_participants": "MAX_PARTICIPANTS",
            "max_deposit_tokens_day": "MAX_DEPOSIT_TOKENS_DAY",
            "command_retries": "COMMAND_RETRIES",
            "max_start_ahead_days": "MAX_START_AHEAD_DAYS",
            "max_duration_days": "MAX_DURATION_DAYS",
        }
        given = {field: int(env[var]) for field, var in names.items() if env.get(var)}
        settings = cls(**given)
        if settings.token_price_usd_cents <= 0 or not 0 <= settings.platform_fee_bps <= 10_000:
            raise ValueError("TOKEN_PRICE_USD_CENTS must be > 0, PLATFORM_FEE_BPS 0..10000")
        if not (
            0 < settings.max_start_ahead_days <= 3_660 and 0 < settings.max_duration_days <= 3_660
        ):
            raise ValueError("MAX_START_AHEAD_DAYS and MAX_DURATION_DAYS must be 1..3660")
        return settings
