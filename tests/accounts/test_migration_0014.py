"""Migration 0014 (accounts: phones, resets, deletion) on a database with users and donations:
existing accounts keep their email and references; a phone-only account survives a downgrade
with a placeholder address."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.clock import utcnow
from shanju.core.db import Base, Database
from shanju.core.migrations import alembic_config

TABLES = ("'users'", "password_resets", "email_changes", "phone_codes")


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Not this revision's: 0001 never made users → organizations on PostgreSQL (a use_alter
    # foreign key inside create_table), before 0014 as after it.
    return [d for d in diffs if any(t in repr(d) for t in TABLES)
            and "fk_users_organization_id_organizations" not in repr(d)]


def test_upgrade_keeps_accounts_and_downgrade_fills_missing_emails(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "0011")
    now = utcnow()
    with empty_db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, email, display_name, password_hash, role, is_active,"
            " created_at) VALUES (1, 'a@example.org', 'A', 'x', 'donor', :t, :c)"),
            {"t": True, "c": now})
        conn.execute(text(
            "INSERT INTO web_sessions (id, token_hash, user_id, created_at, expires_at,"
            " last_seen_at) VALUES (1, 'h', 1, :c, :c, :c)"), {"c": now})
    command.upgrade(config, "0014")
    assert _diffs(empty_db) == []
    with empty_db.engine.begin() as conn:
        assert conn.execute(text("SELECT email, phone, deleted_at FROM users")).one() == (
            "a@example.org", None, None)
        assert conn.execute(text("SELECT user_id FROM web_sessions")).scalar_one() == 1
        conn.execute(text(
            "INSERT INTO users (id, email, phone, display_name, password_hash, role, is_active,"
            " created_at) VALUES (2, NULL, '+8613800138000', 'B', '!', 'donor', :t, :c)"),
            {"t": True, "c": now})
    command.downgrade(config, "0011")
    with empty_db.engine.begin() as conn:
        emails = conn.execute(text("SELECT id, email FROM users ORDER BY id")).all()
    assert emails == [(1, "a@example.org"), (2, "user-2@no-email.invalid")]
    command.upgrade(config, "head")
