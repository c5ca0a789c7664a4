"""Migration 0008 creates the ``gifts`` view and takes it away again; Alembic's autogenerate
(scripts/regen_migration.py) never mistakes the view for a table to create or drop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import shanju.models
from shanju.core.db import Database
from shanju.core.migrations import alembic_config
from tests.conftest import PG_ADMIN_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database (no schema), once SQLite, once PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        yield database
        database.dispose()
        return
    request.getfixturevalue("pg_url")  # skips (or fails in CI) without a server
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"shanju_mig7_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield database
    finally:
        database.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
