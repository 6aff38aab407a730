"""A migrated schema with a ledger and a projector, per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.persistence import DatabaseSettings
from tests.projections.support import Projected, open_projected


@pytest.fixture
def projected(pg_settings: DatabaseSettings) -> Iterator[Projected]:
    p = open_projected(pg_settings)
    try:
        yield p
    finally:
        p.close()
