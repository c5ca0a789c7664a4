"""Migration 0010 (reconciliation runs and mismatches): the tables match the models and the
revision goes down and up cleanly — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config

TABLES = ("reconciliation_runs", "reconciliation_mismatches")


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diffs if any(t in repr(d) for t in TABLES)]


def test_the_migration_builds_the_models_tables_and_goes_down_and_up(
    empty_db: Database,
) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "0010")
    assert _diffs(empty_db) == []
    uniques = {u["name"] for u in
               inspect(empty_db.engine).get_unique_constraints("reconciliation_mismatches")}
    assert "uq_reconciliation_mismatches_identity" in uniques
    command.downgrade(config, "0009")
    assert not set(TABLES) & set(inspect(empty_db.engine).get_table_names())
    assert "gifts" in inspect(empty_db.engine).get_view_names()  # untouched
    command.upgrade(config, "0010")
    assert _diffs(empty_db) == []
