"""The moderation migration (gift_message_decisions, gift_message_reports): its tables match
the models, and it goes down and up cleanly — on SQLite and PostgreSQL. The revision is found
by its file's name, so a re-numbered revision needs no change here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config

TABLES = ("gift_message_decisions", "gift_message_reports")


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diffs if any(t in repr(d) for t in TABLES)]


def test_the_migration_builds_the_models_tables_and_goes_down_and_up(
        empty_db: Database) -> None:
    config = alembic_config(empty_db)
    script = ScriptDirectory.from_config(config)
    revision = next(r for r in script.walk_revisions()
                    if Path(r.path).name.endswith("_gift_message_moderation.py"))
    assert isinstance(revision.down_revision, str)
    command.upgrade(config, revision.revision)
    assert _diffs(empty_db) == []
    uniques = {u["name"] for u in inspect(empty_db.engine).get_unique_constraints(
        "gift_message_reports")}
    assert "uq_gift_message_reports_reporter" in uniques
    command.downgrade(config, revision.down_revision)
    assert not set(TABLES) & set(inspect(empty_db.engine).get_table_names())
    assert "gifts" in inspect(empty_db.engine).get_view_names()  # the view is untouched
    command.upgrade(config, revision.revision)
    assert _diffs(empty_db) == []
