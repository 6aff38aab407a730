"""The service's settings (environment, database, secrets, Stripe, storage, limits, listeners).

Typed with pydantic-settings and read once, by the composition root or the command line, from
the environment; everything else receives the built object. ``ENV`` is required and must be
exactly ``development`` or ``production``: a misspelling must not quietly run the simulated
Stripe and the test clock. Production names every secret and its database; nothing secret has
a default there. Every field is listed in docs/settings.md (``tests/unit/test_settings_doc.py``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
)

from adapters.logs import LogFormat
from adapters.rate_limits import ENV_PREFIX, Limit, limits_from_env
from application.settings import SETTINGS_CONFIG, SettingsError, describe, old_names, variables

ENVIRONMENTS = ("development", "production")
KiB = 1024
MiB = 1024 * KiB
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(SettingsError, RuntimeError):
    """The environment does not describe a service that may start; the message says why."""


class StoreSettings(BaseSettings):
    """Where the ledger is: all the read-only auditor commands need (they run without ``ENV``,
    so an auditor can point them at a database without the service's settings)."""

    model_config = SETTINGS_CONFIG

    # "" = the embedded PostgreSQL under DATA_DIR (development only).
    database_url: str = ""
    db_schema: str = "public"
    # Development's own files: the embedded database and the JWT signing key.
    data_dir: Path = Path(".data")
    # The event store's connection pool, per process: size both against the server's
    # max_connections times the number of processes.
    postgres_pool_size: int = Field(default=5, gt=0)
    postgres_max_overflow: int = Field(default=10, ge=0)
    # Aggregates kept in each process's cache.
    aggregate_cache_maxsize: int = Field(default=10_000, ge=0)
    # Concurrent commands' saves share one transaction (application/group_commit.py); off
    # saves each command alone, as before (to bisect a regression).
    group_commit: bool = True
    # A command decides first on the aggregates this process cached, proven current by its
    # save (application/ledger.py); off reads each aggregate's new events first, as before.
    trusted_cache: bool = True

    @classmethod
    def from_env(cls) -> Self:
        """The settings the environment holds, or `ConfigError` naming every variable to fix."""
        try:
            return cls()
        except ValidationError as e:
            raise ConfigError(describe(e, cls)) from None


class ProcessSettings(StoreSettings):
    """What every process that serves, works or writes needs: which environment, and where.

    The workers and ``migrate`` read only these, so a production worker needs ``DATABASE_URL``
    but not the HTTP service's secrets.
    """

    # Field names whose variables production refuses to start without (rules §7): a missing
    # DATABASE_URL would give every replica an embedded database, and so a ledger, of its own.
    production_requires: ClassVar[tuple[str, ...]] = ("database_url",)

    env: str = "development"
    # One JSON object per line (production's default) or text for a person (development's).
    log_format: LogFormat = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _log_format_default(cls, data: Any) -> Any:
        """Production logs JSON unless told otherwise; development, text."""
        if isinstance(data, dict) and "log_format" not in data:
            data = {**data, "log_format": "json" if data.get("env") == "production" else "text"}
        return data

    @field_validator("env")
    @classmethod
    def _exact_environment(cls, value: str) -> str:
        if value not in ENVIRONMENTS:
            raise ValueError("ENV must be set to 'development' or 'production'")
        return value

    @model_validator(mode="after")
    def _production_is_complete(self) -> Self:
        if self.env == "production":
            names = variables(type(self))
            missing = [
                names[field]
                for field in self.production_requires
                if field not in self.model_fields_set or not str(getattr(self, field)).strip()
            ]
            if missing:
                raise ValueError(
                    f"ENV=production requires {', '.join(missing)} "
                    "(no secret has a default in production)"
                )
        return self

    @property
    def environment(self) -> str:
        """``development`` or ``production`` (``ENV``)."""
        return self.env

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def test_clock_enabled(self) -> bool:
        """The test clock and simulated Stripe exist only off production."""
        return not self.production

    @classmethod
    def from_env(cls) -> Self:
        """The process's settings; `ConfigError` unless ``ENV`` is set."""
        settings = super().from_env()
        if "env" not in settings.model_fields_set:
            raise ConfigError(
                "ENV must be set to 'development' or 'production' (it is unset); refusing to start"
            )
        return settings


class ServiceSettings(ProcessSettings):
    """The HTTP service's settings (``peerpush serve``): the process's, plus secrets, Stripe,
    proof storage, limits and listeners."""

    production_requires: ClassVar[tuple[str, ...]] = (
        "database_url",
        "jwt_secret",
        "stripe_api_key",
        "stripe_webhook_secret",
        "stripe_connect_webhook_secret",
        "public_base_url",
    )

    # Where clients reach the API; checkout redirect URLs must be on it. Development still
    # reads its old name, BASE_URL (`_OtherVariables`).
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", json_schema_extra={"old_name": "BASE_URL"}
    )
    # The HS256 signing key; development falls back to a key kept in DATA_DIR (`from_env`).
    jwt_secret: str = ""
    access_token_minutes: int = Field(default=15, gt=0)
    refresh_token_days: int = Field(default=7, gt=0)
    # How long a process may trust a session it has checked (docs/performance.md): a logout,
    # a reused refresh token, an erasure or a role change made in another process is seen at
    # most this late there (at once in the process that made it); 0 checks every request.
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    stripe_mode: str = "simulated"  # "simulated" | "stripe"; production defaults to stripe
    stripe_api_key: str = "sk_test_simulated"
    stripe_webhook_secret: str = "whsec_simulated"
    # Connect events (payout accounts) are signed with their own endpoint's secret.
    stripe_connect_webhook_secret: str = "whsec_connect_simulated"
    # Withdrawal and cash-out workers hold their work (nothing refused or lost) while set.
    payouts_paused: bool = False
    stripe_api_base: str = ""  # "" = Stripe's own
    storage: str = "local"  # "local" | "s3"; production defaults to s3
    storage_dir: Path = Path(".data/proofs")
    s3_bucket: str = "peerpush-proofs"
    s3_endpoint_url: str = ""  # "" = AWS
    aws_region: str = "us-east-1"
    max_proof_bytes: int = Field(default=10 * MiB, gt=0)
    # A photo's pixels (width × height) read from its header before it is decoded: past this
    # it is refused (a decompression bomb stays a few bytes instead of gigabytes of memory).
    max_photo_pixels: int = Field(default=40_000_000, gt=0)
    # Any request body above this is refused with 413 before it is read whole; a proof upload
    # may carry max_proof_bytes on top (its form fields and boundaries fit in this much).
    max_body_bytes: int = Field(default=64 * KiB, gt=0)
    # host:port of the internal listener serving /metrics ("" = none). Production never serves
    # /metrics on the public listener.
    metrics_listen: str = ""
    rate_limits: bool = True  # off turns every limit off
    # Operators' replacements for single limits, from RATE_LIMIT_<BUCKET> (see
    # adapters.rate_limits); None turns a bucket off.
    rate_limit_overrides: dict[str, Limit | None] = Field(
        default_factory=dict, json_schema_extra={"variable": "RATE_LIMIT_<BUCKET>"}
    )
    # Proxies whose X-Forwarded-For is believed (addresses or CIDR blocks); none by default.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    run_workers: bool = True
    worker_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    read_wait_seconds: float = Field(default=2.0, ge=0)
    # How many requests may wait for the read models at once; more are refused at once (503).
    read_max_waiters: int = Field(default=64, gt=0)
    # The worker's scheduled `audit verify` and `reconcile` (rules §8): how often each runs
    # (seconds or an ISO 8601 duration such as PT1H; 0 = never).
    audit_every: timedelta = Field(default=timedelta(hours=1), ge=timedelta(0))
    reconcile_every: timedelta = Field(default=timedelta(hours=1), ge=timedelta(0))
    # Where each audit publishes the chain head, outside the database: file:///path or
    # s3://bucket/key ("" = nowhere).
    chain_head_export: str = ""
    # The read models' connection pool per API process: GET requests hold one for their query.
    read_pool_size: int = Field(default=8, gt=0, le=100)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _OtherVariables(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _environment_defaults(cls, data: Any) -> Any:
        """Production defaults to real Stripe and S3, development to neither."""
        if not isinstance(data, dict):
            return data
        production = data.get("env") == "production"
        data = dict(data)
        data.setdefault("stripe_mode", "stripe" if production else "simulated")
        data.setdefault("storage", "s3" if production else "local")
        return data

    @field_validator("rate_limits", "run_workers", mode="before")
    @classmethod
    def _on_unless_off(cls, value: Any) -> Any:
        """``RATE_LIMITS`` and ``RUN_WORKERS`` are on unless set to ``off``."""
        return value != "off" if isinstance(value, str) else value

    @field_validator("rate_limit_overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: Any) -> Any:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return limits_from_env(value)
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: Any) -> Any:
        """Checked at start-up: a typo in ``TRUSTED_PROXIES`` stops the service, not a request."""
        if isinstance(value, str):
            return tuple(str(network) for network in parse_trusted_proxies(value))
        return value

    @field_validator("audit_every", "reconcile_every", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        """A plain number is seconds (``3600``); anything else is read as a duration."""
        if isinstance(value, str):
            try:
                return timedelta(seconds=float(value))
            except ValueError:
                return value
        return value

    @field_validator("chain_head_export")
    @classmethod
    def _export_target(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("file:///", "s3://")):
            raise ValueError("CHAIN_HEAD_EXPORT must be file:///path or s3://bucket/key")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        """``host:port`` (``""`` for no listener), checked now rather than when metrics are due."""
        value = value.strip()
        if value and parse_listen(value) is None:
            raise ValueError("METRICS_LISTEN must be host:port, e.g. 127.0.0.1:9464")
        return value

    @model_validator(mode="after")
    def _production_is_real(self) -> Self:
        if self.production and len(self.jwt_secret) < 32:
            raise ValueError("JWT_SECRET of at least 32 characters is required in production")
        if self.production and self.stripe_mode == "simulated":
            raise ValueError("simulated Stripe is refused when ENV=production")
        return self

    @property
    def base_url(self) -> str:
        """The public origin (``PUBLIC_BASE_URL``)."""
        return self.public_base_url

    def serve_runs_workers(self, requested: bool | None = None) -> bool:
        """Whether ``peerpush serve`` runs the workers as threads of the server (rules §9).

        Only in development (``RUN_WORKERS``, or what the caller asks): in production the
        workers are their own processes, and each API replica running them too would
        multiply them.
        """
        if self.production:
            return False
        return self.run_workers if requested is None else requested

    def worker_interval(self, name: str) -> float:
        """Seconds between two passes of a worker: ``AUDIT_EVERY`` and ``RECONCILE_EVERY`` for
        the audit and the reconciliation (0: never run), ``WORKER_INTERVAL_SECONDS`` for the
        others."""
        if name == "audit":
            return self.audit_every.total_seconds()
        if name == "reconcile":
            return self.reconcile_every.total_seconds()
        return self.worker_interval_seconds

    @property
    def max_upload_bytes(self) -> int:
        """The body limit of a proof upload: the photo plus the form around it."""
        return self.max_proof_bytes + self.max_body_bytes

    @classmethod
    def from_env(cls) -> Self:
        """The service's settings; in development without ``JWT_SECRET``, the local key."""
        settings = super().from_env()
        if not settings.jwt_secret:
            settings = settings.model_copy(
                update={"jwt_secret": development_secret(settings.data_dir)}
            )
        return settings


class _OtherVariables(PydanticBaseSettingsSource):
    """The variables not named after a field, read after (so below) the fields' own:
    every ``RATE_LIMIT_<BUCKET>``, gathered into ``rate_limit_overrides``, and, in development
    only, the old names of renamed settings (``BASE_URL``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        limits = {
            name: value
            for name, value in os.environ.items()
            if name.startswith(ENV_PREFIX) and value.strip()
        }
        if limits:
            found["rate_limit_overrides"] = limits
        if os.environ.get("ENV") != "production":
            for old, field in old_names(self.settings_cls).items():
                if os.environ.get(old, "").strip():
                    found[field] = os.environ[old].strip()
        return found


def parse_listen(raw: str) -> tuple[str, int] | None:
    """``host:port`` → (host, port), or None when ``raw`` is not one."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.1"`` → networks; `ValueError` names a malformed entry."""
    networks = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR block"
            ) from None
    return tuple(networks)


def development_secret(data_dir: Path) -> str:
    """One signing key shared by every local process, kept in ``data_dir`` (never production).

    The file is created readable by its owner only: anyone who can read it can mint tokens.
    """
    path = data_dir / "jwt_secret"
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        return secret
    if path.stat().st_mode & 0o077:  # written by an older version, world-readable
        path.chmod(0o600)
    return secret
