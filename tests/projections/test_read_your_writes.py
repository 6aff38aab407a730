"""Read your writes: a command's receipt names its position, and waiting for it returns once
the projection worker has applied it — or says no when it never comes within the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest

from domain.aggregate import Cause
from tests.projections.support import Projected


@pytest.fixture
def worker(projected: Projected) -> Iterator[threading.Thread]:
    """The projection worker, following the stream in a thread."""
    stop = threading.Event()
    thread = threading.Thread(target=projected.projector.run_forever, args=(stop, 0.05))
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_waiting_for_a_receipt_returns_once_the_worker_has_applied_it(
    projected: Projected, worker: threading.Thread
) -> None:
    ledger, projector = projected.ledger, projected.projector
    user = uuid4()
    for n in range(5):
        receipt = ledger.credit_deposit(user, f"pi_{n}", 1_000, Cause.stripe(f"evt_{n}"))
        assert projector.wait_for(receipt.position, timeout=2)
        assert projector.wallet_rows([user])[user]["available"] == 1_000 * (n + 1)
        assert worker.is_alive()


def test_waiting_for_a_position_beyond_the_head_gives_up_after_the_timeout(
    projected: Projected, worker: threading.Thread
) -> None:
    ledger, projector = projected.ledger, projected.projector
    receipt = ledger.credit_deposit(uuid4(), "pi_0", 500, Cause.stripe("evt_0"))
    assert projector.wait_for(receipt.position, timeout=2)
    began = time.monotonic()
    assert not projector.wait_for(ledger.head() + 1_000, timeout=0.3)
    # It gave up (and did not wait for the position): the only bound a busy machine keeps.
    assert 0.3 <= time.monotonic() - began < 30
