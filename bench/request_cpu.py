"""The CPU one request costs this process, next to the bare endpoint's: `GET /v1/wallet` against
the bare ``SELECT``, a first `POST /v1/challenges/join` against the bare ``INSERT``.

No server and no network client: each request is one ASGI call straight into the app (the
scope, a ``receive`` that gives the body, a ``send`` that keeps the answer), on uvloop, so
what is measured is our own code (routing, dependencies, middleware, the command or query
through psycopg, serialisation; every thread of the process, the group commit's and the cache
follower's too) and the same for ``bench/bare_app.py``. CPU is this process's
(``time.process_time``: PostgreSQL's own work is not in it); wall time is beside it. Requests
run one at a time, then 8 at once (the HTTP bench's connections), alternating between the
two apps; on a shared machine the CPU figures move much less than the rates over HTTP.
Every join is a distinct (user, challenge) pair, so every one is a first join.

    python bench/request_cpu.py   # BENCH_ONLY=wallet or joins; BENCH_PROFILE=FILE: py-spy
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.environ.get("BENCH_APP_ROOT", str(ROOT)))

import uvloop  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

from api.app import create_app  # noqa: E402
from api.bootstrap import Services  # noqa: E402
from bench import bare_app  # noqa: E402
from bench.generator import HttpSetup  # noqa: E402
from bench.services import bench_services  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def call(
    app: App, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None
) -> int:
    """One GET (a POST with ``body``) straight through ASGI; its status."""
    if body is not None:
        headers = [*headers, (b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET" if body is None else "POST",
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
        return {"type": "http.request", "body": body or b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


Request = tuple[str, list[tuple[bytes, bytes]], bytes | None]  # path, headers, body


async def timed(app: App, requests: list[Request], n: int, concurrent: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per request over the next ``n`` of ``requests`` (taken in turn,
    round and round), ``concurrent`` at a time; each must answer 2xx."""
    count = 0

    async def one_caller() -> None:
        nonlocal count
        while count < n:
            path, headers, body = requests[count % len(requests)]
            count += 1
            status = await call(app, path, headers, body)
            assert 200 <= status < 300, status

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_caller() for _ in range(concurrent)))
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def line(
    ours_name: str,
    bare_name: str,
    concurrent: int,
    ours: tuple[float, float],
    bare: tuple[float, float],
) -> None:
    print(
        f"{concurrent} at once: {ours_name} {ours[0]:6.0f} µs CPU ({ours[1]:6.0f} wall), "
        f"bare {bare_name} {bare[0]:6.0f} µs CPU ({bare[1]:6.0f} wall): "
        f"CPU ratio {ours[0] / bare[0]:4.2f}",
        flush=True,
    )


def wallet_reads(tokens: list[str]) -> list[Request]:
    return [("/v1/wallet", [(b"authorization", f"Bearer {t}".encode())], None) for t in tokens]


def first_joins(tokens: list[str], codes: list[str]) -> list[Request]:
    """Every (joiner, challenge) pair once, spread as ``bench/wrk/join.lua`` spreads them."""
    pairs = [(t, c) for c in codes for t in tokens]
    stride = next(s for s in range(7919, 10**6, 2) if math.gcd(s, len(pairs)) == 1)
    return [
        (
            "/v1/challenges/join",
            [(b"authorization", f"Bearer {token}".encode())],
            json.dumps({"invite_code": code, "timezone": "UTC"}).encode(),
        )
        for token, code in (pairs[n * stride % len(pairs)] for n in range(len(pairs)))
    ]


def profiled() -> subprocess.Popen[bytes] | None:
    """With ``BENCH_PROFILE=FILE``: py-spy samples this process's GIL holder (what costs CPU)
    from here to the end of the rounds, the set-up left out, into FILE (collapsed stacks;
    ``bench/profile_summary.py`` reads them)."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return None
    spy = subprocess.Popen(
        [
            *(shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy", "record"),
            *("--pid", str(os.getpid()), "--gil", "--rate", "250"),
            *("--format", "raw", "--output", out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # attached before the first round
    return spy


def main() -> None:
    n = int(os.environ.get("BENCH_REQUESTS", "2000"))
    n_joins = int(os.environ.get("BENCH_JOINS", "300"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    only = os.environ.get("BENCH_ONLY", "wallet,joins").split(",")
    users = 32
    # Enough challenges that no pair is joined twice: 2 concurrencies × rounds × n_joins.
    challenges = -(-2 * rounds * n_joins // users) if "joins" in only else 0
    with bench_services("request-cpu") as services:
        db = services.reads.db
        bare_app.setup(db.url, db.schema)
        pool_size = services.config.read_pool_size
        bare_app.POOL["db"] = ConnectionPool(
            db.url,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={"autocommit": True, "options": f"-c search_path={db.schema}"},
            open=True,
        )
        try:
            measure_rounds(services, n, n_joins, rounds, only, users, challenges)
        finally:
            bare_app.POOL.pop("db").close()


def measure_rounds(
    services: Services,
    n: int,
    n_joins: int,
    rounds: int,
    only: list[str],
    users: int,
    challenges: int,
) -> None:
    """The rounds, alternating between our app and the bare one."""
    app = create_app(services, start_workers=False)
    with TestClient(app) as client:  # runs the lifespan; the setup goes through the API
        made = HttpSetup(services.config.base_url).run(
            users=users, challenges=challenges, client=client
        )
        services.projector.catch_up()
        joins = first_joins(made.tokens, made.codes) if made.codes else []
        reads = wallet_reads(made.tokens)
        insert: list[Request] = [("/insert", [], b"")]
        select: list[Request] = [("/select", [], None)]

        async def measure() -> None:
            taken = 0
            for concurrent in (1, 8):
                for _ in range(rounds):
                    if "wallet" in only:
                        bare = await timed(bare_app.app, select, n, concurrent)
                        ours = await timed(app, reads, n, concurrent)
                        line("GET /v1/wallet", "/select", concurrent, ours, bare)
                    if "joins" in only:
                        bare = await timed(bare_app.app, insert, n_joins, concurrent)
                        batch = joins[taken : taken + n_joins]
                        taken += n_joins
                        ours = await timed(app, batch, n_joins, concurrent)
                        line("POST /v1/challenges/join", "/insert", concurrent, ours, bare)

        spy = profiled()
        uvloop.run(measure())
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            spy.wait(60)


if __name__ == "__main__":
    main()
