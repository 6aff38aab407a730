"""``make bench``: every benchmark in one run, one table, the same table as JSON under
``bench/results/``.

Each figure stands next to a baseline measured in the same run on the same machine (which
other work may share: the ratios are what to compare across runs). ``BENCH_QUICK=1`` shrinks
every benchmark so the whole run takes about three minutes on a quiet machine;
``BENCH_WORKERS`` sets the server processes of the HTTP bench (default 2), ``BENCH_TOPOLOGY``
which topologies it serves the API in (``development``, ``production`` or ``both``, the
default), ``BENCH_ONLY`` which sections run (``http,inprocess,catchup,audit,history``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from adapters.database import database_settings  # noqa: E402
from bench import http_bench, inprocess  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES: dict[str, dict[str, int]] = {
    # quick: about three minutes on a quiet machine; full: the sizes (1,000,000 events)
    "rounds": {"quick": 1, "full": 3},
    "seconds": {"quick": 5, "full": 10},
    "challenges": {"quick": 50, "full": 400},
    "catchup_events": {"quick": 30_000, "full": 200_000},
    "audit_events": {"quick": 30_000, "full": 1_000_000},
    "history": {"quick": 10_000, "full": 100_000},
    "samples": {"quick": 100, "full": 300},
}


MET = {True: "yes", False: "NO", None: ""}
# How the HTTP rows name the topology they ran on.
LABELS = {"development": "make run (development)", "production": "production"}


def size(name: str) -> int:
    return SIZES[name]["quick" if QUICK else "full"]


def script(path: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run one bench script; the figures it recorded, by name."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        result = Path(out.name)
    try:
        subprocess.run(
            [sys.executable, path],
            cwd=ROOT,
            env={**os.environ, **env, "BENCH_RESULT": str(result), "PYTHONPATH": str(ROOT)},
            check=True,
        )
        rows = [json.loads(line) for line in result.read_text().splitlines() if line]
        return {row["name"]: row for row in rows}
    finally:
        result.unlink(missing_ok=True)


def row(
    figure: str,
    ours: float,
    unit: str,
    base: float | None,
    base_name: str,
    target: str,
    met: bool | None,
) -> dict[str, Any]:
    """One line of the table; ``met`` None: a reference figure with no target of its own."""
    ratio = ours / base if base else None
    return {
        "figure": figure,
        "value": round(ours, 1),
        "unit": unit,
        "baseline": base_name,
        "baseline_value": round(base, 1) if base is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": target,
        "met": met,
    }


def http_rows(workers: int) -> list[dict[str, Any]]:
    found = http_bench.measure(
        workers=workers,
        rounds=size("rounds"),
        seconds=size("seconds"),
        challenges=size("challenges"),
        topologies=http_bench.topologies_from_env(),
    )
    bare = found["bare"]
    rows = []
    for topology in http_bench.TOPOLOGIES:
        if topology not in found:
            continue
        label = LABELS[topology]
        for ours, base, name, ratio, p99 in (
            ("joins", "insert", "POST /v1/challenges/join (first joins)", 0.5, 50.0),
            ("wallet", "select", "GET /v1/wallet", 0.8, 20.0),
            ("health", "noop", "GET /v1/health", 0.8, None),
        ):
            a, b = found[topology][ours], bare[base]
            target = f"≥ {ratio}× bare {base}" + (f", p99 ≤ {p99:.0f} ms" if p99 else "")
            met = a.rate >= ratio * b.rate and (p99 is None or a.p99 <= p99)
            if ours == "joins":
                met = met and bool(a.extra["staked_equals_joins"])
            r = row(f"{name}, {label}", a.rate, "req/s", b.rate, f"bare {base}", target, met)
            r.update(
                topology=topology,
                p50_ms=a.p50,
                p99_ms=a.p99,
                p999_ms=a.p999,
                baseline_p50_ms=b.p50,
                baseline_p99_ms=b.p99,
                baseline_p999_ms=b.p999,
                baseline_cpu_ms=b.extra.get("cpu_ms"),
                **a.extra,
            )
            rows.append(r)
    return rows


def inprocess_rows() -> list[dict[str, Any]]:
    mix = inprocess.measure(size("seconds"))
    name = f"in-process commands, 16 callers ({mix['per_commit']:.1f} per commit)"
    extra = {
        "per_commit": round(mix["per_commit"], 2),
        "round_trips": {k: round(v, 2) for k, v in mix["round_trips"].items()},
        "round_trips_batched": {k: round(v, 2) for k, v in mix["round_trips_batched"].items()},
    }
    rows = [
        row(
            name,
            mix["ledger"],
            "cmd/s",
            mix["plain"],
            "plain eventsourcing app",
            "≥ 3×",
            mix["ledger"] >= 3 * mix["plain"],
        )
        | extra,
        row(
            name,
            mix["ledger"],
            "cmd/s",
            mix["pgbench"],
            "pgbench INSERT, 16 clients",
            "≥ 0.3×",
            mix["ledger"] >= 0.3 * mix["pgbench"],
        ),
        row(
            "the same, GROUP_COMMIT=off",
            mix["group_commit_off"],
            "cmd/s",
            mix["plain"],
            "plain eventsourcing app",
            "(what group commit adds)",
            None,
        ),
        row(
            "the same, TRUSTED_CACHE=off",
            mix["trusted_cache_off"],
            "cmd/s",
            mix["plain"],
            "plain eventsourcing app",
            "(what the trusted cache adds)",
            None,
        ),
    ]
    return rows


def catchup_rows() -> list[dict[str, Any]]:
    catchup = script("bench/projection_catchup.py", {"BENCH_EVENTS": str(size("catchup_events"))})
    c = catchup["catchup"]
    return [
        row(
            f"projection catch-up ({c['events']:,} events)",
            c["rate"],
            "events/s",
            c["raw"],
            "raw read + decode",
            "≥ 10,000/s",
            c["rate"] >= 10_000,
        )
    ]


def audit_rows() -> list[dict[str, Any]]:
    audit = script("bench/audit_verify.py", {"BENCH_EVENTS": str(size("audit_events"))})
    a = audit["audit"]
    return [
        row(
            f"audit verify ({a['events']:,} events)",
            a["rate"],
            "events/s",
            a["raw"],
            "raw read + decode",
            "≥ 16,000/s",
            a["rate"] >= 16_000,
        )
    ]


def history_rows() -> list[dict[str, Any]]:
    history = script(
        "bench/wallet_history.py",
        {"BENCH_HISTORY": str(size("history")), "BENCH_SAMPLES": str(size("samples"))},
    )
    h = history["history"]
    return [
        row(
            f"command on a {h['events']:,}-event wallet ({kind})",
            h[kind],
            "× new",
            1.0,
            "a new wallet",
            "≤ 1.3×",
            h[kind] <= 1.3,
        )
        for kind in ("warm", "cold")
    ]


def main() -> None:
    started = time.perf_counter()
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "http": lambda: http_rows(workers),
        "inprocess": inprocess_rows,
        "catchup": catchup_rows,
        "audit": audit_rows,
        "history": history_rows,
    }
    only = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s] or list(sections)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for name in only:
        try:
            rows += sections[name]()
        except Exception as e:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            failed[name] = f"{type(e).__name__}: {e}"
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": QUICK,
        "seconds": round(time.perf_counter() - started),
        "machine": machine(workers),
        "rows": rows,
        "failed": failed,
    }
    print_table(report)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if QUICK else "") + ".json"
    (results / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to bench/results/{name}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


def machine(workers: int) -> dict[str, Any]:
    with psycopg.connect(database_settings().url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "postgresql": row[0] if row else "?",
        "server_processes": workers,
        "load_average": os.getloadavg(),
    }


def print_table(report: dict[str, Any]) -> None:
    for name, why in report["failed"].items():
        print(f"{name}: FAILED ({why})")
    for topology, label in LABELS.items():
        restarts = max(
            (r.get("worker_restarts", 0) for r in report["rows"] if r.get("topology") == topology),
            default=0,
        )
        if restarts:
            print(f"{label}: the API's server processes were restarted {restarts} times")
    m = report["machine"]
    print(
        f"\n{'quick' if report['quick'] else 'full'} run, {report['seconds']} s; "
        f"{m['cpus']} CPUs, PostgreSQL {m['postgresql']}, {m['server_processes']} server "
        f"processes, load {m['load_average'][0]:.1f}"
    )
    w = max([len("figure"), *(len(r["figure"]) for r in report["rows"])]) + 2
    header = (
        f"{'figure':<{w}}{'value':>10} {'unit':<9}{'baseline':<28}{'value':>10}"
        f"{'ratio':>7}  {'p50/p99/p99.9 ms':<20}{'target':<36}met"
    )
    print(header)
    print("-" * len(header))
    for r in report["rows"]:
        latency = f"{r['p50_ms']:.1f}/{r['p99_ms']:.0f}/{r['p999_ms']:.0f}" if "p50_ms" in r else ""
        base = f"{r['baseline_value']:>10,.1f}" if r["baseline_value"] is not None else " " * 10
        ratio = f"{r['ratio']:>7.2f}" if r["ratio"] is not None else " " * 7
        print(
            f"{r['figure']:<{w}}{r['value']:>10,.1f} {r['unit']:<9}{r['baseline']:<28}{base}"
            f"{ratio}  {latency:<20}{r['target']:<36}{MET[r['met']]}"
        )
        if "round_trips" in r:
            trips = ", ".join(
                f"{kind} {trips:.1f} ({r['round_trips_batched'][kind]:.1f})"
                for kind, trips in r["round_trips"].items()
            )
            print(f"{'':<{w}}round trips, one at a time (batched): {trips}")
        if r.get("staked_equals_joins") is False:
            print(f"{'':<{w}}the joiners' staked tokens do NOT equal the counted joins")
        if r.get("pairs_left", 0) < 0:
            print(f"{'':<{w}}every (user, challenge) pair was joined: re-joins were not counted")
        if "baseline_p50_ms" in r:
            print(
                f"{'':<{w}}{'':>10} {'':<9}{'  its p50/p99/p99.9 ms':<28}{'':>10}{'':>7}  "
                f"{r['baseline_p50_ms']:.1f}/{r['baseline_p99_ms']:.0f}/"
                f"{r['baseline_p999_ms']:.0f}"
            )
        if r.get("cpu_ms") and r.get("baseline_cpu_ms"):
            print(
                f"{'':<{w}}CPU ms per request: {_split(r['cpu_ms'])}; "
                f"its: {_split(r['baseline_cpu_ms'])}"
            )


def _split(cpu_ms: dict[str, float]) -> str:
    """``bench.cpu_split``'s groups, and their sum."""
    parts = [f"{name} {ms:.2f}" for name, ms in cpu_ms.items()]
    return ", ".join(parts) + f" (all {sum(cpu_ms.values()):.2f})"


if __name__ == "__main__":
    main()
