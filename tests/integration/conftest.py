"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from application.ledger import Ledger


@pytest.fixture
def reopen(pg_env: dict[str, str], clock: Any) -> Iterator[Callable[[], Ledger]]:
    """Start ``Ledger`` objects on the test's schema, each as a new process would (an empty
    cache), on the test module's ``clock``; all closed at the end."""
    opened: list[Ledger] = []

    def open_ledger() -> Ledger:
        ledger = Ledger(pg_env, clock=clock)
        opened.append(ledger)
        return ledger

    try:
        yield open_ledger
    finally:
        for ledger in opened:
            ledger.close()
