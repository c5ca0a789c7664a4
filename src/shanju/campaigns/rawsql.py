"""Raw DBAPI access in a session's transaction, for the giving-day engine and its escrow leases.

Statements are written with SQLite's ``?`` placeholders; on PostgreSQL (psycopg) they become
``%s``. Each module adds what only it needs (``engine._Sql``, ``escrow._Sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session


class RawSql:
    """The driver's connection under ``session`` (SQLite ``?`` or psycopg ``%s``)."""

    def __init__(self, session: Session) -> None:
        conn = session.connection()
        self.pg = conn.dialect.name == "postgresql"
        self.raw: Any = conn.connection.driver_connection

    def q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows a statement returns (none for one that returns no rows)."""
        cur = self.raw.cursor()
        try:
            cur.execute(self.q(sql), params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        cur = self.raw.cursor()
        try:
            cur.execute(self.q(sql), params)
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a statement once per row (nothing for no rows); the driver's row count."""
        if not rows:
            return 0
        cur = self.raw.cursor()
        try:
            cur.executemany(self.q(sql), rows)
            return int(cur.rowcount)
        finally:
            cur.close()
