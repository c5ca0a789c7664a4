"""Migration 0018 (escrow leases, their slices, a batch's lease and the log's queue): the
tables match the models, and the revision goes down and up — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config, include_name

TABLES = {"campaign_leases", "campaign_lease_slices", "transparency_queue"}


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diffs = compare_metadata(context, Base.metadata)
    mine = (*TABLES, "campaign_batches")
    return [d for d in diffs if any(t in repr(d) for t in mine)]


def test_escrow_tables_go_down_and_up(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "head")
    assert _diffs(empty_db) == []
    command.downgrade(config, "0017")
    assert not TABLES & set(inspect(empty_db.engine).get_table_names())
    assert "lock_version" in {c["name"] for c in  # 0017's column stays
                              inspect(empty_db.engine).get_columns("campaigns")}
    assert "lease_id" not in {c["name"] for c in
                              inspect(empty_db.engine).get_columns("campaign_batches")}
    command.upgrade(config, "head")
    assert TABLES <= set(inspect(empty_db.engine).get_table_names())
    assert _diffs(empty_db) == []
