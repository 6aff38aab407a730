"""The CPU one `GET /v1/wallet` costs this process, next to the bare ``SELECT`` endpoint's.

No server and no network client: each request is one ASGI call straight into the app (the
scope, a ``receive`` that gives an empty body, a ``send`` that keeps the answer), on uvloop,
so what is measured is our own code (routing, dependencies, middleware, the query through
psycopg, serialisation) and the same for ``bench/bare_app.py``. CPU is this process's
(``time.process_time``: PostgreSQL's own work is not in it); wall time is beside it. Requests
run one at a time, then 8 at once (the HTTP bench's connections), alternating between the
two apps; on a shared machine the CPU figures move much less than the rates over HTTP.

    python bench/wallet_cpu.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.environ.get("BENCH_APP_ROOT", str(ROOT)))

import uvloop  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

from adapters.database import database_settings  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from adapters.settings import ServiceSettings  # noqa: E402
from api.app import create_app  # noqa: E402
from api.bootstrap import build_services  # noqa: E402
from bench import bare_app  # noqa: E402
from bench.generator import HttpSetup  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def call(app: App, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET straight through ASGI; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def timed(
    app: App, path: str, tokens: list[str], n: int, concurrent: int
) -> tuple[float, float]:
    """(CPU µs, wall µs) per request over ``n`` requests, ``concurrent`` at a time."""
    headers = [[(b"authorization", f"Bearer {t}".encode())] for t in tokens] or [[]]
    count = 0

    async def one_caller() -> None:
        nonlocal count
        while count < n:
            i = count
            count += 1
            status = await call(app, path, headers[i % len(headers)])
            assert status == 200, status

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_caller() for _ in range(concurrent)))
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def main() -> None:
    n = int(os.environ.get("BENCH_REQUESTS", "2000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    bare_app.setup(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    config = ServiceSettings(
        jwt_secret="wallet-cpu-signing-key-0123456789abcdef",
        rate_limits=False,
        run_workers=False,
        stripe_mode="simulated",
        storage="local",
        storage_dir=Path(tempfile.mkdtemp(prefix="peerpush-cpu-")),
    )
    services = build_services(config, db)
    pool_size = services.config.read_pool_size
    bare_app.POOL["db"] = ConnectionPool(
        base.url,
        min_size=pool_size,
        max_size=pool_size,
        kwargs={"autocommit": True, "options": f"-c search_path={schema}"},
        open=True,
    )
    try:
        app = create_app(services, start_workers=False)
        with TestClient(app) as client:  # runs the lifespan; the setup goes through the API
            made = HttpSetup(services.config.base_url).run(users=32, challenges=0, client=client)
            services.projector.catch_up()

            async def measure() -> None:
                for concurrent in (1, 8):
                    for _ in range(rounds):
                        bare = await timed(bare_app.app, "/select", [], n, concurrent)
                        ours = await timed(app, "/v1/wallet", made.tokens, n, concurrent)
                        print(
                            f"{concurrent} at once: GET /v1/wallet {ours[0]:6.0f} µs CPU "
                            f"({ours[1]:6.0f} wall), bare /select {bare[0]:6.0f} µs CPU "
                            f"({bare[1]:6.0f} wall): CPU ratio {ours[0] / bare[0]:4.2f}",
                            flush=True,
                        )

            uvloop.run(measure())
    finally:
        bare_app.POOL.pop("db").close()
        services.close()
        drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
