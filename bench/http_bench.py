"""The HTTP API under wrk, next to bare FastAPI endpoints served the same way, in one run.

Starts, on PostgreSQL (``DATABASE_URL`` or the embedded server) in a fresh schema dropped at
the end:

- ``peerpush serve --workers W`` (rate limits off; the workers off) and ``peerpush projections
  run`` as production runs them: a separate projection process;
- ``bench/bare_app.py`` with the same server, ``W`` processes and the same pool size.

`bench.generator.HttpSetup` makes 32 users with deposits and 400 published challenges with a
1-token stake through the API. Then, ``BENCH_ROUNDS`` times, interleaved, each for
``BENCH_SECONDS`` with 8 connections: ``GET /v1/health`` and the bare ``/noop``;
``GET /v1/wallet`` and the bare ``SELECT``; ``POST /v1/challenges/join`` (a distinct (user,
challenge) pair per request) and the bare autocommit ``INSERT``.

Joins are counted from the read models, not from wrk: only first joins (a new participant)
count, the joiners' staked tokens must equal them, and a round's time runs until the read
models have caught up with the stream's head.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.database import database_settings  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from bench import bare_app  # noqa: E402
from bench.generator import HttpSetup  # noqa: E402

LUA = ROOT / "bench" / "wrk"
# The checkout whose API is served (another one to measure it with this harness, e.g. main's).
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT", str(ROOT))).resolve()
CONNECTIONS = 8
USERS, CHALLENGES = 32, 400


@dataclass
class Figures:
    """One endpoint's figures over the rounds: rate (requests/s), latency percentiles."""

    rate: float
    p50: float
    p99: float
    p999: float
    extra: dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {seconds:.0f}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        args, cwd=APP_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def wrk(url: str, script: str, seconds: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA / script),
            url,
        ],
        env={**os.environ, "BENCH_LUA_DIR": str(LUA), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    figures: dict[str, Any] = json.loads(line)
    return figures


def profiled(name: str, pid: int, seconds: int) -> subprocess.Popen[bytes] | None:
    """With ``BENCH_PROFILE=DIR``: py-spy samples the API's processes while wrk runs, into
    ``DIR/NAME.txt`` (collapsed stacks; ``bench/profile_summary.py`` reads them)."""
    where = os.environ.get("BENCH_PROFILE")
    if not where:
        return None
    Path(where).mkdir(parents=True, exist_ok=True)
    out = Path(where) / f"{name.replace(' ', '_')}.txt"
    return subprocess.Popen(
        [
            *(shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy", "record"),
            *("--pid", str(pid), "--subprocesses", "--nonblocking"),
            *("--rate", "200", "--duration", str(seconds), "--format", "raw", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def lua_list(name: str, values: list[str]) -> str:
    return f"{name} = {{" + ",".join(json.dumps(v) for v in values) + "}\n"


def joins_so_far(db: DatabaseSettings, owner_stake: int) -> tuple[int, int]:
    """(first joins, tokens the joiners have staked), from the read models."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(participants), 0) FROM challenge_summaries), "
            "(SELECT count(*) FROM challenge_summaries), "
            "(SELECT coalesce(sum(staked), 0) FROM wallet_balances)"
        ).fetchone()
    assert row is not None
    participants, challenges, staked = (int(x) for x in row)
    return participants - challenges, staked - owner_stake


def caught_up(api: str, seconds: float = 120) -> None:
    """Wait until the read models have applied the stream's head."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = httpx.get(f"{api}/v1/ready", timeout=10).json()
        if ready.get("lag") == 0:
            return
        time.sleep(0.05)
    raise SystemExit("the read models did not catch up")


def measure(
    workers: int = 2,
    rounds: int = 1,
    seconds: int = 5,
    pool_size: int = 8,
    challenges: int = CHALLENGES,
) -> dict[str, Figures]:
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    bare_app.setup(base.url, schema)
    api_port, bare_port = free_port(), free_port()
    api, bare = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
    logs = Path(tempfile.mkdtemp(prefix="peerpush-bench-"))
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": base.url,
        "DB_SCHEMA": schema,
        "RATE_LIMITS": "off",
        "RUN_WORKERS": "off",
        "READ_POOL_SIZE": str(pool_size),
        "PUBLIC_BASE_URL": api,
        "PYTHONPATH": str(APP_ROOT),
    }
    python = sys.executable
    processes = [
        start(
            [
                *(python, "-m", "api.cli", "serve", "--port", str(api_port)),
                *("--workers", str(workers)),
            ],
            env,
            logs / "api.log",
        )
    ]
    try:
        wait_until_up(f"{api}/v1/health", processes[0])
        processes.append(
            start([python, "-m", "api.cli", "projections", "run"], env, logs / "proj.log")
        )
        bare_env = {
            **env,
            "PYTHONPATH": str(ROOT),
            "BARE_DATABASE_URL": base.url,
            "BARE_SCHEMA": schema,
            "BARE_POOL_SIZE": str(pool_size),
        }
        processes.append(
            start(
                [
                    python,
                    "-m",
                    "uvicorn",
                    "bench.bare_app:app",
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(workers),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--log-level",
                    "warning",
                ],
                bare_env,
                logs / "bare.log",
            )
        )
        wait_until_up(f"{bare}/noop", processes[-1])
        t0 = time.perf_counter()
        made = HttpSetup(api).run(USERS, challenges)
        print(f"set up {USERS} users, {challenges} challenges in {time.perf_counter() - t0:.0f}s")
        data = logs / "data.lua"
        data.write_text(lua_list("tokens", made.tokens) + lua_list("codes", made.codes))
        caught_up(api)
        owner_stake = challenges  # the owner staked 1 token on each challenge it published
        runs: dict[str, list[dict[str, Any]]] = {}
        offset = 0
        for _ in range(rounds):
            for name, url, script in (
                ("health", f"{api}/v1/health", "get.lua"),
                ("bare noop", f"{bare}/noop", "get.lua"),
                ("wallet", f"{api}/v1/wallet", "get.lua"),
                ("bare select", f"{bare}/select", "get.lua"),
            ):
                spy = profiled(name, processes[0].pid, seconds) if "bare" not in name else None
                runs.setdefault(name, []).append(
                    wrk(url, script, seconds, {"BENCH_DATA": str(data)})
                )
                if spy:
                    spy.wait(60)
            before, _ = joins_so_far(db, owner_stake)
            started = time.perf_counter()
            spy = profiled("joins", processes[0].pid, seconds)
            run = wrk(
                f"{api}/v1/challenges/join",
                "join.lua",
                seconds,
                {"BENCH_DATA": str(data), "BENCH_OFFSET": str(offset)},
            )
            if spy:
                spy.wait(60)
            caught_up(api)
            run["seconds"] = time.perf_counter() - started
            after, staked = joins_so_far(db, owner_stake)
            run["counted"] = after - before
            run["staked_equals_joins"] = staked == after
            offset += run["requests"]
            runs.setdefault("joins", []).append(run)
            runs.setdefault("bare insert", []).append(
                wrk(f"{bare}/insert", "post.lua", seconds, {})
            )
        found = {name: summarise(name, r) for name, r in runs.items()}
        # uvicorn's supervisor kills a worker that does not answer its health ping in 5 s
        # and starts another: under load that shows here, and in the profiles as imports.
        restarts = (logs / "api.log").read_text(errors="replace").count("died")
        for name in ("joins", "wallet", "health"):
            found[name].extra["worker_restarts"] = restarts
        if where := os.environ.get("BENCH_PROFILE"):
            shutil.copy(logs / "api.log", Path(where) / "api.log")
        return found
    except BaseException:
        print(f"the servers' logs are kept in {logs}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        for process in reversed(processes):
            stop(process)
        drop_schema(base.url, schema)


def summarise(name: str, runs: list[dict[str, Any]]) -> Figures:
    counted = [r.get("counted", r["requests"] - r["non2xx"]) for r in runs]
    seconds = sum(r["seconds"] for r in runs)
    rate = sum(counted) / seconds if seconds else 0.0

    def middle(key: str) -> float:
        values = sorted(r[key] for r in runs)
        return float(values[len(values) // 2])

    extra: dict[str, Any] = {"non2xx": sum(r["non2xx"] for r in runs)}
    if name == "joins":
        extra["requests"] = sum(r["requests"] for r in runs)
        extra["counted"] = sum(counted)
        extra["staked_equals_joins"] = all(r["staked_equals_joins"] for r in runs)
    return Figures(rate, middle("p50_ms"), middle("p99_ms"), middle("p999_ms"), extra)


if __name__ == "__main__":
    found = measure(
        workers=int(os.environ.get("BENCH_WORKERS", "2")),
        rounds=int(os.environ.get("BENCH_ROUNDS", "1")),
        seconds=int(os.environ.get("BENCH_SECONDS", "5")),
    )
    for name, f in found.items():
        print(
            f"{name:<12} {f.rate:>8.0f}/s  p50 {f.p50:6.1f}  p99 {f.p99:6.1f}  "
            f"p99.9 {f.p999:6.1f} ms  {f.extra}"
        )
