"""After any sequence of commands, every read model says what the aggregates say.

The ledger's own state machine (tests/application/test_ledger_state_machine.py) drives the
commands, on PostgreSQL with the migrated schema; after every step a projector with small
batches catches up, and the read models are compared with the aggregates: balances and lifetime
totals, lots in creation order, challenge summaries, a balanced journal whose accounts equal
the balances and pools, and transaction histories that add up to what is available.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

import tests.application.test_ledger_state_machine as machines
from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema, resolve_database_url
from adapters.settings import StoreSettings
from application.ledger import Ledger
from application.ports import AdjustableClock
from projections.runner import Projector
from tests.projections.support import assert_read_models_match_domain, dump


class ProjectedLedgerMachine(machines.PostgresLedgerMachine):
    """The ledger's state machine on a migrated schema, with the read models checked."""

    def make_app(self, clock: AdjustableClock) -> Ledger:
        self.database_url = resolve_database_url(StoreSettings.from_env().database_url)
        self.schema = f"pj_{uuid.uuid4().hex[:12]}"
        ensure_schema(self.database_url, self.schema)
        self.db = DatabaseSettings.from_url(self.database_url, schema=self.schema)
        try:
            upgrade(self.db)
            env = self.db.eventsourcing_env(create_table=False, pool_size=2, max_overflow=2)
            app = Ledger(env, clock=clock)
            # Small batches: a step's events often span several, and rows carry across them.
            self.projector = Projector(self.db, app, batch_size=3)
        except BaseException:
            drop_schema(self.database_url, self.schema)
            raise
        return app

    @invariant()
    def read_models_match_the_aggregates(self) -> None:
        self.projector.catch_up()
        assert_read_models_match_domain(self.app, self.db)

    def teardown(self) -> None:
        try:
            self.projector.catch_up()
            assert_read_models_match_domain(self.app, self.db)
            incremental = dump(self.db)
            self.projector.rebuild()
            assert dump(self.db) == incremental, "a rebuild differs from the incremental run"
        finally:
            self.projector.close()
            super().teardown()


ProjectedLedgerMachine.TestCase.settings = settings(
    machines.PostgresLedgerMachine.TestCase.settings, max_examples=6, stateful_step_count=25
)
TestReadModelsMatchTheAggregatesAfterRandomCommands = ProjectedLedgerMachine.TestCase


def test_read_models_match_the_aggregates_after_every_event_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state machine's scripted run through its rarest paths (disputes lost and won,
    write-offs, refunds failing later, capped penalties, payouts), projected and compared."""
    monkeypatch.setattr(machines, "LedgerMachine", ProjectedLedgerMachine)
    machines.test_a_scripted_run_through_the_rarest_paths_records_every_event_type()
