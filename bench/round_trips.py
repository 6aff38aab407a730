"""How many times each request waits on PostgreSQL: the round trips of a request.

Builds the app in process (``TestClient``, workers off, rate limits off) over a fresh schema
on PostgreSQL (``DATABASE_URL`` or the embedded server), makes a user with a deposit and a
published challenge with `bench.generator.HttpSetup`, then counts, for one request at a time,
every time psycopg goes to the server (``Connection.wait`` of a generator that does any
I/O: a query, a BEGIN, a COMMIT, a pipeline's sync each) and,
among them, the development test clock's readings (production's clock reads no database).

    python bench/round_trips.py
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Another checkout's app, counted with this harness (e.g. BENCH_APP_ROOT=../main).
sys.path.insert(0, os.environ.get("BENCH_APP_ROOT", str(ROOT)))

from fastapi.testclient import TestClient  # noqa: E402

from adapters.test_clock import PgTestClock  # noqa: E402
from api.app import create_app  # noqa: E402
from bench.generator import HttpSetup, bearer  # noqa: E402
from bench.services import bench_services  # noqa: E402


class Counter:
    def __init__(self) -> None:
        self.waits = 0
        self.clock = 0
        self.lock = threading.Lock()


@contextmanager
def counting() -> Iterator[Counter]:
    counter = Counter()
    wait: Callable[..., Any] = psycopg.Connection.wait
    now: Callable[..., Any] = PgTestClock.now

    def watched(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        """``gen``, counted once if it goes to the server at all (a COMMIT with no
        transaction open, for one, returns without a word to the server)."""
        try:
            step = gen.send(None)
        except StopIteration as done:
            return done.value
        with counter.lock:
            counter.waits += 1
        while True:
            answer = yield step
            try:
                step = gen.send(answer)
            except StopIteration as done:
                return done.value

    def counted_wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        return wait(self, watched(gen), *args, **kwargs)

    def counted_now(self: Any) -> Any:
        with counter.lock:
            counter.clock += 1
        return now(self)

    psycopg.Connection.wait = counted_wait  # type: ignore[method-assign]
    PgTestClock.now = counted_now  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        psycopg.Connection.wait = wait  # type: ignore[method-assign]
        PgTestClock.now = now  # type: ignore[method-assign]


def measure() -> list[tuple[str, int, int]]:
    """(request, round trips in development, of which test-clock readings)."""
    found: list[tuple[str, int, int]] = []
    with (
        bench_services("round-trips") as services,
        TestClient(create_app(services, start_workers=False)) as client,
    ):
        made = HttpSetup(services.config.base_url).run(users=2, challenges=2, client=client)
        joiner = bearer(made.tokens[0])
        services.projector.catch_up()  # the wallet's row exists, as it would when served

        def count(name: str, send: Callable[[], httpx.Response]) -> None:
            with counting() as c:
                answer = send()
            assert answer.status_code < 300, (name, answer.status_code, answer.text)
            found.append((name, c.waits, c.clock))

        count("GET /v1/health", lambda: client.get("/v1/health"))
        if hasattr(services.tokens, "forget_user"):  # a checkout with the session cache
            services.tokens.forget_user(made_user(services, made.tokens[0]))
        count(
            "GET /v1/wallet (session not yet checked)",
            lambda: client.get("/v1/wallet", headers=joiner),
        )
        count("GET /v1/wallet", lambda: client.get("/v1/wallet", headers=joiner))
        count(
            "POST /v1/challenges/join (first join)",
            lambda: client.post(
                "/v1/challenges/join",
                headers=joiner,
                json={"invite_code": made.codes[0], "timezone": "UTC"},
            ),
        )
        count(
            "POST /v1/challenges/join (with Idempotency-Key)",
            lambda: client.post(
                "/v1/challenges/join",
                headers={**joiner, "Idempotency-Key": uuid.uuid4().hex},
                json={"invite_code": made.codes[1], "timezone": "UTC"},
            ),
        )
    return found


def made_user(services: Any, token: str) -> uuid.UUID:
    return uuid.UUID(str(services.tokens._decode(token, "access")["sub"]))


if __name__ == "__main__":
    rows = measure()
    print(f"{'request':<50}{'development':>12}{'production':>12}")
    for name, waits, clock in rows:
        print(f"{name:<50}{waits:>12}{waits - clock:>12}")
