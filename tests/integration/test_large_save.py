"""A save of many megabytes is stored, and the events table is free again after it.

psycopg's pipeline mode (3.3.9) never finishes sending a statement of more than about 10 MB:
the server waits for the rest of it, psycopg waits for an answer. The library inserts every
save through that pipeline, holding the events table's lock, so one large save stopped every
writer for good (``make bench``'s 200,000-event stream hung this way). Our recorder sends
saves as one plain query instead (`adapters.atomic_responses`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from adapters.database import ledger_env
from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
LARGE = 16_000_000  # bytes of one event's state: past what the pipeline could send


@pytest.fixture
def ledger(pg_settings: DatabaseSettings) -> Iterator[Ledger]:
    made = Ledger(
        ledger_env(pg_settings, create_table=True),  # the recorder deployments use
        clock=AdjustableClock(NOW, frozen=True),
        group_commit=False,  # the library's own path for a save: no batch
    )
    try:
        yield made
    finally:
        made.close()


@pytest.mark.timeout(120)  # what hung before fails here instead of stopping the suite
def test_a_save_of_many_megabytes_is_stored_and_the_next_command_goes_through(
    ledger: Ledger,
) -> None:
    state = os.urandom(LARGE)
    blob = StoredEvent(
        originator_id=uuid4(), originator_version=1, topic="tests:LargeBlob", state=state
    )
    positions = ledger.recorder.insert_events([blob])
    assert positions is not None and len(positions) == 1
    [stored] = ledger.recorder.select_events(blob.originator_id)
    assert stored.state == state and stored.topic == "tests:LargeBlob"

    user = uuid4()  # the table's lock was released: an ordinary command commits after it
    done = ledger.credit_deposit(user, f"pi_{uuid4().hex}", 250, Cause.stripe("evt_large"))
    assert done.position > positions[0]
    assert ledger.wallet_of(user).available == 250
