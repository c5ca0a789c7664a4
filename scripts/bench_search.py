"""Time the project search and the organization directory on the full demo data, and show
the query plans of their searches (docs/search.md keeps the results).

    uv run python scripts/bench_search.py                       # SQLite: var/bench-demo.sqlite3
    uv run python scripts/bench_search.py --db postgresql+psycopg://postgres@127.0.0.1/x

The database is migrated, and seeded with the full demo (3,000 summit organizations and all)
when empty. Each path is requested ``--requests`` times through the ASGI app in-process (the
application's own time, no network), after one warm-up request. Prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from shanju.app import create_app
from shanju.bench.common import machine, percentiles
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.migrations import create_schema
from shanju.demo import seed as demo_seed
from shanju.discovery import service as discovery
from shanju.projects.models import Project

PATHS = (
    "/projects",
    "/projects?q=助学",                       # 2 characters: LIKE / scan
    "/projects?q=乡村学校",                   # 4 characters: the trigram index
    "/projects?q=孩子 冬季",                  # two terms
    "/projects?q=儿童&sort=nearly_there&province=云南",
    "/projects?sort=most_donors",
    "/projects?sort=ending_soon&field=education",
    "/organizations",
    "/organizations?kind=other",
    "/organizations?q=基金会",
    "/organizations?q=儿童&kind=other&province=广东",
    "/organizations?field=education",
    "/api/v1/projects?q=乡村&sort=nearly_there",
    "/api/v1/organizations?q=公益&kind=fundraising",
)


def _database(url_or_path: str) -> Database:
    url = url_or_path if "://" in url_or_path else f"sqlite:///{Path(url_or_path).resolve()}"
    database = Database(url)
    create_schema(database)
    with database.transaction(write=False) as session:
        empty = demo_seed.is_empty(session)
    if empty:
        print("seeding the demo data…", file=sys.stderr)  # noqa: T201 - a script's progress
        with database.transaction() as session:
            demo_seed.seed(session)
    return database


def _plans(database: Database) -> dict[str, list[str]]:
    """The plans of a 2- and a 4-character project search and a directory search."""
    plans: dict[str, list[str]] = {}
    with database.transaction(write=False) as session:
        dialect = session.get_bind().dialect
        cases = {
            "projects q=乡村学校": discovery.check_project_query(session=session, q="乡村学校"),
            "projects q=助学": discovery.check_project_query(session=session, q="助学"),
        }
        for name, query in cases.items():
            conditions = discovery._project_conditions(query, dialect=dialect.name)  # noqa: SLF001
            stmt = select(Project.id).where(*conditions)
            plans[name] = _explain(session, stmt, dialect.name)
        org_query = discovery.check_org_query(q="儿童基金", kind="fundraising")
        conditions = discovery._org_query(org_query, dialect=dialect.name)  # noqa: SLF001
        from shanju.organizations.models import Organization
        plans["organizations q=儿童基金 kind=fundraising"] = _explain(
            session, select(Organization.id).where(*conditions), dialect.name)
    return plans


def _explain(session: Any, stmt: Any, dialect: str) -> list[str]:
    """The plan of ``stmt``, its parameters bound exactly as the application binds them."""
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN ANALYZE "
    conn = session.connection()

    def explain(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                _executemany: bool) -> tuple[str, Any]:
        return prefix + statement, parameters

    event.listen(conn, "before_cursor_execute", explain, retval=True)
    try:
        rows = conn.execute(stmt).cursor.fetchall()
    finally:
        event.remove(conn, "before_cursor_execute", explain)
    return [str(r[-1]) if dialect == "sqlite" else str(r[0]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="var/bench-demo.sqlite3")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    database = _database(args.db)
    plans = _plans(database)
    settings = Settings(environment="test", database_url=database.url)
    results: dict[str, Any] = {}
    with TestClient(create_app(settings, database=database)) as client:
        for path in PATHS:
            first = client.get(path)
            if first.status_code != 200:
                raise SystemExit(f"{path} answered {first.status_code}")
            samples, cpu = [], []
            for _ in range(args.requests):
                t0, c0 = time.perf_counter(), time.process_time()
                client.get(path)
                samples.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            # Wall time, and this process's CPU time (the app's and SQLite's, not PostgreSQL's):
            # on a busy machine the second says what a request costs, the first what it waited.
            results[path] = {**percentiles(samples),
                             **{f"cpu_{k}": v for k, v in percentiles(cpu).items()
                                if k in ("p50_ms", "p99_ms")}}
    report = {"benchmark": "search", "database": database.engine.dialect.name,
              "requests_per_path": args.requests, "paths": results,
              "plans": plans, "machine": machine()}
    print(json.dumps(report, ensure_ascii=False, indent=1))  # noqa: T201 - the report


if __name__ == "__main__":
    main()
