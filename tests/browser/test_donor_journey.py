"""A new donor on a phone: from a project page through sign-up and the sandbox cashier to the
gift shown on the project page and in "my donations"."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, confirm_signup
from tests.browser.helpers import check_fits_phone, fundraising_project, zh
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_new_donor_signs_up_gives_and_sees_the_gift(
    page: Page,
    live_server: LiveServer,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    project_id, title = fundraising_project(live_server)
    project_path = f"/projects/{project_id}"

    # The home page features the project; its "give" button opens the project page's form.
    page.goto(live_server("/"))
    check_fits_phone(page, js_errors)
    screenshot("01-home")
    page.locator(f'a[href="{project_path}#give"]').click()
    expect(page).to_have_url(live_server(f"{project_path}#give"))
    expect(page.locator("h1")).to_have_text(title)
    # The form is in view, not hidden under the sticky header.
    header = page.locator("header.site-header").bounding_box()
    give = page.locator("#give").bounding_box()
    assert header is not None and give is not None
    assert give["y"] >= header["y"] + header["height"] - 1
    progress = page.locator('[role="progressbar"]').first
    expect(progress).to_have_attribute("aria-valuenow", "0")
    expect(page.locator("#donors .donor-list")).to_have_count(0)
    check_fits_phone(page, js_errors)
    screenshot("02-project")

    # Not signed in yet: choose ¥100, write a message and tap donate.
    form = page.locator("form#donate")
    form.locator('input[name="amount"][value="100"]').check()
    form.locator('input[name="message"]').fill("孩子们加油!")
    form.locator('[type="submit"]').click()

    # Sent to sign in; a new user follows the sign-up link.
    expect(page).to_have_url(re.compile(r"/login\?next="))
    check_fits_phone(page, js_errors)
    screenshot("03-login")
    page.locator('main a[href^="/signup?next="]').click()
    expect(page).to_have_url(re.compile(r"/signup\?next="))
    page.fill('input[name="email"]', "zhang.xiaoming@example.cn")
    page.fill('input[name="display_name"]', "张小明")
    page.fill('input[name="password"]', PASSWORD)
    page.select_option('select[name="province"]', "四川")
    check_fits_phone(page, js_errors)
    screenshot("04-signup")
    page.locator('form[action="/signup"] [type="submit"]').click()
    # "Check your email": the link in it creates the account and signs in.
    confirm_signup(page, live_server, "zhang.xiaoming@example.cn")

    # Back on the donate form of the same project, with the chosen amount and message kept.
    expect(page).to_have_url(re.compile(rf"{project_path}/donate"))
    form = page.locator("form#donate")
    expect(form.locator('input[name="amount"][value="100"]')).to_be_checked()
    expect(form.locator('input[name="message"]')).to_have_value("孩子们加油!")
    expect(form.locator('input[name="donor_name"]')).to_have_value("张小明")
    check_fits_phone(page, js_errors)
    screenshot("05-donate-form")
    form.locator('[type="submit"]').click()

    # The sandbox cashier shows the amount; pay.
    expect(page).to_have_url(re.compile(r"/pay/sandbox/"))
    expect(page.locator(".amount")).to_have_text("¥100.00")
    check_fits_phone(page, js_errors)
    screenshot("06-cashier")
    page.locator('button[name="action"][value="pay"]').click()

    # Thank-you page.
    expect(page).to_have_url(re.compile(r"/donations/"))
    status = page.locator("#donation-status [role=status]")
    expect(status).to_have_text(zh("Thank you! Your donation has been received."))
    expect(page.locator("h1")).to_have_text("¥100.00")
    check_fits_phone(page, js_errors)
    screenshot("07-thanks")

    # The project page shows the gift: masked name, amount, message, progress moved to 10%.
    page.locator(f'a[href="{project_path}"]').first.click()
    expect(page).to_have_url(live_server(project_path))
    gift = page.locator("#donors .donor-list li").first
    expect(gift).to_contain_text("张**")
    expect(gift).to_contain_text("¥100.00")
    expect(gift).to_contain_text("孩子们加油!")
    expect(page.locator("#donors")).not_to_contain_text("张小明")
    expect(page.locator('[role="progressbar"]').first).to_have_attribute("aria-valuenow", "10")
    check_fits_phone(page, js_errors)
    screenshot("08-project-after")

    # "My donations" lists it with its amount and status.
    page.locator('header a[href="/me/donations"]').click()
    expect(page).to_have_url(live_server("/me/donations"))
    row = page.locator("#my-donations li").first
    expect(row).to_contain_text(title)
    expect(row).to_contain_text("¥100.00")
    expect(row.locator(".badge")).to_have_text(zh("Paid"))
    # The rows keep the card's padding (they do not touch its edges).
    card, item = page.locator("#my-donations").bounding_box(), row.bounding_box()
    assert card is not None and item is not None
    assert item["x"] >= card["x"] + 8
    assert item["x"] + item["width"] <= card["x"] + card["width"] - 8
    check_fits_phone(page, js_errors)
    screenshot("09-my-donations")
