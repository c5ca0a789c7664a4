"""Migration 0016 (a project's goal policy and stretch goal): the columns match the models,
projects that existed before keep taking gifts as they did (``continue``), the database itself
keeps a stretch goal above the goal, and the revision goes down and up — on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config, include_name
from tests.factories import make_org, make_project


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diffs = compare_metadata(context, Base.metadata)
    return [d for d in diffs if "projects" in repr(d)]


def _columns(database: Database) -> set[str]:
    return {c["name"] for c in inspect(database.engine).get_columns("projects")}


def test_the_goal_columns_go_down_and_up_and_old_projects_continue(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "head")
    assert _diffs(empty_db) == []
    with empty_db.transaction() as s:
        pid = make_project(s, org=make_org(s), goal_fen=10_000).id
    command.downgrade(config, "0011")
    assert not {"goal_policy", "stretch_goal_fen"} & _columns(empty_db)
    command.upgrade(config, "head")
    assert _diffs(empty_db) == []
    with empty_db.engine.connect() as conn:
        row = conn.execute(text("SELECT goal_policy, stretch_goal_fen FROM projects "
                                "WHERE id = :id"), {"id": pid}).one()
    assert tuple(row) == ("continue", None)
    for stretch in (10_000, 5_000):
        with pytest.raises(IntegrityError), empty_db.engine.begin() as conn:
            conn.execute(text("UPDATE projects SET goal_policy = 'stretch', "
                              "stretch_goal_fen = :s WHERE id = :id"), {"s": stretch, "id": pid})
    with empty_db.engine.begin() as conn:
        conn.execute(text("UPDATE projects SET goal_policy = 'stretch', stretch_goal_fen = 10001 "
                          "WHERE id = :id"), {"id": pid})
