"""Mistakes people make on a phone get a readable Chinese message next to the field, and what
they typed stays in the form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from shanju.core.errors import InvalidInput
from shanju.core.money import parse_yuan
from shanju.organizations import uscc
from tests.browser.conftest import LiveServer, confirm_signup
from tests.browser.helpers import check_fits_phone, fundraising_project, zh
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def message_of(call: Callable[[], object]) -> str:
    """The English message of the InvalidInput that ``call`` raises."""
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value.message


def test_a_new_user_who_signs_up_first_comes_back_and_sees_amount_errors(
    page: Page,
    live_server: LiveServer,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    project_id, _ = fundraising_project(live_server)
    page.goto(live_server(f"/projects/{project_id}"))

    # Signing up from the header on the project page comes back to the project.
    page.locator('header a[href^="/signup"]').click()
    page.fill('input[name="email"]', "li.lei@example.cn")
    page.fill('input[name="display_name"]', "李雷")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('form[action="/signup"] [type="submit"]').click()
    # "Check your email": the link in it creates the account and signs in.
    confirm_signup(page, live_server, "li.lei@example.cn")
    expect(page).to_have_url(live_server(f"/projects/{project_id}"))

    for typed, amount in [("0", "0"), ("1.234", "1.234")]:
        form = page.locator("form#donate")
        form.locator('input[name="custom_amount"]').fill(typed)
        form.locator('input[name="message"]').fill("一点心意")
        form.locator('[type="submit"]').click()

        # The donate page shows the message under the amount field and keeps the input.
        expect(page).to_have_url(live_server(f"/projects/{project_id}/donate"))
        expected = zh(message_of(lambda a=amount: parse_yuan(a, field="amount")))
        field = page.locator("form#donate .field", has=page.locator("#custom_amount"))
        expect(field.locator(".field-error")).to_have_text(expected)
        expect(page.locator("#custom_amount")).to_have_value(typed)
        expect(page.locator('input[name="message"]')).to_have_value("一点心意")
        check_fits_phone(page, js_errors)
        screenshot(f"error-amount-{typed}")

    # Nothing was given.
    page.locator('header a[href="/me/donations"]').click()
    expect(page.locator("#my-donations")).to_have_count(0)


def test_a_wrong_check_digit_in_the_credit_code_is_explained(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    staff = live_server.create_user(role=Role.ORG_STAFF, display_name="赵敏")
    sign_in(page, staff.email, PASSWORD)
    page.goto(live_server("/organizations/register"))
    good = uscc.make("53330000MJ000456")
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    form = page.locator('form[action="/organizations/register"]')
    form.locator('[name="name"]').fill("浙江春晖助残基金会")
    form.locator('[name="uscc"]').fill(wrong)
    form.locator('[name="org_type"]').select_option("foundation")
    form.locator('[name="registering_authority"]').fill("浙江省民政厅")
    form.locator('[name="province"]').select_option("浙江")
    form.locator('[name="contact_phone"]').fill("0571-88001234")
    form.locator('[type="submit"]').click()

    expected = zh(message_of(lambda: uscc.validate(wrong)))
    expect(page.locator("#uscc-error")).to_have_text(expected)
    expect(page.locator("#uscc")).to_have_attribute("aria-invalid", "true")
    # "Please correct the highlighted field": the field is visibly highlighted (red border).
    expect(page.locator("#uscc")).to_have_css("border-top-color", "rgb(248, 113, 113)")
    expect(page.locator("#uscc")).to_have_value(wrong)
    expect(page.locator("#name")).to_have_value("浙江春晖助残基金会")
    expect(page.locator("#contact_phone")).to_have_value("0571-88001234")
    check_fits_phone(page, js_errors)
    screenshot("error-uscc")

    # Still no organization: the console still leads to registration.
    page.locator('header a[href="/console"]').click()
    expect(page).to_have_url(live_server("/organizations/register"))
