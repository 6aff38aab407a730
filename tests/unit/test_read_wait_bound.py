"""A read-your-writes request beyond the waiter bound is answered 503 at once, never queued."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from adapters.settings import ServiceSettings
from api.bootstrap import Services
from api.deps import wait_for_position
from api.errors import read_model_behind
from projections.position_watch import TooManyWaiters
from projections.queries import ReadModelBehind, ReadModels


@dataclass
class FullProjector:
    """Every waiting slot is taken: a wait is refused before it starts."""

    calls: list[int] = field(default_factory=list)

    def wait_for(self, position: int, timeout: float = 2.0) -> bool:
        self.calls.append(position)
        raise TooManyWaiters("64 requests are already waiting")


class Reads(ReadModels):
    """The read models' wait, over a projection position of 41 (no database)."""

    def __init__(self) -> None:
        pass

    def position(self) -> int:
        return 41


def test_a_wait_beyond_the_bound_is_503_read_model_behind_with_retry_after() -> None:
    projector = FullProjector()
    services: Any = type("S", (), {})()
    services.projector, services.reads = projector, Reads()
    services.config = ServiceSettings.model_construct()
    with pytest.raises(ReadModelBehind) as refused:
        wait_for_position(cast(Services, services), 42)
    answer = read_model_behind(str(refused.value), refused.value.position)
    assert (answer.status_code, json.loads(answer.body)["code"]) == (503, "read_model_behind")
    assert answer.headers["Retry-After"] == "1"
    assert json.loads(answer.body)["position"] == 41
    assert projector.calls == [42]


def test_the_waiter_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("READ_MAX_WAITERS", "7")
    assert ServiceSettings.from_env().read_max_waiters == 7
    monkeypatch.delenv("READ_MAX_WAITERS")
    assert ServiceSettings.from_env().read_max_waiters == 64
