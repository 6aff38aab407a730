"""The event store: the tables `eventsourcing` 9.5 would create for the `ledger` application.

Migrations own them so the application runs with CREATE_TABLE off; a test compares this
schema with what the library itself creates.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STORAGE = (
    "WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, "
    "autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.01)"
)


def upgrade() -> None:
    schema = op.get_bind().execute(text("SELECT current_schema()")).scalar_one()
    op.execute(
        "CREATE TABLE ledger_events (originator_id uuid NOT NULL, "
        "originator_version bigint NOT NULL, topic text, state bytea, "
        "notification_id bigserial, PRIMARY KEY (originator_id, originator_version)) " + STORAGE
    )
    op.execute(
        "CREATE UNIQUE INDEX ledger_events_notification_id_idx "
        "ON ledger_events (notification_id ASC)"
    )
    op.execute(
        "CREATE TYPE stored_event_uuid AS "
        "(originator_id uuid, originator_version bigint, topic text, state bytea)"
    )
    op.execute(
        f'CREATE FUNCTION "{schema}".es_insert_events_uuid(events "{schema}".stored_event_uuid[]) '
        "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$BEGIN "
        "SET LOCAL lock_timeout = '5s'; NOTIFY ledger_events; RETURN QUERY "
        f'INSERT INTO "{schema}".ledger_events AS t '
        "(originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
        "RETURNING notification_id; END;$BODY$"
    )
    op.execute(
        "CREATE TABLE ledger_snapshots (originator_id uuid NOT NULL, "
        "originator_version bigint NOT NULL, topic text, state bytea, "
        "PRIMARY KEY (originator_id, originator_version)) " + STORAGE
    )


def downgrade() -> None:
    raise RuntimeError("the event store is never dropped by a migration")
