"""The configurable numbers of the rules (docs/rules.md, the bold ones), typed and validated.

Each field is read from the environment variable of the same name in capitals
(``TOKEN_PRICE_USD_CENTS``, ...), once, by the composition root; the application receives the
built object. `variables` and `describe` are shared with the service's settings
(``adapters.settings``) so every settings error names the variable to fix.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.cashouts import CashoutLimits
from domain.photos import PhotoRules
from domain.rules import ChallengeLimits

# Frozen (settings never change while a process runs); an empty variable counts as unset; the
# environment's other variables are none of our business.
# Each field is read from its name in capitals only: no aliases, which pydantic-settings would
# read as a second variable.
SETTINGS_CONFIG = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)


class SettingsError(ValueError):
    """The environment holds a setting that cannot be used; the message names the variable."""


class LedgerSettings(BaseSettings):
    """The business numbers: prices, windows, fees and limits of rules §1–§5."""

    model_config = SETTINGS_CONFIG

    token_price_usd_cents: int = Field(default=1, gt=0)
    refund_window_days: int = 90
    # Read by the wallet: how long an emptied lot's record is kept for disputes.
    dispute_window_days: int = 180
    platform_fee_bps: int = Field(default=0, ge=0, le=10_000)
    settlement_delay_hours: int = 24
    max_entry_stake: int = 100_000
    max_participants: int = 500
    max_deposit_tokens_day: int = 100_000
    command_retries: int = 12
    max_start_ahead_days: int = Field(default=365, gt=0, le=3_660)
    max_duration_days: int = Field(default=366, gt=0, le=3_660)
    min_cashout_tokens: int = Field(default=1_000, gt=0)
    max_cashout_tokens_day: int = Field(default=50_000, gt=0)
    cashout_hold_days: int = Field(default=7, ge=0)
    capture_tolerance_minutes: int = Field(default=5, ge=0, le=1_440)
    near_duplicate_distance: int = Field(default=8, ge=0, le=64)

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
    def cashout_limits(self) -> CashoutLimits:
        return CashoutLimits(
            self.min_cashout_tokens,
            self.max_cashout_tokens_day,
            timedelta(days=self.cashout_hold_days),
        )

    @property
    def photo_rules(self) -> PhotoRules:
        """How doubtful photos are flagged (rules §4)."""
        return PhotoRules(
            timedelta(minutes=self.capture_tolerance_minutes), self.near_duplicate_distance
        )

    @property
    def challenge_limits(self) -> ChallengeLimits:
        return ChallengeLimits(
            self.max_entry_stake,
            self.max_participants,
            self.max_start_ahead_days,
            self.max_duration_days,
        )

    @classmethod
    def from_env(cls) -> LedgerSettings:
        """The process environment's numbers (the composition root calls this once)."""
        try:
            return cls()
        except ValidationError as e:
            raise SettingsError(describe(e, cls)) from None

    @classmethod
    def defaults(cls) -> LedgerSettings:
        """The documented defaults, whatever the environment says (tests and tools that build
        a ledger without the composition root)."""
        return cls.model_construct()


def variables(model: type[BaseSettings]) -> dict[str, str]:
    """Field name → the environment variable that sets it.

    The variable is the field's name in capitals; a field read by a custom source names its
    variable in ``json_schema_extra={"variable": ...}``.
    """
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("variable"), str):
            found[name] = str(extra["variable"])
        else:
            found[name] = name.upper()
    return found


def old_names(model: type[BaseSettings]) -> dict[str, str]:
    """Old variable → the field it still sets (``json_schema_extra={"old_name": ...}``)."""
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("old_name"), str):
            found[str(extra["old_name"])] = name
    return found


def describe(error: ValidationError, model: type[BaseSettings]) -> str:
    """One line per problem, each naming the environment variable and the value it holds."""
    names = variables(model)
    lines = []
    for problem in error.errors():
        location = problem["loc"][0] if problem["loc"] else ""
        variable = names.get(str(location), str(location))
        message = str(problem["msg"]).removeprefix("Value error, ")
        given: Any = problem.get("input")
        if variable and not isinstance(given, dict):
            lines.append(f"{variable}: {message} (it is {given!r})")
        else:
            lines.append(message)
    return "; ".join(lines) + "; refusing to start"
