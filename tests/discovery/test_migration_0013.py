"""Migration 0013 (the search indexes): rows already there are indexed, the indexes go away
and come back with the revision, the triggers exist at head (a later revision that rebuilt a
table in SQLite's batch mode would have dropped them), and autogenerate leaves them alone."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import shanju.models
from shanju.core.db import Database
from shanju.core.migrations import alembic_config, include_name

TRIGGERS = {f"{t}_fts_{s}" for t in ("projects", "organizations") for s in ("ai", "ad", "au")}
PG_INDEXES = {"ix_projects_search_trgm", "ix_organizations_search_trgm"}


def _search_objects(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return set(conn.scalars(text(
                "SELECT name FROM sqlite_master WHERE (type = 'trigger' AND name LIKE '%fts%') OR "
                "(type = 'table' AND name IN ('projects_fts', 'organizations_fts'))")))
        return set(conn.scalars(text(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%search_trgm'")))


def _expected(database: Database) -> set[str]:
    if database.engine.dialect.name == "sqlite":
        return TRIGGERS | {"projects_fts", "organizations_fts"}
    return PG_INDEXES


def _found(database: Database, word: str) -> list[str]:
    with database.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            sql = ("SELECT name FROM organizations WHERE id IN (SELECT rowid FROM "
                   "organizations_fts WHERE organizations_fts MATCH :w)")
            return list(conn.scalars(text(sql), {"w": f'"{word}"'}))
        sql = ("SELECT name FROM organizations WHERE (name || ' ' || coalesce(short_name, '') "
               "|| ' ' || description) ILIKE :w")
        return list(conn.scalars(text(sql), {"w": f"%{word}%"}))


def test_upgrade_indexes_existing_rows_and_downgrade_removes_the_indexes(
    empty_db: Database,
) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "0013")
    command.downgrade(config, "-1")
    assert _search_objects(empty_db) == set()
    with empty_db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO organizations (name, uscc, org_type, registering_authority, province, "
            "contact_phone, description, status, created_at) VALUES ('云南乡村儿童基金会', "
            "'53530000MJ0000010X', 'foundation', '云南省民政厅', '云南', '0871-1234567', "
            "'关注留守儿童', 'approved', CURRENT_TIMESTAMP)"))
    command.upgrade(config, "0013")
    assert _search_objects(empty_db) == _expected(empty_db)
    assert _found(empty_db, "乡村儿童") == ["云南乡村儿童基金会"]
    assert _found(empty_db, "留守儿童") == ["云南乡村儿童基金会"]
    command.upgrade(config, "head")
    assert _search_objects(empty_db) == _expected(empty_db)


def test_autogenerate_leaves_the_search_indexes_alone(empty_db: Database) -> None:
    command.upgrade(alembic_config(empty_db), "head")
    with empty_db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_name": include_name,
            "render_as_batch": conn.dialect.name == "sqlite"})
        diffs = compare_metadata(context, shanju.models.Base.metadata)
    assert not [d for d in diffs if "fts" in repr(d) or "search_trgm" in repr(d)], diffs
    assert _search_objects(empty_db) == _expected(empty_db)
    if empty_db.engine.dialect.name == "sqlite":
        assert {"projects_fts", "organizations_fts"} <= set(
            inspect(empty_db.engine).get_table_names())
