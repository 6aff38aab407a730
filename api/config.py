"""The HTTP service's settings, validated once at start-up from the environment.

``ENV`` is required and must be ``development`` or ``production``: a misspelling must not quietly
run the simulated Stripe and the test clock. Production names every secret and its database;
nothing secret has a default there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api.client_address import parse_trusted_proxies

ENVIRONMENTS = ("development", "production")
# What production refuses to start without (SPEC §7): a missing DATABASE_URL would give every
# replica an embedded database, and so a ledger, of its own.
PRODUCTION_REQUIRED = (
    "DATABASE_URL",
    "JWT_SECRET",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_CONNECT_WEBHOOK_SECRET",
    "PUBLIC_BASE_URL",
)
KiB = 1024
MiB = 1024 * KiB


class ConfigError(RuntimeError):
    """The environment does not describe a service that may start; the message says why."""


def environment_of(env: Mapping[str, str] | None = None) -> str:
    """``ENV``, which must be exactly one of `ENVIRONMENTS`; anything else refuses to start."""
    value = (os.environ if env is None else env).get("ENV")
    if value not in ENVIRONMENTS:
        shown = "unset" if value is None else repr(value)
        raise ConfigError(
            f"ENV must be set to 'development' or 'production' (it is {shown}); refusing to start"
        )
    return value


def require_process_environment(env: Mapping[str, str] | None = None) -> str:
    """The check every entry point that writes makes before it connects (serve, workers).

    Production must name its database: the embedded fallback is a development convenience.
    """
    env = os.environ if env is None else env
    name = environment_of(env)
    if name == "production" and not env.get("DATABASE_URL", "").strip():
        raise ConfigError("DATABASE_URL is required when ENV=production; refusing to start")
    return name


@dataclass(frozen=True)
class ApiConfig:
    environment: str = "development"
    base_url: str = "http://127.0.0.1:8000"  # PUBLIC_BASE_URL: where clients reach the API
    jwt_secret: str = ""
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    stripe_mode: str = "simulated"  # "simulated" | "stripe"
    stripe_api_key: str = "sk_test_simulated"
    stripe_webhook_secret: str = "whsec_simulated"
    stripe_api_base: str = ""
    stripe_connect_webhook_secret: str = "whsec_connect_simulated"
    # Withdrawal and cash-out workers hold their work (nothing refused or lost) while set.
    payouts_paused: bool = False
    storage: str = "local"  # "local" | "s3"
    storage_dir: Path = Path(".data/proofs")
    s3_bucket: str = "peerpush-proofs"
    s3_endpoint_url: str = ""
    max_proof_bytes: int = 10 * MiB
    # Any request body above this is refused with 413 before it is read whole; a proof upload
    # may carry max_proof_bytes on top (its form fields and boundaries fit in this much).
    max_body_bytes: int = 64 * KiB
    # host:port of the internal listener serving /metrics ("" = none). Production never serves
    # /metrics on the public listener.
    metrics_listen: str = ""
    rate_limits_enabled: bool = True
    # Proxies whose X-Forwarded-For is believed (addresses or CIDR blocks); none by default.
    trusted_proxies: tuple[str, ...] = ()
    run_workers: bool = True
    worker_interval_seconds: float = 1.0
    read_wait_seconds: float = 2.0

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def test_clock_enabled(self) -> bool:
        """The test clock and simulated Stripe exist only off production."""
        return not self.production

    @property
    def max_upload_bytes(self) -> int:
        """The body limit of a proof upload: the photo plus the form around it."""
        return self.max_proof_bytes + self.max_body_bytes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiConfig:
        env = os.environ if env is None else env
        environment = environment_of(env)
        production = environment == "production"
        if production:
            missing = [name for name in PRODUCTION_REQUIRED if not env.get(name, "").strip()]
            if missing:
                raise ConfigError(
                    f"ENV=production requires {', '.join(missing)}; refusing to start "
                    "(no secret has a default in production)"
                )
        secret = env.get("JWT_SECRET", "")
        if production and len(secret) < 32:
            raise ConfigError("JWT_SECRET of at least 32 characters is required in production")
        if production and env.get("STRIPE_MODE", "stripe") == "simulated":
            raise ConfigError("simulated Stripe is refused when ENV=production")
        # BASE_URL is the setting's old name, still read in development only.
        base_url = env.get("PUBLIC_BASE_URL", "").strip() or (
            "" if production else env.get("BASE_URL", "").strip()
        )
        return cls(
            environment=environment,
            base_url=base_url or cls.base_url,
            jwt_secret=secret or _development_secret(),
            stripe_mode=env.get("STRIPE_MODE", "stripe" if production else "simulated"),
            stripe_api_key=env.get("STRIPE_API_KEY", cls.stripe_api_key),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", cls.stripe_webhook_secret),
            stripe_api_base=env.get("STRIPE_API_BASE", ""),
            stripe_connect_webhook_secret=env.get(
                "STRIPE_CONNECT_WEBHOOK_SECRET", cls.stripe_connect_webhook_secret
            ),
            payouts_paused=env.get("PAYOUTS_PAUSED", "false").strip().lower()
            in ("1", "true", "yes", "on"),
            storage=env.get("STORAGE", "s3" if production else "local"),
            storage_dir=Path(env.get("STORAGE_DIR", ".data/proofs")),
            s3_bucket=env.get("S3_BUCKET", cls.s3_bucket),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL", ""),
            max_proof_bytes=_positive_int(env, "MAX_PROOF_BYTES", cls.max_proof_bytes),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            metrics_listen=_listen_address(env.get("METRICS_LISTEN", "").strip()),
            rate_limits_enabled=env.get("RATE_LIMITS", "on") != "off",
            trusted_proxies=_trusted_proxies(env.get("TRUSTED_PROXIES", "")),
            run_workers=env.get("RUN_WORKERS", "on") != "off",
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name} must be a positive whole number of bytes (it is {raw!r})")
    return value


def _listen_address(raw: str) -> str:
    """``host:port`` (``""`` for no listener), checked now rather than when metrics are due."""
    if not raw:
        return ""
    if parse_listen(raw) is None:
        raise ConfigError(f"METRICS_LISTEN must be host:port, e.g. 127.0.0.1:9464 (it is {raw!r})")
    return raw


def parse_listen(raw: str) -> tuple[str, int] | None:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def _trusted_proxies(value: str) -> tuple[str, ...]:
    """Validated at start-up: a typo in ``TRUSTED_PROXIES`` stops the service, not a request."""
    return tuple(str(network) for network in parse_trusted_proxies(value))


def _development_secret() -> str:
    """One signing key shared by every local process, kept under ./.data (never production).

    The file is created readable by its owner only: anyone who can read it can mint tokens.
    """
    path = Path(os.environ.get("DATA_DIR", ".data")) / "jwt_secret"
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
