"""Migration 0008 creates the ``gifts`` view and takes it away again; Alembic's autogenerate
(scripts/regen_migration.py) never mistakes the view for a table to create or drop."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import shanju.models
from shanju.core.db import Database
from shanju.core.migrations import alembic_config


def _views(database: Database) -> list[str]:
    return list(inspect(database.engine).get_view_names())


def test_upgrade_creates_the_view_and_downgrade_removes_it(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "0008")
    assert _views(empty_db) == ["gifts"]
    command.downgrade(config, "0007")
    assert _views(empty_db) == []
    assert {"donations", "payment_intents", "campaign_gifts"} <= set(
        inspect(empty_db.engine).get_table_names())
    command.upgrade(config, "0008")
    assert _views(empty_db) == ["gifts"]


def test_autogenerate_does_not_see_the_view(empty_db: Database) -> None:
    command.upgrade(alembic_config(empty_db), "head")
    with empty_db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"})
        diffs = compare_metadata(context, shanju.models.Base.metadata)
    tables = [(d[0], d[1].name) for d in diffs
              if isinstance(d, tuple) and d[0] in ("add_table", "remove_table")]
    assert ("add_table", "gifts") not in tables and ("remove_table", "gifts") not in tables
    assert _views(empty_db) == ["gifts"]
