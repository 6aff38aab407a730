"""The HTTP API under wrk, in both topologies it runs in, next to bare FastAPI endpoints served
the same way, all in one run.

Starts, on PostgreSQL (``DATABASE_URL`` or the embedded server), each in a fresh schema
dropped at the end:

- **development**, what ``make run`` runs: ``ENV=development peerpush serve --workers W``, the
  workers and the projection worker as threads of the server's processes (rate limits off);
  its clock is the shared test clock, read from PostgreSQL on every ``now()``;
- **production** (SPEC §9, docs/operations.md): ``ENV=production peerpush serve --workers W``,
  ``peerpush projections run`` and ``peerpush worker all`` as processes of their own, every
  setting production requires set to a throwaway local value (a random ``JWT_SECRET``; Stripe
  keys and ``STRIPE_API_BASE`` pointing at the repository's local Stripe server,
  ``tests/fakes/stripe_server.py``, which the worker's reconciliation calls; proofs in a
  temporary directory), JSON logs and an internal metrics listener as deployed. No proxy: wrk
  talks to the API directly in both;
- ``bench/bare_app.py`` with the same server, ``W`` processes and the same pool size.

`bench.generator.HttpSetup` makes, in each topology, 32 users with deposits and ``challenges``
published challenges with a 1-token stake through the API (production has no simulated
checkout: its deposits are an admin's credits, from an account ``peerpush create-admin``
promoted). One topology after the other (both at once took more connections than a shared
server had), ``rounds`` times, each for ``seconds`` with 8 connections, each wrk run followed
by its bare floor's: ``GET /v1/health`` and the bare ``/noop``; ``GET /v1/wallet`` and the
bare ``SELECT``; ``POST /v1/challenges/join`` (a distinct (user, challenge) pair per request)
and the bare autocommit ``INSERT``. The bare figures, pooled over both topologies, are the
one set of baselines each is compared with.

Joins are counted from the read models, not from wrk: only first joins (a new participant)
count, the joiners' staked tokens must equal them, and a round's time runs until the read
models have caught up with the stream's head.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.database import database_settings  # noqa: E402
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema  # noqa: E402
from bench import bare_app  # noqa: E402
from bench.cpu_split import cpu_split, per_request, postmaster_of, process_tree  # noqa: E402
from bench.generator import HttpSetup  # noqa: E402

LUA = ROOT / "bench" / "wrk"
# The checkout whose API is served (another one to measure it with this harness, e.g. main's).
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT", str(ROOT))).resolve()
CONNECTIONS = 8
USERS, CHALLENGES = 32, 400
SETUP_THREADS = 4
TOPOLOGIES = ("development", "production")


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
    """With ``BENCH_PROFILE=DIR``: py-spy samples process ``pid`` and its children (the API's
    server and its workers) while wrk runs, into ``DIR/NAME.txt`` (collapsed stacks;
    ``bench/profile_summary.py`` reads them); ``BENCH_PROFILE_GIL=1``: the GIL's holder only."""
    where = os.environ.get("BENCH_PROFILE")
    if not where:
        return None
    Path(where).mkdir(parents=True, exist_ok=True)
    out = Path(where) / f"{name.replace(' ', '_')}.txt"
    return subprocess.Popen(
        [
            *(shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy", "record"),
            *("--pid", str(pid), "--subprocesses", "--nonblocking"),
            # BENCH_PROFILE_GIL=1: only the thread holding the GIL (where the CPU goes).
            *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []),
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


def caught_up(db: DatabaseSettings, seconds: float = 120) -> None:
    """Wait until the read models have applied the stream's head (read from the database, as
    ``/v1/ready`` does: production's ``/ready`` does not show the head)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT (SELECT coalesce(max(notification_id), 0) FROM ledger_events) "
                "- (SELECT coalesce(min(position), 0) FROM projection_positions)"
            ).fetchone()
            if row is not None and int(row[0]) <= 0:
                return
            time.sleep(0.05)
    raise SystemExit(f"{db.schema}: the read models did not catch up")


@dataclass
class Topology:
    """One way of running the API, on a schema of its own, and what its set-up made."""

    name: str  # development | production
    url: str
    db: DatabaseSettings
    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    data: Path | None = None  # the lua file of tokens and invite codes
    owner_stake: int = 0
    offset: int = 0  # the next (user, challenge) pair to join
    pairs: int = 0
    restarted: int = 0  # uvicorn's restarts of its server processes, once measured

    def launch(self, workers: int) -> None:
        """The API, then (production) the projection worker and the workers, each a process
        of its own as docs/operations.md runs them."""
        python, port = sys.executable, self.url.rsplit(":", 1)[1]
        serve = [python, "-m", "api.cli", "serve", "--port", port, "--workers", str(workers)]
        self.processes.append(start(serve, self.env, self.logs / "api.log"))
        wait_until_up(f"{self.url}/v1/health", self.processes[0])
        if self.name == "production":
            for args, log in (
                (["projections", "run"], "projections.log"),
                (["worker", "all"], "worker.log"),
            ):
                worker_env = {**self.env, "METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
                self.processes.append(
                    start([python, "-m", "api.cli", *args], worker_env, self.logs / log)
                )

    def promote(self, email: str) -> None:
        """``peerpush create-admin EMAIL``, as an operator makes an admin."""
        subprocess.run(
            [sys.executable, "-m", "api.cli", "create-admin", email],
            cwd=APP_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def set_up(self, users: int, challenges: int) -> None:
        t0 = time.perf_counter()
        promote = self.promote if self.name == "production" else None
        made = HttpSetup(self.url).run(users, challenges, promote=promote, threads=SETUP_THREADS)
        self.data = self.logs / "data.lua"
        self.data.write_text(lua_list("tokens", made.tokens) + lua_list("codes", made.codes))
        self.owner_stake = challenges  # each challenge's owner staked 1 token on it
        self.pairs = users * challenges
        caught_up(self.db)
        print(
            f"{self.name}: set up {users} users, {challenges} challenges "
            f"in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )

    def restarts(self) -> int:
        """uvicorn's supervisor kills a server process that does not answer its health ping in
        time and starts another: under load that shows here, and in profiles as imports."""
        return (self.logs / "api.log").read_text(errors="replace").count("died")


def local_stripe() -> tuple[Any, str]:
    """The tests' local Stripe server (``tests/fakes/stripe_server.py``), started, and the API
    key it accepts: production runs the real Stripe client, and the worker's reconciliation
    lists charges at once. Imported by name: it is test code, outside the packages
    type-checked with the bench."""
    fake = importlib.import_module("tests.fakes.stripe_server")
    return fake.FakeStripe().start(), str(fake.API_KEY)


def topology_env(
    name: str,
    base_url: str,
    schema: str,
    url: str,
    pool_size: int,
    logs: Path,
    stripe: tuple[str, str],
) -> dict[str, str]:
    """The environment of one topology's processes; ``stripe``: the local Stripe's (URL, key)."""
    env = {
        **os.environ,
        "ENV": name,
        "DATABASE_URL": base_url,
        "DB_SCHEMA": schema,
        "RATE_LIMITS": "off",
        "READ_POOL_SIZE": str(pool_size),
        "PUBLIC_BASE_URL": url,
        "PYTHONPATH": str(APP_ROOT),
        "DATA_DIR": str(logs / "data"),
        "STORAGE_DIR": str(logs / "proofs"),
    }
    for inherited in ("RUN_WORKERS", "JWT_SECRET", "LOG_FORMAT", "METRICS_LISTEN", "STORAGE"):
        env.pop(inherited, None)  # each topology says its own
    if name == "production":
        env.update(
            {
                # throwaway values for what production refuses to start without
                "JWT_SECRET": secrets.token_urlsafe(48),
                "STRIPE_API_KEY": stripe[1],
                "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + secrets.token_hex(8),
                "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_bench_" + secrets.token_hex(8),
                "STRIPE_API_BASE": stripe[0],
                # proofs: a local directory instead of S3 (the bench uploads none)
                "STORAGE": "local",
                "METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            }
        )
    return env


def measure(
    workers: int = 2,
    rounds: int = 1,
    seconds: int = 5,
    pool_size: int = 8,
    challenges: int = CHALLENGES,
    topologies: tuple[str, ...] = TOPOLOGIES,
) -> dict[str, dict[str, Figures]]:
    """Each topology's figures (``health``, ``wallet``, ``joins``) and the bare app's
    (``noop``, ``select``, ``insert``, under ``"bare"``)."""
    unknown = set(topologies) - set(TOPOLOGIES)
    if unknown or not topologies:
        raise SystemExit(f"BENCH_TOPOLOGY: development, production or both, not {topologies}")
    base = database_settings()
    logs = Path(tempfile.mkdtemp(prefix="peerpush-bench-"))
    bare_schema = f"bench_{uuid.uuid4().hex[:8]}"
    bare_app.setup(base.url, bare_schema)
    schemas = [bare_schema]
    stripe, stripe_key = local_stripe() if "production" in topologies else (None, "")
    running: list[Topology] = []
    bare_process: subprocess.Popen[bytes] | None = None
    kept = False
    try:
        for name in topologies:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            ensure_schema(base.url, schema)
            schemas.append(schema)
            where = logs / name
            where.mkdir()
            url = f"http://127.0.0.1:{free_port()}"
            env = topology_env(
                name,
                base.url,
                schema,
                url,
                pool_size,
                where,
                (stripe.url if stripe else "", stripe_key),
            )
            db = DatabaseSettings.from_url(base.url, schema=schema)
            running.append(Topology(name, url, db, env, where))
        bare_port = free_port()
        bare = f"http://127.0.0.1:{bare_port}"
        bare_process = start_bare(base.url, bare_schema, bare_port, workers, pool_size, logs)
        wait_until_up(f"{bare}/noop", bare_process)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        (logs / "none.lua").write_text(lua_list("tokens", []) + lua_list("codes", []))
        no_data = {"BENCH_DATA": str(logs / "none.lua")}

        def keep(who: str, what: str, run: dict[str, Any]) -> None:
            runs.setdefault(who, {}).setdefault(what, []).append(run)

        postmaster = postmaster_of(base.url)

        def split(*pids: int) -> Any:
            """The CPU split of one run (`bench.cpu_split`): these process trees, PostgreSQL."""
            return cpu_split(
                {
                    "api": lambda: [p for pid in pids for p in process_tree(pid)],
                    "postgres": lambda: process_tree(postmaster),
                }
            )

        def costed(run: dict[str, Any], spent: dict[str, float]) -> dict[str, Any]:
            counted = run.get("counted", run["requests"] - run["non2xx"])
            return {**run, "cpu_ms": per_request(spent, counted)}

        # One topology at a time (two at once took more of a shared server's connections
        # than it had), each wrk run of it followed by its bare floor's: the bare figures,
        # pooled over both, are the one set of baselines both are compared with.
        for one in running:
            one.launch(workers)
            one.set_up(USERS, challenges)
            ours = [p.pid for p in one.processes]
            for _ in range(rounds):
                for what, path, script, floor, bare_path, bare_script in (
                    ("health", "/v1/health", "get.lua", "noop", "/noop", "get.lua"),
                    ("wallet", "/v1/wallet", "get.lua", "select", "/select", "get.lua"),
                    ("joins", "/v1/challenges/join", "join.lua", "insert", "/insert", "post.lua"),
                ):
                    with split(*ours) as spent:
                        if what == "joins":
                            run = joins(one, seconds)
                        else:
                            data = {"BENCH_DATA": str(one.data)}
                            spy = profiled(f"{one.name} {what}", one.processes[0].pid, seconds)
                            run = wrk(f"{one.url}{path}", script, seconds, data)
                            if spy:
                                spy.wait(60)
                    keep(one.name, what, costed(run, spent))
                    with split(bare_process.pid) as spent:
                        run = wrk(f"{bare}{bare_path}", bare_script, seconds, no_data)
                    keep("bare", floor, costed(run, spent))
            one.restarted = one.restarts()
            for process in reversed(one.processes):
                stop(process)
        found = {
            who: {what: summarise(what, r) for what, r in by_what.items()}
            for who, by_what in runs.items()
        }
        for topology in running:
            for figures in found[topology.name].values():
                figures.extra["worker_restarts"] = topology.restarted
            found[topology.name]["joins"].extra["pairs_left"] = topology.pairs - topology.offset
        if profiles := os.environ.get("BENCH_PROFILE"):
            for topology in running:
                shutil.copy(topology.logs / "api.log", Path(profiles) / f"{topology.name}-api.log")
        return found
    except BaseException:
        kept = True
        print(f"the servers' logs are kept in {logs}", file=sys.stderr)
        raise
    finally:
        for process in [*([bare_process] if bare_process else [])] + [
            p for t in reversed(running) for p in reversed(t.processes)
        ]:
            stop(process)
        if stripe is not None:
            stripe.stop()
        for schema in schemas:
            drop_schema(base.url, schema)
        if not kept:
            shutil.rmtree(logs, ignore_errors=True)


def joins(topology: Topology, seconds: int) -> dict[str, Any]:
    """One wrk run of first joins, counted from the read models once they have caught up."""
    before, _ = joins_so_far(topology.db, topology.owner_stake)
    started = time.perf_counter()
    spy = profiled(f"{topology.name} joins", topology.processes[0].pid, seconds)
    run = wrk(
        f"{topology.url}/v1/challenges/join",
        "join.lua",
        seconds,
        {"BENCH_DATA": str(topology.data), "BENCH_OFFSET": str(topology.offset)},
    )
    if spy:
        spy.wait(60)
    caught_up(topology.db)
    run["seconds"] = time.perf_counter() - started
    after, staked = joins_so_far(topology.db, topology.owner_stake)
    run["counted"] = after - before
    run["staked_equals_joins"] = staked == after
    topology.offset += run["requests"]
    return run


def start_bare(
    url: str, schema: str, port: int, workers: int, pool_size: int, logs: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BARE_DATABASE_URL": url,
        "BARE_SCHEMA": schema,
        "BARE_POOL_SIZE": str(pool_size),
    }
    args = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port)]
    args += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
    args += ["--log-level", "warning"]
    return start(args, env, logs / "bare.log")


def summarise(name: str, runs: list[dict[str, Any]]) -> Figures:
    counted = [r.get("counted", r["requests"] - r["non2xx"]) for r in runs]
    seconds = sum(r["seconds"] for r in runs)
    rate = sum(counted) / seconds if seconds else 0.0

    def middle(key: str) -> float:
        values = sorted(r[key] for r in runs)
        return float(values[len(values) // 2])

    extra: dict[str, Any] = {"non2xx": sum(r["non2xx"] for r in runs)}
    if all("cpu_ms" in r for r in runs):  # each group's middle run
        extra["cpu_ms"] = {
            group: sorted(r["cpu_ms"][group] for r in runs)[len(runs) // 2]
            for group in runs[0]["cpu_ms"]
        }
    if name == "joins":
        extra["requests"] = sum(r["requests"] for r in runs)
        extra["counted"] = sum(counted)
        extra["staked_equals_joins"] = all(r["staked_equals_joins"] for r in runs)
    return Figures(rate, middle("p50_ms"), middle("p99_ms"), middle("p999_ms"), extra)


def topologies_from_env() -> tuple[str, ...]:
    """``BENCH_TOPOLOGY``: ``development``, ``production`` or ``both`` (the default)."""
    chosen = os.environ.get("BENCH_TOPOLOGY", "both").strip() or "both"
    return TOPOLOGIES if chosen == "both" else (chosen,)


if __name__ == "__main__":
    found = measure(
        workers=int(os.environ.get("BENCH_WORKERS", "2")),
        rounds=int(os.environ.get("BENCH_ROUNDS", "1")),
        seconds=int(os.environ.get("BENCH_SECONDS", "5")),
        topologies=topologies_from_env(),
    )
    for who, figures in found.items():
        for what, f in figures.items():
            print(
                f"{who:<12} {what:<8} {f.rate:>8.0f}/s  p50 {f.p50:6.1f}  p99 {f.p99:6.1f}  "
                f"p99.9 {f.p999:6.1f} ms  {f.extra}"
            )
