"""Applying the Alembic migrations in ``migrations/`` to one schema of a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from adapters.persistence import DatabaseSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(db: DatabaseSettings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = db.url
    config.attributes["schema"] = db.schema
    return config


def upgrade(db: DatabaseSettings, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call from several processes at once."""
    command.upgrade(alembic_config(db), revision)


def downgrade(db: DatabaseSettings, revision: str) -> None:
    command.downgrade(alembic_config(db), revision)
