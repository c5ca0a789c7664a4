"""Shared fixtures: real SQLite and real PostgreSQL databases, the app, and a test client.

Every test that takes ``db`` (or anything built on it) runs twice: against SQLite and against
PostgreSQL. PostgreSQL tests skip with a printed reason when no server answers — except in CI
(``CI=true``), where an unreachable server fails the run.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from shanju.app import create_app
from shanju.core.clock import CHINA_TZ, today_cn, utcnow
from shanju.core.config import Settings
from shanju.core.db import Base, Database
from shanju.core.migrations import create_schema

pytest_plugins = ["tests.money"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _shared_dir() -> Path:
    """The project's ``shared/`` folder (product docs, test data that is not ours to copy).

    It lives beside the checkout (``<repo>/../shared``). A clone of a local checkout (as CI
    makes) finds it beside the checkout it was cloned from; ``SHANJU_SHARED_DIR`` overrides.
    Returns the first candidate that exists, else the conventional path (for messages).
    """
    repo = Path(__file__).resolve().parents[1]
    candidates = []
    if os.environ.get("SHANJU_SHARED_DIR"):
        candidates.append(Path(os.environ["SHANJU_SHARED_DIR"]))
    candidates.append(repo.parent / "shared")
    try:
        origin = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "-C", str(repo), "config", "--get", "remote.origin.url"],  # noqa: S607
            capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        candidates.append(Path(origin).expanduser().resolve().parent / "shared")
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DIR = _shared_dir()
RFC6962_VECTORS = SHARED_DIR / "testdata" / "rfc6962"
PG_ADMIN_URL = os.environ.get(
    "SHANJU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_report_header() -> list[str]:
    return [f"shanju: CI={IN_CI} postgres={PG_ADMIN_URL}"]


# --- PostgreSQL: one throw-away database per test run ---------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
        if IN_CI:
            pytest.fail(f"{reason} (PostgreSQL tests are mandatory in CI)")
        pytest.skip(reason)
    name = f"shanju_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    database = Database(url)
    create_schema(database)
    database.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (faster than migrating per test)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    database = Database(f"sqlite:///{path}")
    create_schema(database)
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


# Every sequence a test used (``last_value`` is null until ``nextval``) back to its start.
_RESTART_USED_SEQUENCES = """
SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)
FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL
"""


def _truncate_all(database: Database) -> None:
    """Empty every table and restart every identity, as ``TRUNCATE … RESTART IDENTITY`` would.

    With ``DELETE``, children first: a test leaves a few rows, and deleting them costs a few
    milliseconds, where truncating 61 tables makes as many new files (about a second on a
    busy machine, after each of the suite's PostgreSQL tests)."""
    tables = Base.metadata.sorted_tables
    with database.engine.begin() as conn:
        for table in tables:  # first the references that close a cycle (users ⇄ organizations)
            for fk in table.foreign_keys:
                if fk.use_alter or fk.constraint.use_alter:
                    conn.execute(table.update().where(fk.parent.is_not(None))
                                 .values({fk.parent.name: None}))
        for table in reversed(tables):
            conn.execute(table.delete())
        conn.execute(text(_RESTART_USED_SEQUENCES))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A real, empty, migrated database — once SQLite, once PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "shanju.sqlite3"
        shutil.copy(template, path)
        database = Database(f"sqlite:///{path}")
        yield database
        database.dispose()
    else:
        url: str = request.getfixturevalue("pg_url")
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()
            cleaner = Database(url)
            _truncate_all(cleaner)
            cleaner.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database (no schema), once SQLite, once PostgreSQL: for migration tests,
    which upgrade and downgrade it themselves. The PostgreSQL one is a database of its own,
    dropped afterwards."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        yield database
        database.dispose()
        return
    request.getfixturevalue("pg_url")  # skips (or fails in CI) without a server
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"shanju_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield database
    finally:
        database.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    """Settings for an app on the test database."""
    return Settings(
        environment="test",
        database_url=db.url,
        upload_dir=tmp_path / "uploads",
        secret_key="test-secret",
        sandbox_secret="test-sandbox-secret",
        transparency_key_file=tmp_path / "transparency-ed25519.key",
    )


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    """The application, on the test database."""
    return create_app(settings, database=db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An HTTP client for the app (cookies kept between requests, like a browser)."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c


# --- the date --------------------------------------------------------------------------------

#: How close to midnight in China a test that takes ``china_today`` waits for it instead.
MIDNIGHT_MARGIN = dt.timedelta(minutes=1)


@pytest.fixture
def china_today() -> dt.date:
    """Today's date in China (the product's ``today_cn()``) when the test runs.

    The test and the code it calls read the clock separately; a run of the suite may cross
    midnight in China (16:00 UTC). A test that starts less than ``MIDNIGHT_MARGIN`` before
    it first waits for it to pass, so that the dates the test and the code take are one day.
    """
    now = utcnow().astimezone(CHINA_TZ)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(),
                                   tzinfo=CHINA_TZ)
    if midnight - now < MIDNIGHT_MARGIN:
        time.sleep((midnight - now).total_seconds() + 0.01)
    return today_cn()
