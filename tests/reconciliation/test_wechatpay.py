"""The daily reconciliation against WeChat Pay's emulator, end to end, on SQLite and PostgreSQL.

The platform is served by uvicorn on the real database with the emulator beside it; the real
``wechatpayv3`` gateway downloads the emulator's signed bill. A payment whose callback was
dropped is credited by the reconciliation through the one exactly-once intake, once; what
it cannot act on stays open for reviewers (the command exits 1) until a reviewer resolves it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from shanju import cli
from shanju.accounts.models import Role
from shanju.core.audit import AuditEntry
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.payments.emulators.wechatpay import WeChatPayEmulator
from shanju.payments.gateway import Gateway
from shanju.payments.models import PaymentIntent, ProviderEvent
from shanju.payments.reconcile import DAY_WINDOW, china_day, owner_day
from shanju.reconciliation import flows
from shanju.reconciliation.job import PaymentsJob
from shanju.reconciliation.models import ReconciliationMismatch, ReconciliationRun
from tests.gifts.pipeline import (
    Platform,
    campaign_gifts,
    enrol_in_giving_day,
    serve_wechatpay,
)
from tests.organizations.helpers import api_token, csrf, new_staff, new_user, sign_in

SUB = "1900000109"
OPENID = "oPayerOfTheReconcileTest000001"
SECRET = "test-secret"  # the platform's secret key in tests/gifts/pipeline.py

runner = CliRunner()


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's keys, made by the module's first setup() and kept for the others."""
    return tmp_path_factory.mktemp("wechatpay-keys")


@dataclass
class World:
    platform: Platform
    emulator: WeChatPayEmulator
    pay_url: str = ""

    @property
    def gateways(self) -> dict[str, Gateway]:
        return dict(self.platform.app.state.providers.gateways)

    def checkout(self, amount_fen: int = 1234, key: str = "k1", **extra: object) -> str:
        answer = self.platform.give("wechat_h5", amount_fen=amount_fen, key=key, **extra)
        assert answer.status_code == 201, answer.text
        self.pay_url = answer.json()["pay"]["url"]
        order_id: str = answer.json()["order_id"]
        return order_id

    def phone_pays(self) -> None:
        """The donor presses 确认支付 on the emulator's H5 page."""
        page = requests.get(self.pay_url, timeout=10)
        hidden = re.search(r'name="redirect_url" value="([^"]*)"', page.text)
        assert hidden is not None
        paid = requests.post(self.pay_url, data={
            "redirect_url": hidden.group(1).replace("&amp;", "&"), "openid": OPENID},
            allow_redirects=False, timeout=10)
        assert paid.status_code == 303
        self.emulator.outbox.wait_idle()

    def paid_day(self, order_id: str) -> dt.date:
        """The China day whose bill lists the payment (the provider's success time)."""
        success = self.emulator.find_order(order_id).success_time
        assert success is not None
        return china_day(success)

    def reconcile(self, day: dt.date) -> flows.RunResult:
        [result] = flows.reconcile_day(
            database=self.platform.db, gateways=self.gateways, day=day, secret_key=SECRET,
            hash_payer=self.platform.app.state.orders.payer_hash)
        return result

    def command(self, *args: str) -> Any:
        return runner.invoke(cli.app, [*args, "--database-url", self.platform.db.url])

    @staticmethod
    def report(ran: Any) -> Any:
        """The command's JSON report: its last line of standard output (in this process
        the job's loggers were made before the command sent its log lines to stderr)."""
        return json.loads(ran.stdout.strip().splitlines()[-1])

    def mismatches(self) -> list[ReconciliationMismatch]:
        def go(s: Any) -> list[ReconciliationMismatch]:
            rows = list(s.scalars(select(ReconciliationMismatch)
                                  .order_by(ReconciliationMismatch.id)))
            for row in rows:
                s.expunge(row)
            return rows
        result: list[ReconciliationMismatch] = self.platform.read(go)
        return result

    def count(self, model: Any) -> int:
        return int(self.platform.read(
            lambda s: s.scalar(select(func.count()).select_from(model))))

    def client(self) -> TestClient:
        return TestClient(self.platform.app, base_url="http://testserver")


@pytest.fixture
def world(db: Database, tmp_path: Path, key_dir: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # The command reads the environment's settings and the installation's gateways.
    monkeypatch.setenv("SHANJU_SECRET_KEY", SECRET)
    get_settings.cache_clear()
    with serve_wechatpay(db, tmp_path, key_dir, sub_merchants={SUB: "绿水青山公益基金会"},
                         merchant_id=SUB) as (platform, emulator):
        w = World(platform, emulator)
        monkeypatch.setattr(cli, "configured_gateways", lambda _settings: w.gateways)
        yield w
    get_settings.cache_clear()


def test_a_payment_whose_callback_was_dropped_is_credited_once(world: World) -> None:
    world.emulator.set_faults(callbacks={"drop": True})
    order_id = world.checkout()
    world.phone_pays()
    assert world.platform.intent(order_id).status.value == "requires_payment"
    day = world.paid_day(order_id)

    result = world.reconcile(day)
    assert (result.status.value, result.credited, result.open) == ("complete", 1, 0)
    assert [(f["kind"], f["resolution"], f["attempt"]) for f in result.findings] == [
        ("status_mismatch", "credited", "credited")]
    assert world.platform.credits(order_id) == 1
    intent = world.platform.intent(order_id)
    assert intent.status.value == "succeeded" and intent.provider_txn_id
    # The provider's payment time, as the bill states it.
    assert intent.succeeded_at == world.emulator.find_order(order_id).success_time.replace(
        microsecond=0)
    assert world.platform.donation(order_id).status.value == "paid"
    world.platform.books_are_sound()
    [mismatch] = world.mismatches()
    assert (mismatch.status.value, mismatch.resolution, mismatch.out_trade_no) == (
        "resolved", "credited", order_id)
    assert world.platform.outcomes(order_id) == ["credited"]

    # The next run of the day changes nothing: the order is paid and matches its line.
    events = world.count(ProviderEvent)
    again = world.reconcile(day)
    assert (again.status.value, again.credited, again.open) == ("complete", 0, 0)
    assert again.report is not None and again.report.mismatches == ()
    assert (again.report.payments_matched, again.report.payments_matched_fen) == (1, 1234)
    assert world.platform.credits(order_id) == 1
    assert world.count(ProviderEvent) == events
    assert len(world.mismatches()) == 1
    # Neither does the command, which exits 0: nothing is open.
    ran = world.command("payments", "reconcile", "--date", day.isoformat(), "--json")
    assert ran.exit_code == 0, ran.output
    report = world.report(ran)
    assert (report["ok"], report["open"], report["runs"][0]["payments_matched"]) == (True, 0, 1)
    assert world.platform.credits(order_id) == 1
    # The late callback, when it finally comes, is a duplicate of nothing: already applied.
    assert world.count(ReconciliationRun) == 3


def test_what_it_cannot_act_on_stays_open_until_a_reviewer_resolves_it(world: World) -> None:
    # A paid order whose amount on our side differs from the bill's (our record altered).
    altered = world.checkout(amount_fen=1000, key="a")
    world.phone_pays()
    world.platform.read(lambda s: s.execute(
        update(PaymentIntent).where(PaymentIntent.id == altered).values(amount_fen=999)))
    # A validly signed notification for an order nobody paid: credited here, on no bill.
    phantom = world.checkout(amount_fen=500, key="b")
    world.emulator.notify(phantom)
    world.emulator.outbox.wait_idle()
    assert world.platform.credits(phantom) == 1
    phantom_day = owner_day(world.platform.intent(phantom).succeeded_at or dt.datetime.now(dt.UTC),
                            DAY_WINDOW)
    days = sorted({world.paid_day(altered), phantom_day})

    ran = [world.command("payments", "reconcile", "--date", d.isoformat(), "--json")
           for d in days]
    assert all(r.exit_code == 1 for r in ran), [r.output for r in ran]
    reports = [world.report(r) for r in ran]
    assert not any(report["ok"] for report in reports)
    open_kinds = {(m.kind, m.out_trade_no) for m in world.mismatches()
                  if m.status.value == "open"}
    assert open_kinds == {("amount_mismatch", altered), ("missing_theirs", phantom)}
    world.platform.books_are_sound()
    # Nothing was credited or changed by the runs.
    assert world.platform.credits(altered) == 1 and world.platform.credits(phantom) == 1
    by_order = {m.out_trade_no: m for m in world.mismatches()}
    amount = by_order[altered]
    assert amount.theirs is not None and amount.ours is not None
    assert (amount.theirs["amount_fen"], amount.ours["amount_fen"]) == (1000, 999)

    # The reviewers' page lists them; others may not see it.
    client = world.client()
    db = world.platform.db
    assert client.get("/review/reconciliation", follow_redirects=False).status_code == 303
    for user_id in (new_user(db), new_staff(db, world.platform.org_id)):
        sign_in(client, db, user_id)
        assert client.get("/review/reconciliation").status_code == 403
        assert client.get(f"/review/reconciliation/runs/{reports[0]['runs'][0]['run_id']}"
                          ).status_code == 403
        listed = client.get("/api/v1/reconciliation/mismatches",
                            headers=api_token(db, user_id))
        assert listed.status_code == 403 and listed.json()["error"]["code"] == "reviewer_only"
        refused = client.post(f"/api/v1/reconciliation/mismatches/{amount.id}/resolve",
                              json={"note": "看过了"}, headers=api_token(db, user_id))
        assert refused.status_code == 403
    reviewer = new_user(db, Role.REVIEWER)
    sign_in(client, db, reviewer)
    index = client.get("/review")
    assert 'id="open-mismatches"' in index.text
    page = client.get("/review/reconciliation")
    assert page.status_code == 200
    assert f'data-mismatch-id="{amount.id}"' in page.text
    assert f'data-mismatch-id="{by_order[phantom].id}"' in page.text
    assert "金额不一致" in page.text  # zh-CN by default
    assert "Amounts differ" in client.get("/review/reconciliation?lang=en").text
    run_page = client.get(f"/review/reconciliation/runs/{reports[0]['runs'][0]['run_id']}")
    assert run_page.status_code == 200 and 'data-run-status="complete"' in run_page.text
    assert client.get("/review/reconciliation/runs/999999").status_code == 404

    # Resolving needs a note; on the page, then through the API.
    empty = client.post(f"/review/reconciliation/mismatches/{amount.id}/resolve",
                        data={"csrf_token": csrf(client), "note": "  "})
    assert empty.status_code == 422 and 'data-code="note_required"' in empty.text
    no_csrf = client.post(f"/review/reconciliation/mismatches/{amount.id}/resolve",
                          data={"note": "x"})
    assert no_csrf.status_code == 403
    done = client.post(f"/review/reconciliation/mismatches/{amount.id}/resolve",
                       data={"csrf_token": csrf(client), "note": "记录被改，已按账单更正"},
                       follow_redirects=False)
    assert done.status_code == 303
    headers = api_token(db, reviewer)
    api = client.post(f"/api/v1/reconciliation/mismatches/{by_order[phantom].id}/resolve",
                      json={"note": "微信支付确认未收款，已向捐赠人核实"}, headers=headers)
    assert api.status_code == 200, api.text
    assert (api.json()["status"], api.json()["resolution"]) == ("resolved", "reviewed")
    twice = client.post(f"/api/v1/reconciliation/mismatches/{amount.id}/resolve",
                        json={"note": "again"}, headers=headers)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "mismatch_resolved"
    assert client.get("/api/v1/reconciliation/mismatches", headers=headers).json()["total"] == 0
    runs = client.get("/api/v1/reconciliation/runs", headers=headers).json()
    assert runs["total"] == len(days) and all(r["open"] == 0 for r in runs["items"])

    resolved = {m.out_trade_no: m for m in world.mismatches()}
    assert resolved[altered].note == "记录被改，已按账单更正"
    assert resolved[altered].resolved_by_id == reviewer
    audited = world.platform.read(lambda s: s.scalars(
        select(AuditEntry.actor_id).where(AuditEntry.action == "reconciliation.mismatch.resolved")
    ).all())
    assert sorted(audited) == [reviewer, reviewer]

    # Resolved, they stay resolved when the day is reconciled again: the command exits 0.
    for d in days:
        again = world.command("payments", "reconcile", "--date", d.isoformat())
        assert again.exit_code == 0, again.output
    assert {m.status.value for m in world.mismatches()} == {"resolved"}


def test_the_sweep_asks_about_open_orders(world: World) -> None:
    world.emulator.set_faults(callbacks={"drop": True})
    order_id = world.checkout()
    world.phone_pays()
    waiting = world.command("payments", "sweep", "--older-than", "30", "--json")
    assert waiting.exit_code == 0, waiting.output
    assert world.report(waiting)["orders"] == 0  # too recent to ask about
    swept = world.command("payments", "sweep", "--older-than", "0", "--json")
    assert swept.exit_code == 0, swept.output
    assert world.report(swept) | {"errors": []} == {
        "orders": 1, "credited": 1, "closed": 0, "still_open": 0, "refunds": 0,
        "refunds_settled": 0, "skipped": 0, "errors": []}
    world.platform.books_are_sound()
    assert world.platform.credits(order_id) == 1
    again = world.command("payments", "sweep", "--older-than", "0", "--json")
    assert world.report(again)["orders"] == 0
    assert world.platform.credits(order_id) == 1


def test_a_giving_day_gift_is_written_once_by_reconciliation(world: World) -> None:
    campaign_id = enrol_in_giving_day(world.platform)
    world.emulator.set_faults(callbacks={"drop": True})
    order_id = world.checkout(amount_fen=2000, campaign_id=campaign_id)
    world.phone_pays()
    assert campaign_gifts(world.platform, order_id) == 0
    result = world.reconcile(world.paid_day(order_id))
    assert (result.status.value, result.credited, result.open) == ("complete", 1, 0)
    assert campaign_gifts(world.platform, order_id) == 1
    assert world.platform.intent(order_id).status.value == "succeeded"
    world.platform.books_are_sound()
    again = world.reconcile(world.paid_day(order_id))
    assert (again.credited, again.open) == (0, 0)
    assert again.report is not None and again.report.mismatches == ()
    assert campaign_gifts(world.platform, order_id) == 1


def test_the_scheduled_job_sweeps_and_reconciles_yesterday_once(world: World) -> None:
    world.emulator.set_faults(callbacks={"drop": True})
    order_id = world.checkout()
    world.phone_pays()
    day = world.paid_day(order_id)
    # The job's clock: the next day, in the afternoon (China time).
    afternoon = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(15),
                                    dt.timezone(dt.timedelta(hours=8)))
    app = world.platform.app
    job = PaymentsJob(database=world.platform.db, gateways=world.gateways, secret_key=SECRET,
                      hash_payer=app.state.orders.payer_hash, interval=300,
                      sweep_after=dt.timedelta(minutes=10), reconcile_after_hour=10,
                      clock=lambda: afternoon)
    first = job.run_once()
    assert (first.sweep.orders, first.sweep.credited) == (1, 1)  # the sweep found it first
    assert [(r.day, r.status.value, r.credited, r.open) for r in first.runs] == [
        (day, "complete", 0, 0)]
    assert job.run_once().runs == []  # claimed: the day is reconciled once
    assert world.count(ReconciliationRun) == 1
    assert world.platform.credits(order_id) == 1
    # Before the hour, yesterday is not reconciled (its bill may not be ready).
    morning = PaymentsJob(database=world.platform.db, gateways=world.gateways,
                          secret_key=SECRET, hash_payer=app.state.orders.payer_hash,
                          interval=300, sweep_after=dt.timedelta(minutes=10),
                          reconcile_after_hour=10,
                          clock=lambda: afternoon + dt.timedelta(days=1, hours=-8))
    assert morning.run_once().runs == []
