"""The data layer: engine set-up for SQLite and PostgreSQL, the declarative base, and
transactions.

Transactions begin and end at the boundary only — a request (see ``deps.py``), a CLI command
or a job — through :meth:`Database.transaction`. Services receive a ``Session`` and only
``flush``; they never commit. On SQLite a writing transaction starts with ``BEGIN IMMEDIATE``
so that two writers queue on the database lock instead of failing half-way when a read lock
would have to be upgraded; readers use a plain deferred ``BEGIN`` and run beside the writer
thanks to WAL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import annotated_types
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from shanju.core.errors import NotFound
from shanju.core.text import check_flushed_text

T = TypeVar("T")

# The largest id an INTEGER primary key holds (on PostgreSQL; SQLite's are 64-bit): a bigger
# number from a client is refused at the edge (a 4xx) instead of overflowing the database
# driver (a 500). Tables that will outgrow it move to BIGINT together with this bound.
MAX_ID = 2**31 - 1
DbId = Annotated[int, annotated_types.Interval(ge=1, le=MAX_ID)]
# How far into a list a client may page (offset, in rows), and the page numbers of lists that
# are paged by number: bounded at the edge, so a client's 10**29 is a 422, never an overflow.
MAX_OFFSET = 10_000_000
MAX_PAGE = 100_000
PageNumber = Annotated[int, annotated_types.Interval(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, annotated_types.Interval(ge=0, le=MAX_OFFSET)]
# A calendar year in a path or query (annual reports): four digits.
Year = Annotated[int, annotated_types.Interval(ge=1000, le=9999)]

# Every session refuses, at flush, a text one database would store and the other refuse (a NUL,
# more characters than a VARCHAR holds): the same 422 naming the field on SQLite and PostgreSQL.
event.listen(Session, "before_flush", check_flushed_text)

def parse_id(text: str) -> int | None:
    """Return the id a form or link names (ASCII digits, 1 … :data:`MAX_ID`), else None.

    ``str.isdigit()`` is no guard for ``int()``: it is true of "²" (which ``int`` refuses) and
    of ids past what the database holds (which overflow it)."""
    raw = text.strip()
    if not raw or len(raw) > 10 or not is_digits(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def is_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (what ``int()`` reads as people mean)."""
    return text.isascii() and text.isdigit()


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone type; storing naive UTC there and aware values on PostgreSQL keeps
    one meaning on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, _dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """The declarative base every domain's tables derive from."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


class WriteLockTimeout(TimeoutError):
    """A writer waited too long for SQLite's write lock (answered 503 ``database_busy``)."""


@dataclass(frozen=True)
class Timeouts:
    """Limits on a PostgreSQL session's transactions, in milliseconds (0: no limit).

    ``lock_ms``: how long a statement waits for a lock (``lock_timeout``); ``statement_ms``:
    how long one statement may run (``statement_timeout``); ``idle_in_transaction_ms``: how
    long a transaction may sit idle before the server ends the session
    (``idle_in_transaction_session_timeout``). See docs/locking.md, "Timeouts".
    """

    lock_ms: int = 5_000
    statement_ms: int = 30_000
    idle_in_transaction_ms: int = 60_000

    def settings(self) -> dict[str, str]:
        """The PostgreSQL settings that carry these limits."""
        return {
            "lock_timeout": f"{max(0, self.lock_ms)}ms",
            "statement_timeout": f"{max(0, self.statement_ms)}ms",
            "idle_in_transaction_session_timeout": f"{max(0, self.idle_in_transaction_ms)}ms",
        }


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so BEGIN is ours (see module doc).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _WriterQueue:
    """Writers of one SQLite database in this process wait here, in turn, for the write lock.

    SQLite lets one writer in at a time; the others poll with growing sleeps (busy timeout)
    and, under load, can starve for seconds. Queuing writers of the same process on a lock
    before ``BEGIN IMMEDIATE`` gives them the database in order; writers from other processes
    still meet at SQLite's own lock. A plain ``threading.Lock`` (not owner-bound) because a
    request may begin its transaction on one worker thread and commit it on another.
    """

    KEY = "shanju_holds_writer_lock"

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout

    def begin(self, conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode == "IMMEDIATE":
            if not self._lock.acquire(timeout=self._timeout):
                raise WriteLockTimeout("timed out waiting for the database write lock")
            conn.info[self.KEY] = True
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            self.end(conn)
            raise

    def end(self, conn: Connection) -> None:
        if conn.info.pop(self.KEY, False):
            self._lock.release()

    def end_record(self, _dbapi: Any, record: Any, *_args: Any) -> None:
        # A connection returned to the pool mid-transaction (e.g. after an error).
        if record.info.pop(self.KEY, False):
            self._lock.release()


def make_engine(url: str, *, echo: bool = False, write_lock_timeout: float = 30) -> Engine:
    """Create an engine for ``url``, configured the same way for the app, CLI and tests.

    ``write_lock_timeout``: how long (seconds) a SQLite writer waits for the write lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        pool_args: dict[str, Any] = {}
        if database and database != ":memory:":
            pool_args = {"pool_size": 8, "max_overflow": 8}
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            **pool_args,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        writers = _WriterQueue(timeout=write_lock_timeout)
        event.listen(engine, "begin", writers.begin)
        event.listen(engine, "commit", writers.end)
        event.listen(engine, "rollback", writers.end)
        event.listen(engine.pool, "checkin", writers.end_record)
        return engine
    return create_engine(
        parsed, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True
    )


class Database:
    """An engine and the two kinds of transaction the platform opens: read and write."""

    _LIMITS_KEY = "shanju_timeouts"

    def __init__(self, url: str, *, echo: bool = False, write_lock_timeout: float = 30) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, write_lock_timeout=write_lock_timeout)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        self.timeouts: Timeouts | None = None
        if not self.is_sqlite:
            event.listen(self.engine.pool, "checkout", self._apply_timeouts)

    def limit(self, timeouts: Timeouts) -> None:
        """Limit every transaction opened from now on (PostgreSQL; SQLite has its write-lock
        wait only). The web application limits its database; CLI jobs (migrate, seed, bench,
        checks) open their own, unlimited."""
        self.timeouts = timeouts

    def _apply_timeouts(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # Session settings, set once per pooled connection (and again if the limits change):
        # no extra round trip per transaction.
        wanted = self.timeouts
        if wanted is None or record.info.get(self._LIMITS_KEY) == wanted:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                for name, value in wanted.settings().items():
                    cursor.execute("SELECT set_config(%s, %s, false)", (name, value))
            finally:
                cursor.close()
            dbapi_connection.commit()  # end the implicit transaction the SETs ran in
        except Exception as exc:
            # A connection that died in the pool: the pool retries with a fresh one.
            raise DisconnectionError(str(exc)) from exc
        record.info[self._LIMITS_KEY] = wanted

    def session(self, *, write: bool) -> Session:
        """Return a new session; the caller owns its transaction."""
        return (self._write if write else self._read)()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """Open one transaction: commit if the block succeeds, roll back if it raises."""
        session = self.session(write=write)
        try:
            yield session
            if write:
                session.commit()
            else:
                session.rollback()
        except BaseException:
            # Detach what was loaded before rolling back: a rollback would expire it, and the
            # error page rendered afterwards still reads the viewer (``viewer.role``...).
            session.expunge_all()
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def enum_column(enum_cls: type[Any]) -> Any:
    """Return a portable enum column of the members' string values (no native PG enum)."""
    from sqlalchemy import Enum

    return Enum(
        enum_cls,
        native_enum=False,
        length=max(len(m.value) for m in enum_cls) + 4,
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )


def get_or_404(session: Session, model: type[T], ident: Any, *, message: str, code: str) -> T:
    """Return the ``model`` row with primary key ``ident`` or raise NotFound with ``code``."""
    row = session.get(model, ident)
    if row is None:
        raise NotFound(message, code=code)
    return row


def flush_unless_duplicate(session: Session, *new: object) -> bool:
    """Add ``new`` rows and flush in a savepoint; return False if a constraint refused it.

    The savepoint keeps the caller's transaction usable after the refusal, so the caller can
    read the row that won a race, or show the form again.
    """
    try:
        with session.begin_nested():
            session.add_all(new)
    except IntegrityError:
        return False
    return True
