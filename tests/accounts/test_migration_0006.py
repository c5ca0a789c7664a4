"""Migration 0006 (session activity) on a database with sessions: ``last_seen_at`` is backfilled."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.migrations import alembic_config
from tests.conftest import PG_ADMIN_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database (no schema), once SQLite, once PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
        yield database
        database.dispose()
        return
    request.getfixturevalue("pg_url")  # skips (or fails in CI) without a server
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"shanju_mig_{tmp_path.name[-20:].replace('-', '_').lower()}"
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
