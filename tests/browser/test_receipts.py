"""Receipts on a phone: a donor who just paid sees their receipt verified in the browser; a
receipt whose log rows were altered in the database fails the same check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.ledger import service as ledger
from shanju.transparency.leaves import LogDetail
from shanju.transparency.models import LogLeaf
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, donate_in_sandbox, fundraising_project, zh
from tests.factories import PASSWORD, make_campaign, make_campaign_gift, make_org, make_project

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_a_donor_who_just_paid_sees_the_receipt_verified(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    project_id, title = fundraising_project(live_server)
    donor = live_server.create_user(display_name="张小明")
    sign_in(page, donor.email, PASSWORD)

    # Give ¥50 through the donate form and the sandbox cashier, as any donor would.
    public_id = donate_in_sandbox(page, live_server, project_id)
    expect(page.locator("#donation-status [role=status]")).to_have_text(
        zh("Thank you! Your donation has been received."))

    # The thank-you page links to the receipt; it verifies in the browser.
    page.locator("a#receipt-link").click()
    expect(page).to_have_url(live_server(f"/transparency/receipts/donation:{public_id}"))
    verify = page.locator("#verify")
    expect(verify).to_have_attribute("data-verify-status", "ok")
    expect(page.locator("#verify-result")).to_have_text(
        zh("Verified in your browser: this gift is in the public log."))
    steps = page.locator("#verify-steps li")
    for step in ("format", "key", "signature", "tree", "leaf", "inclusion", "opening"):
        expect(page.locator(f'#verify-steps li[data-step="{step}"]').first).to_have_attribute(
            "data-ok", "true")
    assert steps.count() >= 7
    # What the log says, in plain words: the amount and the project, and no name.
    what = page.locator("#what")
    expect(what).to_contain_text("¥50.00")
    expect(what).to_contain_text(title)
    expect(page.locator("main")).not_to_contain_text("张小明")
    # The key the page checked against is shown for the donor to compare.
    key = page.locator("#verifier-key")
    expect(key).to_contain_text("/transparency+")
    published = page.request.get(live_server("/api/v1/transparency/public-key")).json()
    expect(key).to_have_text(published["verifier_key"])
    check_fits_phone(page, js_errors)
    screenshot("receipt-verified")

    # The download is the receipt JSON, with the opening (this is the donor).
    with page.expect_download() as info:
        page.locator("#download-receipt").click()
    download = info.value
    assert download.suggested_filename == f"shanju-receipt-donation-{public_id}.json"

    # "你的名字,我们记得" lists the gift with a link to the same receipt.
    page.goto(live_server("/remember"))
    row = page.locator(f'#my-receipts li[data-ref="donation:{public_id}"]')
    expect(row).to_contain_text("¥50.00")
    check_fits_phone(page, js_errors)
    screenshot("remember")
    row.locator('a[href^="/transparency/receipts/"]').click()
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok")
    check_fits_phone(page, js_errors)


def _post_gifts(live_server: LiveServer, donor_id: int) -> None:
    with live_server.database.transaction() as session:
        org = make_org(session, name="北京春苗公益基金会")
        project = make_project(session, org=org, title="山区孩子过冬棉衣")
        for n, amount in enumerate((8_800, 1_200, 3_000)):
            ledger.post(session, ledger.transfer(
                "donation.paid", source=ledger.donor_clearing("sandbox"),
                destination=ledger.project_fund(project.id), amount_fen=amount,
                detail=LogDetail(ref=f"donation:d_tamper{n}", donor=f"user:{donor_id}",
                                 public={"project": project.id, "organization": org.id})))


@pytest.mark.parametrize("altered", ["leaf data", "proof hash"])
def test_an_altered_log_row_fails_verification(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    altered: str,
) -> None:
    donor = live_server.create_user()
    _post_gifts(live_server, donor.id)
    sign_in(page, donor.email, PASSWORD)
    receipt = live_server("/transparency/receipts/donation:d_tamper0")
    page.goto(receipt)
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok")

    with live_server.database.transaction() as session:
        if altered == "leaf data":
            # The leaf claims ¥88 became ¥880 (its stored hash left as it was).
            row = session.query(LogLeaf).filter_by(ref="donation:d_tamper0").one()
            row.data = row.data.replace(b'"amount":8800', b'"amount":88000')
        else:
            # A sibling's hash, which the proof of leaf 0 is made of, is rewritten.
            row = session.query(LogLeaf).filter_by(ref="donation:d_tamper1").one()
            row.leaf_hash = bytes(32)

    page.goto(receipt)
    verify = page.locator("#verify")
    expect(verify).to_have_attribute("data-verify-status", "failed")
    expect(page.locator("#verify-result")).to_have_text(
        zh("Verification failed: this receipt does not match the signed log."))
    failing = "leaf" if altered == "leaf data" else "inclusion"
    expect(page.locator(f'#verify-steps li[data-step="{failing}"]')).to_have_attribute(
        "data-ok", "false")
    expect(page.locator('#verify-steps li[data-step="signature"]')).to_have_attribute(
        "data-ok", "true")
    if altered == "leaf data":
        expect(page.locator('#verify-steps li[data-step="inclusion"]')).to_have_attribute(
            "data-ok", "false")
    check_fits_phone(page, js_errors)
    screenshot(f"receipt-failed-{altered.replace(' ', '-')}")


def test_an_unknown_receipt_is_a_readable_404(page: Page, live_server: LiveServer,
                                              js_errors: list[str]) -> None:
    response = page.goto(live_server("/transparency/receipts/donation:d_nothing"))
    assert response is not None and response.status == 404
    expect(page.locator('[data-code="receipt_not_found"]')).to_be_visible()
    check_fits_phone(page, js_errors)


def test_a_gift_not_yet_in_the_log_shows_being_recorded_then_verifies(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    donor = live_server.create_user()
    with live_server.database.transaction() as session:
        org = make_org(session, name="北京春苗公益基金会")
        project = make_project(session, org=org, title="山区孩子过冬棉衣")
        campaign = make_campaign(session, projects=[project])
        gift = make_campaign_gift(session, campaign=campaign, project=project,
                                  donor_id=donor.id, amount_fen=66_00)
        order_id, project_id, org_id = gift.order_id, project.id, org.id
    sign_in(page, donor.email, PASSWORD)

    # The gift page links to its receipt, which is not written yet: "being recorded".
    page.goto(live_server(f"/campaigns/gifts/{order_id}"))
    page.locator("a#receipt-link").click()
    expect(page).to_have_url(live_server(f"/transparency/receipts/gift:{order_id}"))
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "pending")
    expect(page.locator("#verify [role=status]")).to_have_text(zh(
        "Your gift is being recorded in the public log. This page refreshes by itself in a few "
        "seconds."))
    check_fits_phone(page, js_errors)
    screenshot("receipt-being-recorded")

    # The engine commits the gift's entry; the page refreshes itself and verifies.
    with live_server.database.transaction() as session:
        clearing, fund = ledger.donor_clearing("sandbox"), ledger.project_fund(project_id)
        ledger.post(session, ledger.transfer(
            "campaign.gift", source=clearing, destination=fund, amount_fen=66_00,
            detail=LogDetail(ref=f"gift:{order_id}", donor=f"user:{donor.id}",
                             public={"project": project_id, "organization": org_id})))
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok",
                                                      timeout=15_000)
    expect(page.locator("#what")).to_contain_text("¥66.00")
    expect(page.locator('#verify-steps li[data-step="opening"]')).to_have_attribute(
        "data-ok", "true")

    # Someone else with the code sees the same verified receipt, without the opening.
    page.context.clear_cookies()
    page.reload()
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok")
    expect(page.locator('#verify-steps li[data-step="opening"]')).to_have_attribute(
        "data-ok", "skipped")
    expect(page.locator("#opening-note")).to_have_count(0)
