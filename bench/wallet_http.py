"""`GET /v1/wallet` against the bare ``SELECT`` endpoint, and nothing else, interleaved.

A focused version of ``bench/http_bench.py``'s wallet row, for working on that one figure: the
same servers (``peerpush serve --workers W``, development, rate limits and workers off; the
projection process; ``bench/bare_app.py`` with the same server, processes and pool size), the
same users (`bench.generator.HttpSetup`, 32 users with a deposit each), and wrk with 8
connections. It skips the joins and ``/health``, so rounds are short and many.

``BENCH_APP_ROOTS`` (comma-separated checkouts, default this one) serves each checkout's API
on the same schema at once, so two versions of the code are measured in one run, round by
round next to the same baseline. ``BENCH_PROFILE=DIR`` runs py-spy on each API's processes
during its wallet runs (collapsed stacks, ``bench/profile_summary.py``).

    BENCH_ROUNDS=6 BENCH_SECONDS=5 python bench/wallet_http.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.database import database_settings  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from bench import bare_app  # noqa: E402
from bench.generator import HttpSetup, bearer  # noqa: E402
from bench.http_bench import (  # noqa: E402
    caught_up,
    free_port,
    lua_list,
    profiled,
    stop,
    wait_until_up,
    wrk,
)

USERS = 32


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def percentile_line(name: str, runs: list[dict[str, Any]], baseline: float) -> str:
    rate = sum(r["requests"] - r["non2xx"] for r in runs) / sum(r["seconds"] for r in runs)
    p50 = sorted(r["p50_ms"] for r in runs)[len(runs) // 2]
    p99 = sorted(r["p99_ms"] for r in runs)[len(runs) // 2]
    non2xx = sum(r["non2xx"] for r in runs)
    ratio = f"{rate / baseline:5.2f}x" if baseline else "      "
    return f"{name:<28} {rate:8.0f}/s {ratio}  p50 {p50:6.2f}  p99 {p99:6.2f} ms  non2xx {non2xx}"


def main() -> None:
    roots = [
        Path(p).resolve() for p in os.environ.get("BENCH_APP_ROOTS", str(ROOT)).split(",") if p
    ]
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    seconds = int(os.environ.get("BENCH_SECONDS", "5"))
    pool_size = int(os.environ.get("READ_POOL_SIZE", "8"))
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    bare_app.setup(base.url, schema)
    logs = Path(tempfile.mkdtemp(prefix="peerpush-wallet-bench-"))
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": base.url,
        "DB_SCHEMA": schema,
        "RATE_LIMITS": "off",
        "RUN_WORKERS": "off",
        "READ_POOL_SIZE": str(pool_size),
        # one signing key for every API served: a token one issued is valid on the others
        "JWT_SECRET": f"wallet-bench-{uuid.uuid4().hex}",
    }
    python = sys.executable
    processes: list[subprocess.Popen[bytes]] = []
    apis: list[tuple[str, str, int]] = []  # (name, url, pid)
    try:
        for n, root in enumerate(roots):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            served = start(
                [python, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(workers)],
                root,
                {**env, "PYTHONPATH": str(root), "PUBLIC_BASE_URL": url},
                logs / f"api{n}.log",
            )
            processes.append(served)
            wait_until_up(f"{url}/v1/health", served)  # one at a time: the first migrates
            apis.append((f"wallet {root.name}#{n}", url, served.pid))
        processes.append(
            start(
                [python, "-m", "api.cli", "projections", "run"],
                roots[0],
                {**env, "PYTHONPATH": str(roots[0])},
                logs / "proj.log",
            )
        )
        bare_port = free_port()
        bare = f"http://127.0.0.1:{bare_port}"
        processes.append(
            start(
                [
                    *(python, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port)),
                    *("--workers", str(workers), "--loop", "uvloop", "--http", "httptools"),
                    *("--log-level", "warning"),
                ],
                ROOT,
                {
                    **env,
                    "PYTHONPATH": str(ROOT),
                    "BARE_DATABASE_URL": base.url,
                    "BARE_SCHEMA": schema,
                    "BARE_POOL_SIZE": str(pool_size),
                },
                logs / "bare.log",
            )
        )
        wait_until_up(f"{bare}/noop", processes[-1])
        made = HttpSetup(apis[0][1]).run(USERS, 0)
        data = logs / "data.lua"
        data.write_text(lua_list("tokens", made.tokens) + lua_list("codes", made.codes))
        caught_up(DatabaseSettings.from_url(base.url, schema=schema))
        lua = {"BENCH_DATA": str(data)}
        answers = {
            name: httpx.get(f"{url}/v1/wallet", headers=bearer(made.tokens[0]), timeout=10)
            for name, url, _ in apis
        }
        for name, answer in answers.items():  # the checkouts served must answer alike
            drop = ("x-request-id", "date")
            print(name, answer.status_code, answer.text)
            print(" ", sorted((k, v) for k, v in answer.headers.items() if k not in drop))
        wrk(f"{bare}/select", "get.lua", 2, lua)  # warm both up
        for _, url, _ in apis:
            wrk(f"{url}/v1/wallet", "get.lua", 2, lua)
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(rounds):
            runs.setdefault("bare select", []).append(
                wrk(f"{bare}/select", "get.lua", seconds, lua)
            )
            for name, url, pid in apis:
                spy = profiled(f"{name} round {len(runs.get(name, []))}", pid, seconds)
                runs.setdefault(name, []).append(wrk(f"{url}/v1/wallet", "get.lua", seconds, lua))
                if spy is not None:
                    spy.wait(60)
        load = os.getloadavg()[0]
        bare_rate = sum(r["requests"] for r in runs["bare select"]) / sum(
            r["seconds"] for r in runs["bare select"]
        )
        print(
            f"{rounds} rounds of {seconds}s, {workers} processes, pool {pool_size}, load {load:.1f}"
        )
        for name, found in runs.items():
            print(percentile_line(name, found, 0 if name == "bare select" else bare_rate))
    finally:
        for process in reversed(processes):
            stop(process)
        drop_schema(base.url, schema)
        print(f"logs in {logs}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.0f}s")
