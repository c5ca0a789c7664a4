"""``shanju bench http`` runs end to end (a real server, client processes, invariants): each
gift's two halves — the donor's order and the provider's callback — through WeChat Pay's path
(the emulator as the provider's API) or the sandbox's, and the same requests to a bare ASGI
endpoint (the floor); with two workers on PostgreSQL both take gifts, every invariant true."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from shanju.bench import http as bench
from shanju.campaigns.models import CampaignBatch
from shanju.cli import app
from shanju.core.db import Database

PG_ADMIN_URL = os.environ.get(
    "SHANJU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _bench(*extra: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["bench", "http", "--donations", "150", "--clients", "2",
                                      "--connections", "4", "--port", "0", "--json", *extra])
    assert result.exit_code == 0, (result.output[-2000:], repr(result.exception))
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _check_shape(report: dict[str, object], donations: int) -> None:
    assert report["errors"] == 0 and report["ok"] is True
    for half in ("orders", "callbacks"):
        stats = report[half]
        assert isinstance(stats, dict)
        assert stats["requests"] == donations
        assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    gift, floor = report["gift_requests_per_s"], report["floor_requests_per_s"]
    assert isinstance(gift, float) and isinstance(floor, float) and gift > 0 and floor > 0
    assert report["ratio"] == round(gift / floor, 3)
    assert isinstance(report["floor"], dict) and report["floor"]["requests"] == 2 * donations
    assert report["floor"]["errors"] == 0
    assert isinstance(report["server_cpu_us_per_donation"], int)


@pytest.mark.slow
def test_bench_http_times_orders_and_wechat_pay_notifications_and_the_floor() -> None:
    report = _bench()
    assert (report["db"], report["provider"], report["donations"], report["workers"]) == (
        "sqlite", "wechatpay", 150, 1)
    assert report["endpoints"] == {"orders": "/api/v1/gifts",
                                   "callbacks": "/api/v1/payments/notify/wechatpay"}
    _check_shape(report, 150)
    checks = report["invariants"]
    assert isinstance(checks, dict)
    assert checks["exactly_once"] and checks["ledger_balanced"] and checks["log_equals_ledger"]
    assert checks["orders_paid_equal_gifts"] and checks["events_once_per_order"]
    assert checks["gifts"] == checks["orders_paid"] == 150
    # The orders the donors opened in the window are there, waiting for their payment.
    assert checks["every_order_opened"] and checks["orders_opened_in_window"] == 150


@pytest.mark.slow
def test_bench_http_runs_the_sandbox_path_to_compare() -> None:
    report = _bench("--provider", "sandbox")
    assert (report["provider"], report["errors"], report["ok"]) == ("sandbox", 0, True)
    assert report["endpoints"] == {"orders": "/api/v1/campaigns/{id}/orders",
                                   "callbacks": "/api/v1/payments/callbacks/sandbox/orders"}
    _check_shape(report, 150)
    checks = report["invariants"]
    assert isinstance(checks, dict)
    assert checks["exactly_once"] and checks["gifts"] == 150
    assert "orders_paid_equal_gifts" not in checks  # no payment orders: stateless tokens


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """An empty PostgreSQL database of its own (the bench migrates it), dropped afterwards."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip("PostgreSQL is not reachable")
    name = f"shanju_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
def test_two_workers_on_postgresql_take_gifts_through_both_exactly_once(empty_pg: str) -> None:
    report = bench.run(donations=300, clients=2, connections=12, workers=2, port=0,
                       database_url=empty_pg, floor=False)
    assert (report["db"], report["workers"], report["errors"]) == ("postgresql", 2, 0)
    checks = report["invariants"]
    assert report["ok"] is True, (checks, report["first_errors"])
    assert checks["gifts"] == 300 and checks["exactly_once"] and checks["ledger_balanced"]
    assert checks["log_equals_ledger"] and checks["within_budget"]
    # Both processes' engines wrote batches (each batch records its writer, host:pid).
    database = Database(empty_pg)
    try:
        with database.transaction(write=False) as s:
            writers = s.scalar(select(func.count(CampaignBatch.worker.distinct())))
    finally:
        database.dispose()
    assert writers == 2


def test_bench_http_refuses_an_unknown_provider() -> None:
    result = CliRunner().invoke(app, ["bench", "http", "--provider", "paypal"])
    assert result.exit_code == 2


def test_bench_http_refuses_several_workers_on_sqlite() -> None:
    result = CliRunner().invoke(app, ["bench", "http", "--workers", "2"])
    assert result.exit_code == 2
    assert "PostgreSQL" in result.output
