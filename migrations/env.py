"""Alembic environment: migrate one schema of the configured database.

The URL and schema come from the caller (``adapters.migrations.upgrade``) or, for the alembic
command line, from ``DATABASE_URL`` (or the embedded server) and ``-x schema=NAME``. An advisory
lock makes concurrent migrations of one database wait for each other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from adapters.persistence import DatabaseSettings, ensure_schema, resolve_database_url
from adapters.settings import StoreSettings

config = context.config
schema = config.attributes.get("schema") or context.get_x_argument(as_dictionary=True).get(
    "schema", "public"
)
if not (url := config.attributes.get("url")):
    settings = StoreSettings.from_env()  # the alembic command line: this is its entry point
    url = resolve_database_url(settings.database_url, settings.data_dir)
db = DatabaseSettings.from_url(url, schema=schema)
ensure_schema(db.url, schema)

engine = create_engine(db.sqlalchemy_url, poolclass=NullPool)
with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(hashtext('peerpush-migrations'))"))
    connection.execute(text(f'SET search_path TO "{schema}"'))
    connection.commit()
    try:
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(hashtext('peerpush-migrations'))"))
        connection.commit()
