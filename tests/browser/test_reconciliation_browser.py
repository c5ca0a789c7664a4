"""The reconciliation's findings on a reviewer's phone (390 px): from the console to the open
mismatches, both sides of one compared, resolved with a note; the run's page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from shanju.core.clock import CHINA_TZ, today_cn
from shanju.payments.gateway import BillKind, BillLine
from shanju.payments.reconcile import (
    Action,
    Mismatch,
    MismatchKind,
    OurPayment,
    OurPaymentStatus,
)
from shanju.reconciliation import service
from shanju.reconciliation.models import ReconciliationMismatch, RunStatus, RunTrigger
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def _findings(live_server: LiveServer) -> tuple[int, int]:
    """A complete run of a past day, a month before the test's today, that found an amount
    and a merchant mismatch (one order)."""
    day = today_cn() - dt.timedelta(days=30)
    paid = dt.datetime.combine(day, dt.time(23, 59, 58), CHINA_TZ).astimezone(dt.UTC)
    order = "pi_browser0000000000001"
    line = BillLine(provider="wechatpay", kind=BillKind.PAYMENT, out_trade_no=order,
                    provider_txn_id="4200000001202603140000000001", amount_fen=10000,
                    merchant_id="1900000110", happened_at=paid, status="SUCCESS")
    ours = OurPayment(provider="wechatpay", out_trade_no=order, amount_fen=9999,
                      merchant_id="1900000109", status=OurPaymentStatus.PAID,
                      provider_txn_id=line.provider_txn_id, paid_at=paid)
    found = [Mismatch(kind, Action.REVIEW, "wechatpay", order, line=line, payment=ours)
             for kind in (MismatchKind.AMOUNT_MISMATCH, MismatchKind.MERCHANT_MISMATCH)]
    with live_server.database.transaction() as session:
        run = service.do_start_run(session=session, provider="wechatpay", day=day,
                                   trigger=RunTrigger.COMMAND)
        assert run is not None
        rows = [service.do_record_mismatch(session=session, run=run, mismatch=m)
                for m in found]
        service.do_finish_run(session=session, run=run, report=None,
                              status=RunStatus.COMPLETE, problems=[])
        return run.id, rows[0].id


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_a_reviewer_resolves_a_mismatch_on_a_phone(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    csp_violations: list[str],
) -> None:
    run_id, amount_id = _findings(live_server)
    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="平台审核员")
    sign_in(page, reviewer.email, PASSWORD)
    page.goto(live_server("/review"))
    expect(page.locator("#open-mismatches .count")).to_have_text("2")
    page.locator("#open-mismatches").click()
    expect(page).to_have_url(live_server("/review/reconciliation"))
    card = page.locator(f'[data-mismatch-id="{amount_id}"]')
    expect(card.locator(".badge")).to_have_text(zh("Amounts differ"))
    expect(card.locator(".amount")).to_have_text(["¥100.00", "¥99.99"])
    check_fits_phone(page, js_errors)
    screenshot("reconciliation-01-open")

    # The two sides stack on a phone: each takes the card's width.
    sides = card.locator(".side")
    first, second = sides.nth(0).bounding_box(), sides.nth(1).bounding_box()
    assert first is not None and second is not None
    assert second["y"] > first["y"] and first["width"] >= 300

    # Resolving without a note is refused in place (the browser's own check is bypassed).
    card.locator("summary").click()
    note = card.locator("textarea")
    expect(note).to_be_visible()
    note.evaluate("el => el.removeAttribute('required')")
    card.locator('button[data-action="resolve"]').click()
    card = page.locator(f'[data-mismatch-id="{amount_id}"]')
    expect(card.locator(".field-error")).to_have_attribute("data-code", "note_required")
    expect(card.locator("textarea")).to_have_attribute("aria-invalid", "true")
    check_fits_phone(page, js_errors)
    screenshot("reconciliation-02-no-note")

    card.locator("textarea").fill("我方记录被误改，已按微信支付账单核实：实收 100 元。")
    card.locator('button[data-action="resolve"]').click()
    expect(page).to_have_url(live_server(f"/review/reconciliation?resolved={amount_id}"))
    expect(page.locator(".flash")).to_be_visible()
    expect(page.locator("#open-total .count")).to_have_text("1")
    expect(page.locator(f'[data-mismatch-id="{amount_id}"]')).to_have_count(0)
    check_fits_phone(page, js_errors)

    page.locator('.tabs a[href$="status=resolved"]').click()
    resolved = page.locator(f'[data-mismatch-id="{amount_id}"]')
    expect(resolved).to_have_attribute("data-status", "resolved")
    expect(resolved.locator(".note")).to_contain_text("实收 100 元")
    check_fits_phone(page, js_errors)
    screenshot("reconciliation-03-resolved")

    page.goto(live_server(f"/review/reconciliation/runs/{run_id}"))
    expect(page.locator("#run-status")).to_have_attribute("data-run-status", "complete")
    expect(page.locator(".mismatch")).to_have_count(2)
    check_fits_phone(page, js_errors)
    assert csp_violations == []
    with live_server.database.transaction(write=False) as session:
        row = session.get_one(ReconciliationMismatch, amount_id)
        assert (row.status.value, row.resolved_by_id) == ("resolved", reviewer.id)
