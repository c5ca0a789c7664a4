"""Creating and upgrading the schema with Alembic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from shanju.core.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Search indexes no model describes (revision 0013, ADR 0032): SQLite's FTS5 tables (and their
# shadow tables) and PostgreSQL's trigram expression indexes. Autogenerate must not propose to
# drop them.
_NOT_MODELS = {"table": re.compile(r"^[a-z_]+_fts(_[a-z]+)?$"),
               "index": re.compile(r"^ix_[a-z_]+_search_trgm$")}


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Leave the search indexes out of autogenerate's comparison (``migrations/env.py``)."""
    pattern = _NOT_MODELS.get(type_)
    return not (pattern is not None and name is not None and pattern.match(name))


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
