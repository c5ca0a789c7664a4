"""``shanju bench http`` runs end to end (a real server, client processes, invariants): WeChat
Pay's notifications through the gift pipeline's intake, and the sandbox's old path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shanju.cli import app


def _bench(*extra: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["bench", "http", "--donations", "300", "--clients", "2",
                                      "--connections", "4", "--port", "0", "--json", *extra])
    assert result.exit_code == 0, (result.output[-2000:], repr(result.exception))
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_bench_http_sends_wechat_pay_notifications_each_credited_once_on_sqlite() -> None:
    report = _bench()
    assert (report["db"], report["provider"], report["donations"]) == ("sqlite", "wechatpay",
                                                                       300)
    assert report["endpoint"] == "/api/v1/payments/notify/wechatpay"
    assert report["errors"] == 0 and report["ok"] is True
    checks = report["invariants"]
    assert isinstance(checks, dict)
    assert checks["exactly_once"] and checks["ledger_balanced"] and checks["log_equals_ledger"]
    assert checks["orders_paid_equal_gifts"] and checks["events_once_per_order"]
    assert checks["gifts"] == checks["orders_paid"] == 300
    cpu = report["server_cpu_us_per_callback"]
    assert isinstance(cpu, int) and cpu > 0
    assert report["p50_ms"] <= report["p99_ms"]  # type: ignore[operator]


@pytest.mark.slow
def test_bench_http_runs_the_sandbox_path_to_compare() -> None:
    report = _bench("--provider", "sandbox")
    assert (report["provider"], report["errors"], report["ok"]) == ("sandbox", 0, True)
    assert report["endpoint"] == "/api/v1/payments/callbacks/sandbox/orders"
    checks = report["invariants"]
    assert isinstance(checks, dict)
    assert checks["exactly_once"] and checks["gifts"] == 300
    assert "orders_paid_equal_gifts" not in checks  # no payment orders: stateless tokens


def test_bench_http_refuses_an_unknown_provider() -> None:
    result = CliRunner().invoke(app, ["bench", "http", "--provider", "paypal"])
    assert result.exit_code == 2
