"""Migration 0006 (session activity) on a database with sessions: ``last_seen_at`` is backfilled."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import text

from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.migrations import alembic_config


def test_existing_sessions_get_their_sign_in_time_as_last_seen(empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "0005")
    signed_in = utcnow().replace(microsecond=0) - dt.timedelta(days=3)
    with empty_db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, email, display_name, password_hash, role, is_active,"
            " created_at) VALUES (1, 'a@example.org', 'A', 'x', 'donor', :t, :c)"),
            {"t": True, "c": signed_in})
        conn.execute(text(
            "INSERT INTO web_sessions (id, token_hash, user_id, created_at, expires_at)"
            " VALUES (1, 'h', 1, :c, :e)"),
            {"c": signed_in, "e": signed_in + dt.timedelta(days=14)})
    command.upgrade(config, "0006")
    with empty_db.transaction(write=False) as session:
        from shanju.accounts.models import WebSession

        row = session.get_one(WebSession, 1)
        assert row.last_seen_at == row.created_at == signed_in
    command.downgrade(config, "0005")
