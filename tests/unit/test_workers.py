"""Where the workers run and how their loop behaves (rules §9), without a database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest

from adapters.metrics import PROMETHEUS, REGISTRY
from adapters.settings import ConfigError, ServiceSettings
from application.receipts import Swept
from application.settlement_worker import SettlementWorker
from application.workers import run_every


@pytest.mark.parametrize("run_workers", [True, False])
@pytest.mark.parametrize("requested", [None, True, False])
def test_serve_in_production_never_runs_the_workers_in_process(
    run_workers: bool, requested: bool | None
) -> None:
    config = ServiceSettings.model_construct(env="production", run_workers=run_workers)

    assert config.serve_runs_workers(requested) is False


def test_serve_in_development_runs_the_workers_unless_told_not_to() -> None:
    def development(run_workers: bool = True) -> ServiceSettings:
        return ServiceSettings.model_construct(env="development", run_workers=run_workers)

    assert development().serve_runs_workers() is True
    assert development(run_workers=False).serve_runs_workers() is False
    assert development(run_workers=False).serve_runs_workers(requested=True) is True
    assert development(run_workers=True).serve_runs_workers(requested=False) is False


def test_the_worker_interval_is_a_setting_of_positive_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("WORKER_INTERVAL_SECONDS", "2.5")
    assert ServiceSettings.from_env().worker_interval_seconds == 2.5
    monkeypatch.delenv("WORKER_INTERVAL_SECONDS")
    assert ServiceSettings.from_env().worker_interval_seconds == 1.0
    for wrong in ("0", "-1", "soon", "3601"):
        monkeypatch.setenv("WORKER_INTERVAL_SECONDS", wrong)
        with pytest.raises(ConfigError, match="WORKER_INTERVAL_SECONDS"):
            ServiceSettings.from_env()


def _pass_failures(worker: str) -> float:
    sample = REGISTRY.get_sample_value("peerpush_worker_pass_failures_total", {"worker": worker})
    return sample or 0.0


def test_a_failed_pass_is_counted_and_the_loop_goes_on_until_stopped() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        stop.set()

    before = _pass_failures("flaky")
    run_every("flaky", task, 0.0, stop, PROMETHEUS)

    assert len(calls) == 2
    assert _pass_failures("flaky") == before + 1


class _Locks:
    def __init__(self, free: bool) -> None:
        self.free = free
        self.names: list[str] = []

    @contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        self.names.append(name)
        yield self.free

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        yield


class _Ledger:
    def __init__(self) -> None:
        self.passes = 0

    def settle_due(self) -> Swept:
        self.passes += 1
        return Swept(1, (), ())


def test_a_settlement_pass_is_skipped_while_another_copy_holds_the_lock() -> None:
    ledger = _Ledger()
    busy = SettlementWorker(cast(Any, ledger), _Locks(free=False))
    free = SettlementWorker(cast(Any, ledger), _Locks(free=True))

    assert busy.run_pass() is None
    assert ledger.passes == 0
    assert free.run_pass() == Swept(1, (), ())
    assert ledger.passes == 1
