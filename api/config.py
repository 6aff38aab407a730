"""The HTTP service's settings, validated once at start-up from the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ApiConfig:
    environment: str = "development"
    base_url: str = "http://127.0.0.1:8000"
    jwt_secret: str = ""
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    stripe_mode: str = "simulated"  # "simulated" | "stripe"
    stripe_api_key: str = "sk_test_simulated"
    stripe_webhook_secret: str = "whsec_simulated"
    stripe_api_base: str = ""
    storage: str = "local"  # "local" | "s3"
    storage_dir: Path = Path(".data/proofs")
    s3_bucket: str = "peerpush-proofs"
    s3_endpoint_url: str = ""
    max_proof_bytes: int = 10 * 1024 * 1024
    rate_limits_enabled: bool = True
    run_workers: bool = True
    worker_interval_seconds: float = 1.0
    read_wait_seconds: float = 2.0
    read_max_waiters: int = 64

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def test_clock_enabled(self) -> bool:
        """The test clock and simulated Stripe exist only off production."""
        return not self.production

    @classmethod
    def from_env(cls) -> ApiConfig:
        env = os.environ
        production = env.get("ENV", "development") == "production"
        secret = env.get("JWT_SECRET", "")
        if production and len(secret) < 32:
            raise RuntimeError("JWT_SECRET of at least 32 characters is required in production")
        if production and env.get("STRIPE_MODE", "stripe") == "simulated":
            raise RuntimeError("simulated Stripe is refused when ENV=production")
        return cls(
            environment="production" if production else "development",
            base_url=env.get("BASE_URL", cls.base_url),
            jwt_secret=secret or _development_secret(),
            stripe_mode=env.get("STRIPE_MODE", "stripe" if production else "simulated"),
            stripe_api_key=env.get("STRIPE_API_KEY", cls.stripe_api_key),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", cls.stripe_webhook_secret),
            stripe_api_base=env.get("STRIPE_API_BASE", ""),
            storage=env.get("STORAGE", "s3" if production else "local"),
            storage_dir=Path(env.get("STORAGE_DIR", ".data/proofs")),
            s3_bucket=env.get("S3_BUCKET", cls.s3_bucket),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL", ""),
            rate_limits_enabled=env.get("RATE_LIMITS", "on") != "off",
            run_workers=env.get("RUN_WORKERS", "on") != "off",
            read_max_waiters=int(env.get("READ_MAX_WAITERS", cls.read_max_waiters)),
        )


def _development_secret() -> str:
    """One signing key shared by every local process, kept under ./.data (never production)."""
    path = Path(os.environ.get("DATA_DIR", ".data")) / "jwt_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        try:
            with path.open("x") as f:
                f.write(secret)
        except FileExistsError:
            return path.read_text().strip()
        return secret
