"""A migrated schema with a ledger and a projector, per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.persistence import DatabaseSettings
from tests.audit.support import Audited, open_audited


@pytest.fixture
def audited(pg_settings: DatabaseSettings) -> Iterator[Audited]:
    a = open_audited(pg_settings)
    try:
        yield a
    finally:
        a.close()
