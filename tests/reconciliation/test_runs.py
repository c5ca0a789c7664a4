"""Runs of the daily reconciliation with a scripted gateway, on SQLite and PostgreSQL: bills
per merchant (Alipay's way), what a run could not check, mismatches cleared and reopened by
later runs, the scheduled job's claim, and the command's refusals.

The gateway here only hands out bills; crediting through the real intake is tested end to
end against WeChat Pay's emulator in ``test_wechatpay.py``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from shanju import cli
from shanju.app import create_app
from shanju.core.audit import AuditEntry
from shanju.core.clock import CHINA_TZ, today_cn
from shanju.core.config import Settings, get_settings
from shanju.core.db import Database
from shanju.core.errors import InvalidInput
from shanju.payments.gateway import BillKind, BillLine, GatewayError, MerchantRoute
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.payments.providers import Providers
from shanju.reconciliation import flows
from shanju.reconciliation.models import ReconciliationMismatch, ReconciliationRun
from tests.organizations.helpers import TOKEN, approved_route, new_org, run

PID_1, PID_2, PID_3 = "2088000000000001", "2088000000000002", "2088000000000003"
runner = CliRunner()


@pytest.fixture
def day() -> dt.date:
    """The day reconciled: a month before the test's today (the bills here are scripted,
    nothing asks a provider about "today")."""
    return today_cn() - dt.timedelta(days=30)


def noon(day: dt.date) -> dt.datetime:
    """When the day's payments were made: noon, China time."""
    return dt.datetime.combine(day, dt.time(12), CHINA_TZ).astimezone(dt.UTC)


class ScriptedGateway:
    """A gateway whose bills of ``day`` are what the test says; per merchant unless
    ``across``."""

    def __init__(self, name: str, day: dt.date, *, across: bool) -> None:
        self.name = name
        self.day = day
        self.channels = ()
        self.across = across
        self.lines: list[BillLine] = []
        self.failing: dict[str | None, GatewayError] = {}
        self.asked: list[tuple[dt.date, str | None]] = []

    def download_bill(self, *, day: dt.date, merchant: MerchantRoute | None = None
                      ) -> list[BillLine]:
        key = merchant.merchant_id if merchant else None
        self.asked.append((day, key))
        if merchant is None and not self.across:
            raise GatewayError("per merchant", code="payment_merchant_required")
        if merchant is not None:
            assert merchant.auth_token == TOKEN  # the route's token, opened
        if key in self.failing:
            raise self.failing[key]
        return [line for line in self.lines
                if line.happened_at.astimezone(CHINA_TZ).date() == day
                and (key is None or line.merchant_id == key)]

    def pay(self, order_id: str, merchant_id: str, amount_fen: int, txn: str) -> None:
        self.lines.append(BillLine(
            provider=self.name, kind=BillKind.PAYMENT, out_trade_no=order_id,
            provider_txn_id=txn, amount_fen=amount_fen, merchant_id=merchant_id,
            happened_at=noon(self.day), status="TRADE_SUCCESS"))


def paid_order(db: Database, day: dt.date, *, provider: str, merchant_id: str,
               amount_fen: int = 1000, txn: str | None = None) -> str:
    """A payment order credited on ``day`` (as the intake leaves it)."""
    order_id = "pi_" + secrets.token_hex(10)

    def go(s: Session) -> None:
        s.add(PaymentIntent(
            id=order_id, provider=provider, amount_fen=amount_fen, idempotency_scope="t",
            idempotency_key=order_id, request_hash="h", status=IntentStatus.SUCCEEDED,
            merchant_id=merchant_id, provider_txn_id=txn, succeeded_at=noon(day),
            created_at=noon(day) - dt.timedelta(minutes=1)))
    run(db, go)
    return order_id


def reconcile(db: Database, gateway: ScriptedGateway, **options: Any
              ) -> list[flows.RunResult]:
    return flows.reconcile_day(database=db, gateways={gateway.name: gateway}, day=gateway.day,
                               secret_key="test-secret", hash_payer=lambda p: p, **options)


def mismatches(db: Database) -> list[ReconciliationMismatch]:
    def go(s: Session) -> list[ReconciliationMismatch]:
        rows = list(s.scalars(select(ReconciliationMismatch).order_by(
            ReconciliationMismatch.id)))
        for row in rows:
            s.expunge(row)
        return rows
    return run(db, go)


def test_alipay_is_reconciled_merchant_by_merchant(db: Database, day: dt.date) -> None:
    for pid in (PID_1, PID_2):
        approved_route(db, new_org(db), provider="alipay", merchant_id=pid,
                       app_auth_token=TOKEN)
    gateway = ScriptedGateway("alipay", day, across=False)
    matched = paid_order(db, day, provider="alipay", merchant_id=PID_1, txn="T1")
    gateway.pay(matched, PID_1, 1000, "T1")
    missing = paid_order(db, day, provider="alipay", merchant_id=PID_1, txn="T2")
    unchecked = paid_order(db, day, provider="alipay", merchant_id=PID_2, txn="T3")
    paid_order(db, day, provider="alipay", merchant_id=PID_3, txn="T4")  # no route: no bill
    gateway.failing[PID_2] = GatewayError("busy", code="payment_provider_busy")

    [result] = reconcile(db, gateway)
    assert result.status.value == "incomplete"
    assert sorted(gateway.asked, key=str) == sorted(
        [(day, None), (day, PID_1), (day - dt.timedelta(days=1), PID_1), (day, PID_2)],
        key=str)
    assert result.report is not None and result.report.payments_matched == 1
    assert [(m.kind, m.out_trade_no) for m in mismatches(db)] == [("missing_theirs", missing)]
    assert unchecked not in {m.out_trade_no for m in mismatches(db)}  # its bill failed
    assert sorted((p["code"], p["merchant_id"]) for p in result.problems) == [
        ("bill_failed", PID_2), ("merchant_not_reconciled", PID_2),
        ("merchant_not_reconciled", PID_3)]
    assert result.open == 1


def test_a_mismatch_no_longer_found_is_cleared_and_found_again_reopened(
        db: Database, day: dt.date) -> None:
    gateway = ScriptedGateway("wechatpay", day, across=True)
    order = paid_order(db, day, provider="wechatpay", merchant_id="1900000109", txn="W1")
    [first] = reconcile(db, gateway)
    assert (first.status.value, first.open) == ("complete", 1)
    [row] = mismatches(db)
    assert (row.kind, row.status.value, row.first_run_id) == ("missing_theirs", "open",
                                                              first.run_id)

    gateway.pay(order, "1900000109", 1000, "W1")  # the provider's bill was late
    [second] = reconcile(db, gateway)
    assert (second.status.value, second.cleared, second.open) == ("complete", 1, 0)
    [row] = mismatches(db)
    assert (row.status.value, row.resolution) == ("resolved", "cleared")

    gateway.lines.clear()
    [third] = reconcile(db, gateway)
    assert third.open == 1
    [row] = mismatches(db)
    assert (row.status.value, row.resolution, row.first_run_id, row.last_run_id) == (
        "open", None, first.run_id, third.run_id)
    actions = run(db, lambda s: list(s.scalars(
        select(AuditEntry.action).where(AuditEntry.object_type == "reconciliation_mismatch")
        .order_by(AuditEntry.id))))
    assert actions == ["reconciliation.mismatch.resolved", "reconciliation.mismatch.reopened"]


def test_an_amount_merchant_and_duplicate_are_recorded_once_per_identity(
        db: Database, day: dt.date) -> None:
    gateway = ScriptedGateway("wechatpay", day, across=True)
    order = paid_order(db, day, provider="wechatpay", merchant_id="1900000109", txn="W1")
    gateway.pay(order, "1900000110", 999, "W1")
    gateway.pay(order, "1900000110", 999, "W1")
    for _ in range(2):
        [result] = reconcile(db, gateway)
        assert result.open == 3
    assert sorted((m.kind, m.occurrence) for m in mismatches(db)) == [
        ("amount_mismatch", 0), ("duplicate_line", 1), ("merchant_mismatch", 0)]


def test_the_scheduled_claim_is_given_back_only_when_trying_again_may_help(
        db: Database, day: dt.date) -> None:
    gateway = ScriptedGateway("wechatpay", day, across=True)
    gateway.failing[None] = GatewayError("not ready", code="payment_bill_not_ready")
    [failed] = reconcile(db, gateway, claim=True)
    assert (failed.status.value, failed.problems[0]["error"]) == (
        "failed", "payment_bill_not_ready")
    del gateway.failing[None]
    [done] = reconcile(db, gateway, claim=True)  # the claim was given back
    assert done.status.value == "complete"
    assert reconcile(db, gateway, claim=True) == []  # claimed by the run that completed
    assert [r.status.value for r in reconcile(db, gateway)] == ["complete"]  # by hand: runs

    other = ScriptedGateway("alipay", day, across=True)
    other.failing[None] = GatewayError("bad key", code="payment_provider_auth_failed")
    [refused] = reconcile(db, other, claim=True)
    assert refused.status.value == "failed"
    assert reconcile(db, other, claim=True) == []  # an operator must fix it first
    claims = run(db, lambda s: sorted(c for c in s.scalars(select(ReconciliationRun.claim))
                                      if c))
    assert claims == [f"alipay:{day}", f"wechatpay:{day}"]


def test_an_unknown_provider_is_refused(db: Database, day: dt.date) -> None:
    gateway = ScriptedGateway("wechatpay", day, across=True)
    with pytest.raises(InvalidInput) as refused:
        reconcile(db, gateway, provider="paypal")
    assert refused.value.code == "unknown_provider"


@pytest.fixture
def command(db: Database, day: dt.date, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Callable[..., Any]]:
    gateway = ScriptedGateway("wechatpay", day, across=True)
    monkeypatch.setattr(cli, "configured_gateways", lambda _settings: {"wechatpay": gateway})
    get_settings.cache_clear()
    yield lambda *args: runner.invoke(cli.app, [*args, "--database-url", db.url])
    get_settings.cache_clear()


def test_the_command_refuses_a_bad_day_or_provider(command: Callable[..., Any],
                                                   day: dt.date) -> None:
    for args in (["--date", "14/03/2026"], ["--date", str(today_cn() + dt.timedelta(days=2))],
                 ["--date", day.isoformat(), "--provider", "paypal"]):
        result = command("payments", "reconcile", *args)
        assert result.exit_code == 2, (args, result.output)
    assert command("payments", "reconcile", "--date", day.isoformat()).exit_code == 0


def test_the_commands_need_a_configured_provider(db: Database, day: dt.date,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "configured_gateways", lambda _settings: {})
    for args in (["payments", "reconcile", "--date", day.isoformat()], ["payments", "sweep"]):
        result = runner.invoke(cli.app, [*args, "--database-url", db.url])
        assert result.exit_code == 2 and "No real payment provider" in result.output


def test_the_app_runs_the_payments_job_only_with_a_real_provider(db: Database, day: dt.date,
                                                                 tmp_path: Path) -> None:
    def jobs() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "payments-job"]

    def settings(seconds: float) -> Settings:
        return Settings(environment="test", database_url=db.url, secret_key="test-secret",
                        upload_dir=tmp_path / "uploads", payments_job_seconds=seconds,
                        transparency_checkpoint_seconds=0,
                        transparency_key_file=tmp_path / "transparency.key")

    plain = create_app(settings(60), database=db)
    with TestClient(plain):
        assert jobs() == []  # no real provider configured
    app = create_app(settings(60), database=db)
    app.state.providers = Providers(
        gateways={"wechatpay": ScriptedGateway("wechatpay", day, across=True)})
    with TestClient(app):
        assert len(jobs()) == 1
    assert jobs() == []
    off = create_app(settings(0), database=db)
    off.state.providers = Providers(
        gateways={"wechatpay": ScriptedGateway("wechatpay", day, across=True)})
    with TestClient(off):
        assert jobs() == []
