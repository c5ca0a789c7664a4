"""The ``shanju`` command: migrate, ledger check, createuser, serve's refusals and demo."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from starlette.routing import Mount
from typer.testing import CliRunner

from shanju import cli
from shanju.accounts.models import Role, User
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import LedgerAccount
from shanju.organizations.models import PaymentRoute
from tests.factories import make_org, make_project
from tests.payments.helpers import configure_wechatpay

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Commands read the environment's settings; never let one test's leak into another."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Record uvicorn.run calls instead of serving."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    return calls


def test_migrate_creates_the_schema_on_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    result = runner.invoke(cli.app, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    database = Database(url)
    assert cli.schema_is_current(database)
    # Migrating again is a no-op.
    assert runner.invoke(cli.app, ["migrate", "--database-url", url]).exit_code == 0
    database.dispose()


def _post_some_money(db: Database) -> int:
    with db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org)
        ledger.post_many(session, [
            ledger.transfer("donation.paid", source=ledger.donor_clearing("sandbox"),
                            destination=ledger.project_fund(project.id), amount_fen=amount,
                            dedupe_key=f"donation.paid:d_{i}")
            for i, amount in enumerate((100, 2_500, 99_900))
        ])
        return project.id


def test_ledger_check_passes_then_fails_after_a_stored_balance_is_tampered(db: Database) -> None:
    project_id = _post_some_money(db)
    result = runner.invoke(cli.app, ["ledger", "check", "--database-url", db.url])
    assert result.exit_code == 0, result.output
    assert "Every entry balances" in result.output

    code = ledger.project_fund(project_id)
    with db.transaction() as session:
        session.execute(update(LedgerAccount).where(LedgerAccount.code == code)
                        .values(balance_fen=LedgerAccount.balance_fen + 1))
    result = runner.invoke(cli.app, ["ledger", "check", "--database-url", db.url])
    assert result.exit_code == 1
    assert code in result.output
    assert "does not reconcile" in result.output


def test_createuser_makes_a_reviewer_who_can_sign_in(db: Database) -> None:
    args = ["createuser", "--database-url", db.url, "--email", "Shen@Example.org",
            "--name", "沈审核", "--role", "reviewer", "--password", "a-long-password"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    with db.transaction(write=False) as session:
        from shanju.accounts import service as accounts

        user = accounts.authenticate(session=session, email="shen@example.org",
                                     password="a-long-password")
        assert user.role == Role.REVIEWER

    # The same email again is refused with the service's message, and nothing changes.
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert "already exists" in result.output
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_createuser_refuses_a_weak_password_and_staff_without_organization(
    db: Database,
) -> None:
    weak = runner.invoke(cli.app, ["createuser", "--database-url", db.url, "--email",
                                   "a@example.org", "--name", "甲", "--password", "short"])
    assert weak.exit_code == 1
    assert "at least 8 characters" in weak.output
    staff = runner.invoke(cli.app, ["createuser", "--database-url", db.url, "--email",
                                    "b@example.org", "--name", "乙", "--role", "org_staff",
                                    "--password", "a-long-password"])
    assert staff.exit_code == 2
    assert "--organization-id" in staff.output
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_serve_refuses_the_development_secret_in_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: list[Any]
) -> None:
    monkeypatch.setenv("SHANJU_ENVIRONMENT", "production")
    monkeypatch.delenv("SHANJU_SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite3'}")
    result = runner.invoke(cli.app, ["serve"])
    assert result.exit_code == 2
    assert "SHANJU_SECRET_KEY" in result.output
    assert no_uvicorn == []


def test_serve_refuses_an_unmigrated_database_then_serves_a_migrated_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: list[Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    monkeypatch.setenv("SHANJU_ENVIRONMENT", "production")
    monkeypatch.setenv("SHANJU_SECRET_KEY", secrets.token_urlsafe(48))
    configure_wechatpay(monkeypatch, tmp_path / "wechatpay-keys")
    monkeypatch.setenv("DATABASE_URL", url)
    result = runner.invoke(cli.app, ["serve"])
    assert result.exit_code == 2
    assert "shanju migrate" in result.output
    assert no_uvicorn == []

    assert runner.invoke(cli.app, ["migrate"]).exit_code == 0
    # Several workers need PostgreSQL, a shared broker for the live rooms and shared rate
    # limits (ADR 0037): each refusal on a line of its own.
    result = runner.invoke(cli.app, ["serve", "--port", "9001", "--workers", "2"])
    assert result.exit_code == 2
    assert "Refusing to start 2 workers" in result.output
    assert "SQLite takes one server process" in result.output
    assert "SHANJU_SUMMIT_BROKER_URL" in result.output
    assert "SHANJU_RATE_LIMIT_URL" in result.output
    assert no_uvicorn == []

    # With the broker and the limits in Redis, SQLite still takes one process only.
    monkeypatch.setenv("SHANJU_SUMMIT_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("SHANJU_RATE_LIMIT_URL", "redis://127.0.0.1:6379/0")
    result = runner.invoke(cli.app, ["serve", "--port", "9001", "--workers", "2"])
    assert result.exit_code == 2
    assert "SQLite takes one server process" in result.output
    assert "SHANJU_SUMMIT_BROKER_URL" not in result.output
    assert no_uvicorn == []

    result = runner.invoke(cli.app, ["serve", "--port", "9001"])
    assert result.exit_code == 0, result.output
    [(target, options)] = no_uvicorn
    assert target == "shanju.app:create_app"
    assert options["factory"] is True
    assert (options["port"], options["workers"]) == (9001, 1)
    assert options["ws"] == "websockets-sansio"
    assert options["ws_per_message_deflate"] is False


def test_serve_starts_several_workers_on_postgresql(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: list[Any], pg_url: str
) -> None:
    monkeypatch.setenv("SHANJU_ENVIRONMENT", "production")
    monkeypatch.setenv("SHANJU_SECRET_KEY", secrets.token_urlsafe(48))
    configure_wechatpay(monkeypatch, tmp_path / "wechatpay-keys")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SHANJU_SUMMIT_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("SHANJU_RATE_LIMIT_URL", "redis://127.0.0.1:6379/0")
    result = runner.invoke(cli.app, ["serve", "--port", "9001", "--workers", "2"])
    assert result.exit_code == 0, result.output
    [(target, options)] = no_uvicorn
    assert (target, options["factory"], options["workers"]) == ("shanju.app:create_app",
                                                                True, 2)


def test_demo_seeds_once_then_reuses_the_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_uvicorn: list[Any]
) -> None:
    # demo points the process-wide settings at its database; monkeypatch restores them.
    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.sqlite3")
    monkeypatch.setenv("SHANJU_ENVIRONMENT", "test")
    monkeypatch.setenv("SHANJU_BASE_URL", "unset")  # recorded, so restored after the test
    monkeypatch.delenv("SHANJU_BASE_URL")
    path = tmp_path / "demo.sqlite3"
    args = ["demo", "--db", str(path), "--port", "8123", "--scale", "0.02"]
    first = runner.invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert "Seeded" in first.output
    for email in ("donor@demo.shanju.org", "org@demo.shanju.org",
                  "reviewer@demo.shanju.org", "admin@demo.shanju.org"):
        assert email in first.output
    assert "shanju-demo" in first.output
    # Links and the transparency log's origin name the port served.
    assert os.environ["SHANJU_BASE_URL"] == "http://127.0.0.1:8123"
    # The demo pays through the emulators it serves itself, with keys made once beside its
    # database; the gateways talk to the port served.
    served = no_uvicorn[0][0]
    assert served.state.providers.gateway_names == ["alipay", "wechatpay"]
    assert "http://127.0.0.1:8123/emulators/wechatpay/emulator/orders" in first.output
    keys = {p.name: p.read_bytes() for p in (tmp_path / "demo-emulators").iterdir()}
    assert "wechatpay-merchant.key.pem" in keys and "alipay-app.key.pem" in keys
    # A demo seeded before it paid through the emulators gets its routes on the next start.
    database = Database(f"sqlite:///{path}")
    with database.transaction() as session:
        routes = session.scalar(select(func.count()).select_from(PaymentRoute))
        assert routes
        session.execute(delete(PaymentRoute))
    database.dispose()
    second = runner.invoke(cli.app, args)
    assert second.exit_code == 0, second.output
    assert "Reusing" in second.output
    assert f"Approved {routes} payment routes" in second.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "demo-emulators").iterdir()} == keys
    assert len(no_uvicorn) == 2
    assert no_uvicorn[0][1]["port"] == 8123
    # ... and the emulated WeChat Pay knows their sub-merchants from the start.
    mounted = {r.path: r for r in no_uvicorn[1][0].routes if isinstance(r, Mount)}
    assert len(mounted["/emulators/wechatpay"].app.state.emulator.sub_merchants) == routes // 2
    # Email goes over SMTP to the demo's mail sink, SMS codes to the emulated Alibaba Cloud.
    assert "/emulators/aliyun-sms" in mounted
    assert "local mail sink" in second.output and "/emulators/aliyun-sms/emulator/inbox" in \
        second.output
    assert no_uvicorn[1][0].state.settings.smtp_host == "127.0.0.1"

    database = Database(f"sqlite:///{path}")
    with database.transaction(write=False) as session:
        assert ledger.check(session).ok
        users = session.scalar(select(func.count()).select_from(User))
    database.dispose()
    reset = runner.invoke(cli.app, [*args, "--reset"])
    assert reset.exit_code == 0, reset.output
    assert "Seeded" in reset.output
    database = Database(f"sqlite:///{path}")
    with database.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(User)) == users
    database.dispose()
