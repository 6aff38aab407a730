"""The configurable numbers of the rules (docs/rules.md, the bold ones), typed and validated.

Each field is read from the environment variable of the same name in capitals
(``TOKEN_PRICE_USD_CENTS``, ...), once, by the composition root; the application receives the
built object. `variables` and `describe` are shared with the service's settings
(``adapters.settings``) so every settings error names the variable to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.rules import ChallengeLimits

# Frozen (settings never change while a process runs); an empty variable counts as unset; the
# environment's other variables are none of our business.
SETTINGS_CONFIG = SettingsConfigDict(
    frozen=True,
    extra="ignore",
    env_ignore_empty=True,
    validate_by_name=True,
    validate_by_alias=True,
)


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

    @property
    def refund_window(self) -> timedelta:
        return timedelta(days=self.refund_window_days)

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
    def from_env(cls) -> LedgerSettings:
        """The process environment's numbers (the composition root calls this once)."""
        try:
            return cls()
        except ValidationError as e:
            raise SettingsError(describe(e, cls)) from None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> LedgerSettings:
        """The numbers an ``eventsourcing`` environment mapping names, the rest defaults.

        `model_validate` does not read the process environment: a ledger built from a mapping
        (tests, tools) is not changed by the shell it runs in.
        """
        names = variables(cls)
        given = {field: env[var] for field, var in names.items() if env.get(var)}
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            raise SettingsError(describe(e, cls)) from None


def variables(model: type[BaseSettings]) -> dict[str, str]:
    """Field name → the environment variable that sets it.

    The variable is the field's alias when it has one, else its name in capitals; a field read
    by a custom source documents its variables in ``json_schema_extra={"variable": ...}``.
    """
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("variable"), str):
            found[name] = str(extra["variable"])
        elif isinstance(info.validation_alias, str):
            found[name] = info.validation_alias
        else:
            found[name] = name.upper()
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
