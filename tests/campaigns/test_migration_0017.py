"""Migration 0017 (the campaign lock version, issue 15): the column matches the model, a
campaign that existed before starts at 0, the first lock moves it, and the revision goes down
and up — on SQLite and PostgreSQL. The search index's triggers (0013) are untouched: 0017
changes only ``campaigns``."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.campaigns import locks
from shanju.campaigns.models import Campaign
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config, include_name
from tests.factories import make_campaign, make_org, make_project


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diffs = compare_metadata(context, Base.metadata)
    return [d for d in diffs if "campaigns" in repr(d)]


def _columns(database: Database) -> set[str]:
    return {c["name"] for c in inspect(database.engine).get_columns("campaigns")}


def _triggers(database: Database) -> set[str]:
    if not database.is_sqlite:
        return set()
    with database.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"))}


def test_the_lock_version_goes_down_and_up(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "head")
    assert _diffs(empty_db) == []
    triggers = _triggers(empty_db)
    with empty_db.transaction() as s:
        campaign_id = make_campaign(s, projects=[make_project(s, org=make_org(s))]).id
        locks.lock_campaigns(s, [campaign_id])
    command.downgrade(config, "0013")
    assert "lock_version" not in _columns(empty_db)
    command.upgrade(config, "head")
    assert _diffs(empty_db) == [] and _triggers(empty_db) == triggers
    with empty_db.transaction() as s:
        # The campaign from before the column starts again at 0; the first lock moves it.
        assert s.scalar(select(Campaign.lock_version).where(Campaign.id == campaign_id)) == 0
        locked = locks.lock_campaigns(s, [campaign_id])
        assert locked[campaign_id].lock_version == 1
    with empty_db.transaction(write=False) as s:
        assert s.scalar(select(Campaign.lock_version).where(Campaign.id == campaign_id)) == 1
