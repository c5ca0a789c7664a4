"""What the browser journeys share: test data in the live server's database and page checks."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from shanju.core.i18n import gettext
from tests.browser.conftest import LiveServer, horizontal_overflow
from tests.factories import make_org, make_project


def zh(message: str) -> str:
    """What a zh-CN visitor sees for ``message`` (robust to changes of the translations)."""
    return gettext("zh_CN", message)


def fundraising_project(live_server: LiveServer) -> tuple[int, str]:
    """A fundraising project with a ¥1,000 goal in the server's database: (id, title)."""
    with live_server.database.transaction() as session:
        org = make_org(session, name="北京春苗公益基金会")
        project = make_project(session, org=org, goal_fen=100_000, title="山区孩子过冬棉衣")
        return project.id, project.title


def check_fits_phone(page: Page, js_errors: list[str]) -> None:
    """The page is no wider than the phone and no script failed."""
    page.wait_for_load_state("load")
    assert horizontal_overflow(page) == 0, f"{page.url} is wider than 390 px"
    assert js_errors == [], f"JavaScript errors on {page.url}: {js_errors}"


def confirm_past_goal_if_asked(form: Locator) -> None:
    """Tick "I know the goal is reached" when the donate form asks (a project past its goal,
    as many of the demo's are): journeys about something else give all the same."""
    box = form.locator("input[name=confirm_past_goal]")
    if box.count():
        box.check()


def donate_in_sandbox(page: Page, live_server: LiveServer, project_id: int) -> str:
    """Give ¥50 through the project's donate form and the sandbox cashier, as a donor would;
    return the donation's public id (the thank-you page is open)."""
    page.goto(live_server(f"/projects/{project_id}/donate"))
    form = page.locator("form#donate")
    form.locator('input[name="amount"][value="50"]').check()
    confirm_past_goal_if_asked(form)
    form.locator('[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/pay/sandbox/"))
    page.locator('button[name="action"][value="pay"]').click()
    expect(page).to_have_url(re.compile(r"/donations/d_"))
    return page.url.rsplit("/", 1)[1]
