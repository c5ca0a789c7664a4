"""Creating and upgrading the schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shanju.core.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database: Database) -> Config:
    """Return an Alembic configuration for ``database`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database.url)
    config.attributes["engine"] = database.engine
    return config


def create_schema(database: Database) -> None:
    """Bring the database to the newest schema (``shanju migrate``)."""
    command.upgrade(alembic_config(database), "head")
