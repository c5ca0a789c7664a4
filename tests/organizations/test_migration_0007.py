"""Migration 0007 (payment routes): the table matches the model (its partial unique indexes
included), and it goes down and up again cleanly — on SQLite and PostgreSQL."""

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
from shanju.core.migrations import alembic_config

REVISION = "0007"


def _route_diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diffs if "payment_routes" in repr(d)]


def test_the_migration_builds_the_models_table_and_goes_down_and_up(
    empty_db: Database,
) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, REVISION)
    assert _route_diffs(empty_db) == []
    indexes = {i["name"]: i for i in inspect(empty_db.engine).get_indexes("payment_routes")}
    assert indexes["uq_payment_routes_one_approved"]["unique"]
    assert indexes["uq_payment_routes_one_pending"]["unique"]

    with empty_db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO organizations (id, name, uscc, org_type, registering_authority,"
            " province, contact_phone, description, status, created_at) VALUES (1, 'o',"
            " '53100000500021676K', 'foundation', 'x', '北京', '010-1', '', 'approved',"
            " CURRENT_TIMESTAMP)"))
    insert = text(
        "INSERT INTO payment_routes (organization_id, provider, merchant_id, status,"
        " submitted_at) VALUES (1, 'wechatpay', '1900000109', :s, CURRENT_TIMESTAMP)")
    with empty_db.engine.begin() as conn:
        for status in ("pending", "approved", "rejected", "rejected"):
            conn.execute(insert, {"s": status})
    for status in ("pending", "approved"):
        with pytest.raises(IntegrityError), empty_db.engine.begin() as conn:
            conn.execute(insert, {"s": status})

    command.downgrade(config, "0006")
    assert "payment_routes" not in inspect(empty_db.engine).get_table_names()
    command.upgrade(config, REVISION)
    assert _route_diffs(empty_db) == []
