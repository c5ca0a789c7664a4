"""Summit registration on phones: a verified organization's staff registers its delegation and
gets the e-ticket at once; an unverified organization applies, an organizer approves it on
their own phone, and the applicant then sees the ticket's QR code; the pages fit the phone."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.accounts.models import Role
from shanju.organizations.models import OrgStatus
from tests.browser.conftest import PHONE, LiveServer, another_person
from tests.browser.helpers import check_fits_phone
from tests.factories import make_org
from tests.summit.reg_helpers import SUMMIT_TITLE, make_summit

pytestmark = pytest.mark.browser


@pytest.fixture
def organizer_page(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    """A second phone (its own cookies) for the summit's organizer."""
    with another_person(browser, js_errors, "organizer") as page:
        yield page


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot of the organizer's page (the ``screenshot`` fixture shoots the other)."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("SHANJU_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_delegations_register_apply_and_get_their_tickets(
    page: Page, organizer_page: Page, live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None], screenshot: Callable[[str], Path],
    js_errors: list[str], tmp_path: Path,
) -> None:
    with live_server.database.transaction() as session:
        slug = make_summit(session, capacity=100, delegation_size=5).slug
        verified = make_org(session, name="北京春苗公益基金会").id
        unverified = make_org(session, name="云南山花公益协会", status=OrgStatus.PENDING).id
    verified_staff = live_server.create_user(role=Role.ORG_STAFF, organization_id=verified,
                                             display_name="王小明")
    applicant = live_server.create_user(role=Role.ORG_STAFF, organization_id=unverified,
                                        display_name="赵六")
    organizer = live_server.create_user(role=Role.REVIEWER, display_name="峰会组委会")

    # A verified organization's staff: registered at once, straight to the e-ticket.
    sign_in(page, verified_staff.email)
    page.goto(live_server(f"/summits/{slug}/register"))
    expect(page.locator("#delegation")).to_contain_text("北京春苗公益基金会")
    page.select_option("#seats", "3")
    page.locator('button[name="choice"][value="delegation"]').click()
    expect(page).to_have_url(re.compile(rf"/summits/{slug}/ticket$"))
    ticket = page.locator(".ticket")
    expect(ticket).to_contain_text(SUMMIT_TITLE)
    expect(ticket).to_contain_text("王**")
    expect(ticket).not_to_contain_text("王小明")
    expect(ticket.locator(".ticket-qr svg")).to_be_visible()
    check_fits_phone(page, js_errors)

    # An unverified organization applies ...
    page.context.clear_cookies()
    sign_in(page, applicant.email)
    page.goto(live_server(f"/summits/{slug}/register"))
    page.fill("#note", "我们在山区开展儿童阅读项目,希望参会交流。")
    page.locator('button[name="choice"][value="delegation"]').click()
    expect(page.locator('[data-done="applied"]')).to_be_visible()
    expect(page.locator(".reg-mine")).to_have_attribute("data-status", "pending")
    check_fits_phone(page, js_errors)
    screenshot("summit-register-applied")

    # ... the organizer approves it on their phone ...
    sign_in(organizer_page, organizer.email)
    organizer_page.goto(live_server(f"/summits/{slug}/registrations"))
    card = organizer_page.locator(".application", has_text="云南山花公益协会")
    expect(card).to_contain_text("我们在山区开展儿童阅读项目")
    shot(organizer_page, tmp_path, "summit-organizer-queue")
    check_fits_phone(organizer_page, js_errors)
    card.locator('button[name="decision"][value="approve"]').click()
    expect(organizer_page.locator(".flash")).to_be_visible()
    expect(organizer_page.locator('[data-count="pending_delegations"]')).to_have_text("0")
    expect(organizer_page.locator('[data-count="delegates"]')).to_have_text("2")

    # ... and the applicant sees the ticket's QR code.
    page.goto(live_server(f"/summits/{slug}/ticket"))
    expect(page.locator(".ticket")).to_have_attribute("data-status", "approved")
    qr = page.locator(".ticket-qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 150 and box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    expect(page.locator(".ticket-holder")).to_contain_text("赵*")
    check_fits_phone(page, js_errors)
    screenshot("summit-ticket")

    # The organizer checks the ticket in with its code.
    page.locator(".ticket-code summary").click()
    code = page.locator(".ticket-code code").inner_text().strip()
    organizer_page.goto(live_server(f"/summits/{slug}/checkin"))
    organizer_page.fill("#token", code)
    organizer_page.locator('form[action$="/checkin"] [type="submit"]').click()
    expect(organizer_page.locator(".checkin-name")).to_contain_text("赵六")
    expect(organizer_page.locator(".checkin-name")).to_contain_text("云南山花公益协会")
    check_fits_phone(organizer_page, js_errors)
    shot(organizer_page, tmp_path, "summit-checkin")
