"""One runner per deployment: a background job that must not run once per server process.

``shanju serve --workers N`` (ADR 0037) starts N processes, each with the application's
lifespan; a job such as the payments sweep or the transparency log's checkpointer would run N
times. :class:`Leadership` elects one process per job name: on PostgreSQL the process that
holds the session-level advisory lock of the name (``pg_try_advisory_lock``) on a connection
of its own, outside the pool, kept open while the process lives. The lock goes with the
connection: a leader that dies (or loses its connection) frees it, and the next round of
another process takes it. On SQLite the deployment is one process (``serve`` refuses more):
that process always leads.

A job asks :meth:`Leadership.held` at the start of each round and skips the round when it is
not the leader; the round itself is written to be safe to repeat, so a leader that changes
between two rounds does no harm.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import structlog

from shanju.core.db import Database

log = structlog.get_logger(__name__)


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit signed key of a job name (stable across processes)."""
    return int.from_bytes(hashlib.sha256(f"shanju:{name}".encode()).digest()[:8], "big",
                          signed=True)


class Leadership:
    """Whether this process is the deployment's one runner of the job ``name``."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name
        self.key = lock_key(name)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._released = False

    def held(self) -> bool:
        """True if this process leads: it holds the lock, or has just taken it. Never raises
        (a database that cannot be reached: not the leader this round)."""
        if self.database.is_sqlite:
            return True
        with self._lock:
            if self._released:
                # Given up at shutdown: a job's thread still finishing a round (its stop()
                # stopped waiting for it) must not take the lock again on a new connection.
                return False
            try:
                if self._conn is not None:
                    # Still ours while our connection lives.
                    self._conn.execute("SELECT 1").fetchone()
                    return True
                conn = self._connect()
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if row is not None and row[0]:
                    self._conn = conn
                    log.info("leader.elected", job=self.name)
                    return True
                conn.close()
                return False
            except Exception as exc:  # noqa: BLE001 - no leader this round; asked again next
                log.warning("leader.lost", job=self.name, error=type(exc).__name__)
                self._drop()
                return False

    def release(self) -> None:
        """Give the lead up for good (at shutdown): another process takes it at its next
        round; this one never asks again."""
        with self._lock:
            self._released = True
            self._drop()

    def _connect(self) -> Any:
        # A DBAPI connection of its own, not the pool's: held as long as the process leads,
        # in autocommit (idle, never "idle in transaction").
        engine = self.database.engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        conn = engine.dialect.dbapi.connect(*cargs, **cparams)  # type: ignore[union-attr]
        conn.autocommit = True
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - closing frees the lock either way
                pass
