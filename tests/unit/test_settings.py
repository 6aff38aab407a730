"""Settings come from the environment once, typed; a value that cannot be used stops the
process with a message naming the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.rate_limits import Limit
from adapters.settings import ConfigError, ProcessSettings, ServiceSettings, StoreSettings
from application.ledger import Ledger
from application.settings import LedgerSettings, SettingsError

PRODUCTION = {
    "ENV": "production",
    "DATABASE_URL": "postgresql://ledger@db.internal/ledger",
    "JWT_SECRET": "p" * 40,
    "STRIPE_API_KEY": "sk_live_0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_0123456789",
    "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_connect_0123456789",
    "PUBLIC_BASE_URL": "https://ledger.example.com",
}


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_BODY_BYTES", "0"),
        ("MAX_PROOF_BYTES", "lots"),
        ("POSTGRES_POOL_SIZE", "many"),
        ("WORKER_INTERVAL_SECONDS", "-1"),
        ("ACCESS_TOKEN_MINUTES", "0"),
        ("RATE_LIMIT_LOGIN", "lots"),
        ("TRUSTED_PROXIES", "proxy.internal"),
        ("GROUP_COMMIT", "sometimes"),
    ],
)
def test_an_unusable_service_setting_refuses_to_start_naming_its_variable(
    variable: str, value: str, development: pytest.MonkeyPatch
) -> None:
    development.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        ServiceSettings.from_env()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOKEN_PRICE_USD_CENTS", "0"),
        ("PLATFORM_FEE_BPS", "10001"),
        ("MAX_START_AHEAD_DAYS", "0"),
        ("MAX_DURATION_DAYS", "3661"),
        ("COMMAND_RETRIES", "twelve"),
    ],
)
def test_an_unusable_business_number_refuses_to_start_naming_its_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        LedgerSettings.from_env()


def test_business_numbers_are_read_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_PRICE_USD_CENTS", "5")
    monkeypatch.setenv("SETTLEMENT_DELAY_HOURS", "48")
    monkeypatch.setenv("DISPUTE_WINDOW_DAYS", "")  # empty is unset
    settings = LedgerSettings.from_env()
    assert (settings.token_price_usd_cents, settings.settlement_delay_hours) == (5, 48)
    assert settings.dispute_window_days == 180


def test_a_ledger_built_without_settings_has_the_defaults_whatever_the_shell_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN_PRICE_USD_CENTS", "7")
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    assert ledger.settings.token_price_usd_cents == 1
    defaults = {name: field.default for name, field in LedgerSettings.model_fields.items()}
    assert ledger.settings.model_dump() == defaults


def test_every_service_setting_can_be_set_from_the_environment(
    development: pytest.MonkeyPatch,
) -> None:
    given = {
        "JWT_SECRET": "s" * 40,
        "ACCESS_TOKEN_MINUTES": "5",
        "REFRESH_TOKEN_DAYS": "2",
        "AWS_REGION": "eu-west-1",
        "RATE_LIMIT_LOGIN": "20/60",
        "RATE_LIMIT_JOIN": "off",
        "RATE_LIMITS": "off",
        "RUN_WORKERS": "off",
        "WORKER_INTERVAL_SECONDS": "0.5",
        "READ_WAIT_SECONDS": "0",
        "DB_SCHEMA": "ledger",
        "POSTGRES_POOL_SIZE": "3",
        "AGGREGATE_CACHE_MAXSIZE": "50",
        "GROUP_COMMIT": "off",
    }
    for name, value in given.items():
        development.setenv(name, value)
    settings = ServiceSettings.from_env()
    assert settings.jwt_secret == "s" * 40
    assert (settings.access_token_minutes, settings.refresh_token_days) == (5, 2)
    assert settings.aws_region == "eu-west-1"
    assert settings.rate_limit_overrides == {"login": Limit(20, 60), "join": None}
    assert not settings.rate_limits and not settings.run_workers
    assert (settings.worker_interval_seconds, settings.read_wait_seconds) == (0.5, 0.0)
    assert (settings.db_schema, settings.postgres_pool_size) == ("ledger", 3)
    assert settings.aggregate_cache_maxsize == 50
    assert not settings.group_commit


def test_group_commit_is_on_unless_switched_off(development: pytest.MonkeyPatch) -> None:
    assert ServiceSettings.from_env().group_commit
    assert Ledger().group_commit is not None
    assert Ledger(group_commit=False).group_commit is None


def test_production_defaults_to_real_stripe_and_s3_and_development_to_neither(
    development: pytest.MonkeyPatch,
) -> None:
    local = ServiceSettings.from_env()
    assert (local.stripe_mode, local.storage) == ("simulated", "local")
    for name, value in PRODUCTION.items():
        development.setenv(name, value)
    production = ServiceSettings.from_env()
    assert (production.stripe_mode, production.storage) == ("stripe", "s3")


def test_production_ignores_the_old_base_url_name(development: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        development.setenv(name, value)
    development.delenv("PUBLIC_BASE_URL")
    development.setenv("BASE_URL", "https://old.example.com")
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        ServiceSettings.from_env()


def test_production_refuses_a_short_signing_key_and_simulated_stripe(
    development: pytest.MonkeyPatch,
) -> None:
    for name, value in PRODUCTION.items():
        development.setenv(name, value)
    development.setenv("JWT_SECRET", "short")
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        ServiceSettings.from_env()
    development.setenv("JWT_SECRET", "p" * 40)
    development.setenv("STRIPE_MODE", "simulated")
    with pytest.raises(ConfigError, match="simulated Stripe"):
        ServiceSettings.from_env()


def test_a_production_worker_needs_its_database_but_not_the_services_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        ProcessSettings.from_env()
    monkeypatch.setenv("DATABASE_URL", PRODUCTION["DATABASE_URL"])
    assert ProcessSettings.from_env().production


def test_the_auditors_database_settings_do_not_need_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENV", "prod")
    monkeypatch.setenv("DATABASE_URL", "postgresql://auditor@db.internal/ledger")
    assert StoreSettings.from_env().database_url == "postgresql://auditor@db.internal/ledger"
    with pytest.raises(ConfigError, match="'development' or 'production'"):
        ProcessSettings.from_env()
