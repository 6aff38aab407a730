"""A read-your-writes request beyond the waiter bound is answered 503 at once, never queued."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from adapters.settings import ServiceSettings
from api.bootstrap import Services
from api.deps import wait_for_position
from api.errors import ApiError
from projections.position_watch import TooManyWaiters


@dataclass
class FullProjector:
    """Every waiting slot is taken: a wait is refused before it starts."""

    calls: list[int] = field(default_factory=list)

    def wait_for(self, position: int, timeout: float = 2.0) -> bool:
        self.calls.append(position)
        raise TooManyWaiters("64 requests are already waiting")


class Reads:
    def position(self) -> int:
        return 41


def test_a_wait_beyond_the_bound_is_503_read_model_behind_with_retry_after() -> None:
    projector = FullProjector()
    services: Any = type("S", (), {})()
    services.projector, services.reads = projector, Reads()
    services.config = ServiceSettings.model_construct()
    with pytest.raises(ApiError) as refused:
        wait_for_position(cast(Services, services), 42)
    error = refused.value
    assert (error.status, error.code) == (503, "read_model_behind")
    assert error.headers["Retry-After"] == "1"
    assert error.extra["position"] == 41
    assert projector.calls == [42]


def test_the_waiter_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("READ_MAX_WAITERS", "7")
    assert ServiceSettings.from_env().read_max_waiters == 7
    monkeypatch.delenv("READ_MAX_WAITERS")
    assert ServiceSettings.from_env().read_max_waiters == 64
