"""The Content-Security-Policy in chromium: the main pages load and work with no violation.

The ``page`` fixture fails any browser test on a CSP violation (``securitypolicyviolation``
events of every frame, and the console's reports); this test walks the pages that use the
most: htmx polling, the donate form's script, the in-browser receipt verifier (ES modules,
noble), the summit's stage and its live panel (a WebSocket), a giving day's live dashboard
(an event stream), an error page and Swagger UI.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from shanju.core.regions import PROVINCES
from tests.browser.conftest import LiveServer
from tests.browser.helpers import donate_in_sandbox, fundraising_project, zh
from tests.browser.test_summit_live import summit_with_session
from tests.factories import PASSWORD, make_campaign, make_org, make_pool, make_project

pytestmark = pytest.mark.browser


def test_main_pages_work_under_the_policy(
    page: Page, live_server: LiveServer, js_errors: list[str], csp_violations: list[str],
) -> None:
    project_id, _ = fundraising_project(live_server)
    setup = summit_with_session(live_server)
    with live_server.database.transaction() as s:
        org = make_org(s, name="云南山区助学促进会")
        project = make_project(s, org=org, title="乡村学校冬季温暖包")
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=100_000, sponsor_name="腾讯公益")
        campaign_slug = campaign.slug

    # The home page, with the policy and its nonce in the header.
    response = page.goto(live_server("/"))
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert re.search(r"script-src 'self' 'nonce-[\w-]{20,}'", policy)

    # The organization list's province filter submits itself (site.js, no onchange=).
    page.goto(live_server("/organizations"))
    page.locator("select#province").select_option(PROVINCES[0])
    expect(page).to_have_url(re.compile(r"province="))

    # Sign in, then give: the donate form's presets (site.js), the sandbox cashier, the
    # thank-you page polled by htmx, and the receipt verified by the in-browser verifier.
    page.goto(live_server("/login"))
    page.fill('input[name="email"]', setup.attendees[1])
    page.fill('input[name="password"]', PASSWORD)
    page.locator('form[action="/login"] [type="submit"]').click()
    page.wait_for_load_state()
    page.goto(live_server(f"/projects/{project_id}"))
    page.goto(live_server(f"/projects/{project_id}/donate"))
    custom = page.locator("#custom_amount")
    custom.fill("66")
    expect(page.locator('input[name="amount"]:checked')).to_have_count(0)
    page.locator('input[name="amount"][value="50"]').check()
    expect(custom).to_have_value("")
    public_id = donate_in_sandbox(page, live_server, project_id)
    expect(page.locator("#donation-status [role=status]")).to_have_text(
        zh("Thank you! Your donation has been received."))
    page.goto(live_server(f"/transparency/receipts/donation:{public_id}"))
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok")

    # The summit's stage and live panel: the WebSocket connects under connect-src.
    page.goto(live_server(f"/summits/{setup.slug}/sessions/{setup.session_id}"))
    page.goto(live_server(setup.live_path))
    expect(page.locator("[data-live=count]")).to_be_visible()
    expect(page.locator("[data-live=status]")).to_be_hidden()

    # A giving day's live dashboard: its event stream delivers.
    page.goto(live_server(f"/campaigns/{campaign_slug}"))
    expect(page.locator(".campaign-live")).to_have_attribute("data-live-state", "live")

    # An error page's "Go back": a plain link to the page the person came from on this site
    # (no javascript: link, no script needed).
    page.goto(live_server("/no-such-page"), referer=live_server(f"/campaigns/{campaign_slug}"))
    back = page.locator(f'.error-page a[href="/campaigns/{campaign_slug}"]')
    expect(back).to_be_visible()
    back.click()
    expect(page).to_have_url(live_server(f"/campaigns/{campaign_slug}"))

    # Swagger UI: its inline set-up script runs with the nonce and renders the API.
    page.goto(live_server("/api/docs"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Shanju")
    expect(page.locator(".opblock").first).to_be_visible()

    assert js_errors == []
    assert csp_violations == []


def test_a_violation_is_caught(
    page: Page, live_server: LiveServer, csp_violations: list[str]
) -> None:
    # The watcher works: an inline script without the nonce is refused and reported (then
    # forgotten here, so that the fixture does not fail this test).
    page.goto(live_server("/"))
    refused = page.evaluate("""() => new Promise((resolve) => {
        document.addEventListener("securitypolicyviolation",
                                  (e) => resolve(e.effectiveDirective), {once: true});
        const s = document.createElement("script");
        s.textContent = "window.__ran = true";
        document.body.appendChild(s);
    })""")
    assert refused == "script-src-elem"
    assert page.evaluate("() => window.__ran") is None
    assert any("script-src-elem refused inline" in v for v in csp_violations), csp_violations
    csp_violations.clear()
