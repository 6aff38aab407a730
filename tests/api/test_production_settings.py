"""Start-up settings: ``ENV`` is required and exact, production names every secret, and the
development signing key is private to its owner."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from adapters.settings import ServiceSettings
from api import cli

PRODUCTION = {
    "ENV": "production",
    "DATABASE_URL": "postgresql://ledger@db.internal/ledger",
    "JWT_SECRET": "p" * 40,
    "STRIPE_API_KEY": "sk_live_0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_0123456789",
    "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_connect_0123456789",
    "PUBLIC_BASE_URL": "https://ledger.example.com",
}


@pytest.mark.parametrize(
    "missing",
    [
        "DATABASE_URL",
        "JWT_SECRET",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_CONNECT_WEBHOOK_SECRET",
        "PUBLIC_BASE_URL",
    ],
)
def test_production_refuses_to_start_without_each_required_setting(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(RuntimeError, match=missing):
        ServiceSettings.from_env()


def test_production_never_falls_back_to_the_public_simulated_webhook_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    config = ServiceSettings.from_env()
    assert config.stripe_webhook_secret == "whsec_0123456789"
    assert config.base_url == "https://ledger.example.com"
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "")
    with pytest.raises(RuntimeError, match="STRIPE_WEBHOOK_SECRET"):
        ServiceSettings.from_env()


@pytest.mark.parametrize("value", [None, "", "Production", "prod", "dev", "staging"])
def test_an_unset_or_misspelled_env_refuses_to_start_naming_the_allowed_values(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("ENV", raising=False)
    else:
        monkeypatch.setenv("ENV", value)
    with pytest.raises(RuntimeError, match="'development' or 'production'"):
        ServiceSettings.from_env()


def test_development_reads_public_base_url_and_still_accepts_the_old_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", "http://old.localhost:8000")
    assert ServiceSettings.from_env().base_url == "http://old.localhost:8000"
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://new.localhost:8000")
    assert ServiceSettings.from_env().base_url == "http://new.localhost:8000"


def test_body_limits_and_the_metrics_listener_are_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("MAX_PROOF_BYTES", "5000")
    monkeypatch.setenv("METRICS_LISTEN", "127.0.0.1:9464")
    config = ServiceSettings.from_env()
    assert (config.max_body_bytes, config.max_upload_bytes) == (1000, 6000)
    assert config.metrics_listen == "127.0.0.1:9464"
    monkeypatch.setenv("METRICS_LISTEN", "9464")
    with pytest.raises(RuntimeError, match="METRICS_LISTEN"):
        ServiceSettings.from_env()


def test_the_development_signing_key_file_is_readable_by_its_owner_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("JWT_SECRET", raising=False)
    first = ServiceSettings.from_env().jwt_secret
    mode = stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert ServiceSettings.from_env().jwt_secret == first  # shared by every local process


def test_a_world_readable_signing_key_from_an_older_version_is_made_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("JWT_SECRET", raising=False)
    key = tmp_path / "jwt_secret"
    key.write_text("an-old-development-key-0123456789")
    key.chmod(0o644)
    assert ServiceSettings.from_env().jwt_secret == "an-old-development-key-0123456789"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``uvicorn.run`` replaced by a recorder: these tests must never start a server."""
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    return calls


@pytest.mark.parametrize("value", [None, "prod", "Production"])
def test_serve_refuses_to_start_without_a_valid_env(
    value: str | None,
    served: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if value is None:
        monkeypatch.delenv("ENV", raising=False)
    else:
        monkeypatch.setenv("ENV", value)
    assert cli.main(["serve"]) != 0
    assert served == []
    assert "'development' or 'production'" in capsys.readouterr().err


def test_serve_in_production_refuses_to_start_without_its_secrets(
    served: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    assert cli.main(["serve"]) != 0
    assert served == []
    assert "STRIPE_WEBHOOK_SECRET" in capsys.readouterr().err


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that gets as far as connecting has already failed these tests."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the command connected to a database instead of refusing")

    monkeypatch.setattr(cli, "database_settings", refuse)


@pytest.mark.parametrize("command", [["projections", "run"], ["migrate"], ["demo"]])
def test_workers_and_writers_refuse_to_start_without_a_valid_env(
    command: list[str],
    no_database: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENV", "prod")
    assert cli.main(command) != 0
    assert "'development' or 'production'" in capsys.readouterr().err


def test_the_projection_worker_in_production_refuses_to_start_without_database_url(
    no_database: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert cli.main(["projections", "run"]) != 0
    assert "DATABASE_URL" in capsys.readouterr().err


def test_serve_with_several_processes_shares_one_metrics_directory_on_the_internal_listener(
    served: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import adapters.metrics

    listened: list[str] = []
    monkeypatch.setattr(adapters.metrics, "serve_internal", listened.append)
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("METRICS_LISTEN", "127.0.0.1:9464")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    assert cli.main(["serve", "--workers", "2"]) == 0
    assert listened == ["127.0.0.1:9464"]
    [(args, kwargs)] = served
    assert args == ("api.app:create_app",)
    assert kwargs["factory"] is True and kwargs["workers"] == 2
    assert (tmp_path / "metrics").is_dir()
