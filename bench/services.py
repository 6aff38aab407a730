"""The services an in-process bench runs on: a development deployment on a schema of its own.

Simulated Stripe, proofs in a temporary directory, no rate limits and no workers, a
throwaway signing key; the schema is dropped afterwards, whatever the bench did to it.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.database import database_settings
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from adapters.settings import ServiceSettings
from api.bootstrap import Services, build_services


@contextmanager
def bench_services(name: str) -> Iterator[Services]:
    """Services on a new schema of ``DATABASE_URL`` (or the embedded server); ``name`` tells
    the bench's files and key apart."""
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    config = ServiceSettings(
        jwt_secret=f"{name}-signing-key-0123456789abcdef",
        rate_limits=False,
        run_workers=False,
        stripe_mode="simulated",
        storage="local",
        storage_dir=Path(tempfile.mkdtemp(prefix=f"peerpush-{name}-")),
    )
    try:
        services = build_services(config, DatabaseSettings.from_url(base.url, schema=schema))
        try:
            yield services
        finally:
            services.close()
    finally:
        drop_schema(base.url, schema)
