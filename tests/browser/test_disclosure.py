"""A visitor on a phone opens a project's public ledger from the project page, reads its
numbers and monthly chart, and downloads the open data; the organization's annual summary."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from shanju.core.clock import today_cn
from shanju.core.money import format_fen
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.disclosure.scenario import DONOR_NAME, build

pytestmark = pytest.mark.browser


def test_public_ledger_on_a_phone(
    live_server: LiveServer, page: Page, screenshot: Callable[[str], Path],
    js_errors: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    sc = build(live_server.database, monkeypatch, tmp_path)
    e = sc.expected

    page.goto(live_server(f"/projects/{sc.project_id}"))
    page.locator('a[data-link="disclosure"]').click()
    expect(page).to_have_url(live_server(f"/projects/{sc.project_id}/disclosure"))
    expect(page.locator("h1")).to_have_text(zh("Public ledger"))
    for flow in ("received", "matched", "refunded", "disbursed", "balance"):
        expect(page.locator(f'[data-flow="{flow}"]')).to_have_text(format_fen(e[f"{flow}_fen"]))
    expect(page.locator(".balance-check")).to_have_attribute("data-balanced", "true")
    chart = page.locator("svg.disclosure-chart")
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] > 300  # type: ignore[index]
    expect(chart.locator("rect.s-received")).to_have_count(1)
    expect(chart.locator("rect.s-disbursed")).to_have_count(1)
    expect(page.locator(f'#disbursements tr[data-ref="usage:{sc.usage_id}"]')).to_contain_text(
        "购买冬衣")
    expect(page.locator("#movements li[data-kind]").first).to_be_visible()
    assert DONOR_NAME not in page.content()
    check_fits_phone(page, js_errors)
    screenshot("disclosure-project")

    with page.expect_download() as info:
        page.locator('a[data-format="csv"]').click()
    csv_path = Path(info.value.path())
    data = csv_path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"amount_fen" in data
    assert DONOR_NAME.encode() not in data
    assert info.value.suggested_filename == f"shanju-project-{sc.project_id}.csv"

    with page.expect_download() as info:
        page.locator('a[data-format="xlsx"]').click()
    assert info.value.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(Path(info.value.path()).read_bytes()), read_only=True)
    assert "movements" in book.sheetnames
    book.close()

    with page.expect_download() as info:
        page.locator('a[data-format="json"]').click()
    body = json.loads(Path(info.value.path()).read_bytes())
    assert body["totals"]["balance_fen"] == e["balance_fen"]

    page.goto(live_server(f"/projects/{sc.project_id}/disclosure?lang=en"))
    expect(page.locator("h1")).to_have_text("Public ledger")
    check_fits_phone(page, js_errors)
    page.goto(live_server(f"/projects/{sc.project_id}/disclosure?lang=zh_CN"))

    # The organization's year, from its page.
    page.goto(live_server(f"/organizations/{sc.org_id}"))
    page.locator('a[data-link="annual"]').click()
    expect(page).to_have_url(live_server(f"/organizations/{sc.org_id}/annual/{today_cn().year}"))
    expect(page.locator(f'tr[data-project="{sc.project_id}"]')).to_be_visible()
    expect(page.locator('[data-stat="donors"]')).to_have_text("10")
    check_fits_phone(page, js_errors)
    screenshot("disclosure-annual")
    page.goto(live_server(f"/organizations/{sc.org_id}/annual/{today_cn().year - 1}"))
    expect(page.locator("#empty")).to_be_visible()
    check_fits_phone(page, js_errors)
