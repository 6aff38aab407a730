"""The reliability suite's knobs and its recorder (see ``recorder.py``).

Every test here runs in ``make test`` at a quick scale; ``make test-reliability`` runs the same
tests longer through these environment variables and writes ``docs/reliability.md``:

- ``RELIABILITY_SECONDS``: how long the load and crash runs last (quick: 4);
- ``RELIABILITY_SEEDS``: how many seeds the simulator plays (quick: 8);
- ``RELIABILITY_EXAMPLES``: hypothesis examples per hostile-input test (quick: 20);
- ``RELIABILITY_CLIENTS``: concurrent HTTP clients of the load run (64);
- ``RELIABILITY_KILLS``: SIGKILLs per process kind in the crash run (quick: 1);
- ``RELIABILITY_SEED``: replay this one simulator seed (a failing seed is printed);
- ``RELIABILITY_REPORT``: where to write the report when the session ends (unset: nowhere).

A module names its area in ``AREA`` (or several in ``AREAS``); each test's outcome is
counted under each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.recorder import Recorder

KNOBS = {
    "RELIABILITY_SECONDS": "4",
    "RELIABILITY_SEEDS": "8",
    "RELIABILITY_EXAMPLES": "20",
    "RELIABILITY_CLIENTS": "64",
    "RELIABILITY_KILLS": "1",
}

RECORDER = Recorder()


def knob(name: str) -> int:
    """The knob's value from the environment, else its quick default."""
    return int(os.environ.get(name, KNOBS[name]))


@pytest.fixture(scope="session")
def reliability() -> Recorder:
    return RECORDER


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    module = getattr(item, "module", None)
    areas = getattr(module, "AREAS", None) or [getattr(module, "AREA", None)]
    if report.when == "call" or report.failed:
        for area in filter(None, areas):
            RECORDER.outcome(area, item.name, "passed" if report.passed else "failed")
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if target and RECORDER.areas:
        knobs = {name: str(knob(name)) for name in KNOBS}
        RECORDER.write(Path(target), knobs)


# The API fixtures of tests/api (one migrated schema and app per module, accounts, admins),
# shared so that attacks and hostile inputs go through the same full stack.
from tests.api.conftest import (  # noqa: E402
    admin_token,
    api_client,
    api_db,
    api_services,
    lenient_client,
    rate_limits_on,
    register_and_login,
    register_user,
)

__all__ = [
    "admin_token",
    "api_client",
    "api_db",
    "api_services",
    "knob",
    "lenient_client",
    "rate_limits_on",
    "register_and_login",
    "register_user",
    "reliability",
]
