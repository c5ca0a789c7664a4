"""The web app's database work: never on the event loop, limited in time on PostgreSQL, and a
refused constraint answered 409 — never a hang or a 500."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text

from shanju.app import create_app
from shanju.campaigns import checkout
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.deps import DbSession, get_db
from shanju.payments.models import ProviderEvent

# Dependencies that open a database transaction for the request.
TRANSACTIONS = {get_db, checkout._read_db}


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every API route, also those of included routers (kept apart by FastAPI)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
    return found


def _calls(dependant: Dependant) -> set[Any]:
    found = set()
    for dep in dependant.dependencies:
        found.add(dep.call)
        found |= _calls(dep)
    return found


def test_no_async_route_holds_a_request_transaction(app: FastAPI) -> None:
    """An ``async def`` handler runs on the event loop: with the request's transaction open it
    would do (or wait for) database work there and freeze the server — the handlers that need
    the transaction are plain ``def`` (run in the threadpool; see core/deps.py)."""
    routes = _api_routes(app.routes)
    assert any(r.endpoint.__name__ == "provider_callback" for r in routes)  # all were seen
    offenders = [
        f"{sorted(route.methods)} {route.path} ({route.endpoint.__module__})"
        for route in routes
        if inspect.iscoroutinefunction(route.endpoint) and _calls(route.dependant) & TRANSACTIONS
    ]
    assert offenders == []


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[tuple[Settings, Database]]:
    """PostgreSQL only: these limits are PostgreSQL settings (SQLite's limit is the write
    lock's wait, tested with the callbacks), so there is no SQLite run to skip."""
    database = Database(pg_url)
    yield Settings(environment="test", database_url=pg_url, upload_dir=tmp_path / "uploads",
                   secret_key="test-secret", sandbox_secret="test-sandbox-secret",
                   transparency_key_file=tmp_path / "transparency-ed25519.key"), database
    database.dispose()


def test_the_apps_postgresql_sessions_are_time_limited_and_cli_ones_are_not(
    pg: tuple[Settings, Database],
) -> None:
    settings, db = pg
    app = create_app(settings.model_copy(update={
        "db_lock_timeout_ms": 1500, "db_statement_timeout_ms": 20_000,
        "db_idle_in_transaction_timeout_ms": 45_000}), database=db)
    names = ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")

    def shown(database: Database) -> tuple[str, ...]:
        with database.transaction(write=False) as s:
            return tuple(str(s.scalar(text(f"SHOW {name}"))) for name in names)

    assert shown(app.state.db) == ("1500ms", "20s", "45s")
    cli = Database(db.url)  # what `shanju migrate`, the seeder and the benchmarks open
    try:
        assert shown(cli) == ("0", "0", "0")
    finally:
        cli.dispose()


def test_a_statement_over_the_time_limit_is_answered_busy(
    pg: tuple[Settings, Database],
) -> None:
    settings, db = pg
    app = create_app(settings.model_copy(update={"db_statement_timeout_ms": 200}), database=db)

    @app.get("/api/v1/test-slow")
    def slow(session: DbSession) -> dict[str, str]:
        session.execute(text("SELECT pg_sleep(5)"))
        return {"slept": "yes"}

    with TestClient(app) as client:
        response = client.get("/api/v1/test-slow")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_busy"
    assert response.headers["retry-after"] == "1"


def _event(event_id: str) -> ProviderEvent:
    return ProviderEvent(provider="sandbox", event_id=event_id, event_type="payment.succeeded",
                         intent_id=None, payload={}, outcome="received")


@pytest.mark.parametrize("when", ["flush", "commit"])
def test_a_refused_constraint_is_a_409_not_a_500(
    settings: Settings, db: Database, when: str
) -> None:
    """A unique key no service foresaw refuses a change (at a flush in the handler, or at the
    commit after it): the request is answered 409 ``integrity_conflict``, nothing stored."""
    app = create_app(settings, database=db)

    @app.post("/api/v1/test-duplicate")
    @app.post("/test-duplicate")
    def duplicate(session: DbSession) -> dict[str, str]:
        session.add_all([_event("evt_twice"), _event("evt_twice")])
        if when == "flush":
            session.flush()
        return {"stored": "twice"}

    with TestClient(app) as client:
        api = client.post("/api/v1/test-duplicate")  # no session: a program, no CSRF token
        client.get("/login")  # a browser's form carries the CSRF token of its cookie
        page = client.post("/test-duplicate",
                           headers={"X-CSRF-Token": client.cookies["sj_csrf"]})
    assert api.status_code == 409, api.text
    assert api.json()["error"]["code"] == "integrity_conflict"
    assert page.status_code == 409
    assert "text/html" in page.headers["content-type"]
    with db.transaction(write=False) as s:
        assert s.query(ProviderEvent).count() == 0
