"""Alembic environment: runs migrations on the engine given by ``shanju.core.migrations``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, create_engine

from shanju.core.migrations import include_name
from shanju.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite's own procedure for a schema change (sqlite.org/lang_altertable.html):
            # foreign keys off, outside any transaction (the PRAGMA is a no-op inside one), so
            # that batch mode may drop and re-create a table other tables refer to; every
            # reference is checked before the migration commits, and they are on again after.
            _driver_execute(connection, "PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                include_name=include_name,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite and (broken := connection.exec_driver_sql(
                        "PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                _driver_execute(connection, "PRAGMA foreign_keys=ON")


def _driver_execute(connection: Connection, sql: str) -> None:
    """Run ``sql`` on the DB-API connection itself, outside SQLAlchemy's transaction."""
    connection.connection.driver_connection.execute(sql)  # type: ignore[union-attr]


run_migrations_online()
