"""The in-process settlement worker counts failed settlements for Prometheus."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from adapters.metrics import PROMETHEUS, REGISTRY
from application.receipts import Swept
from application.workers import settlement_pass


class _Worker:
    def __init__(self, failed: tuple[UUID, ...]) -> None:
        self.failed = failed

    def run_pass(self) -> Swept:
        return Swept(7, (UUID(int=1),), (), self.failed)


def _failures() -> float:
    return REGISTRY.get_sample_value("peerpush_settlement_failures_total") or 0.0


def test_each_failed_settlement_of_a_pass_is_counted() -> None:
    before = _failures()

    settlement_pass(cast(Any, _Worker((UUID(int=2), UUID(int=3)))), PROMETHEUS)
    settlement_pass(cast(Any, _Worker(())), PROMETHEUS)

    assert _failures() == before + 2
