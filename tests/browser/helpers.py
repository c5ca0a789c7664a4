"""What the browser journeys share: test data in the live server's database and page checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

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


# --- accessibility (axe-core) ---------------------------------------------------------------

# axe-core from npm, for the tests only (tests/browser/vendor/axe-core/README.md): the app
# never serves it.
AXE_SOURCE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# WCAG 2.1 levels A and AA, and axe's best practices (landmarks, headings, ...).
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")

_AXE_RUN = """async (tags) => {
  const results = await axe.run(document, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({
      impact: n.impact, target: n.target.map(String), html: n.html,
      summary: n.failureSummary || "",
    })),
  }));
}"""


def axe_violations(page: Page, impacts: Sequence[str] = ("serious", "critical"),
                   ) -> list[dict[str, Any]]:
    """The page's axe-core violations of WCAG 2.1 A/AA and best practices at ``impacts``.

    axe is evaluated into the page by Playwright (DevTools), not by a script element: the
    site's Content-Security-Policy stays in force and is not broken.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(_AXE_RUN, list(AXE_TAGS))
    return [v for v in found if v["impact"] in impacts]


def describe_violations(violations: Sequence[dict[str, Any]]) -> str:
    """Violations in a few readable lines each: rule, impact, help, then each element."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"][:8]:
            html = re.sub(r"\s+", " ", node["html"])[:160]
            detail = re.sub(r"\s+", " ", node["summary"])[:240]
            lines.append(f"    {' '.join(node['target'])}: {html}\n      {detail}")
        if len(v["nodes"]) > 8:
            lines.append(f"    … and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def check_accessible(page: Page, impacts: Sequence[str] = ("serious", "critical")) -> None:
    """No axe-core violation at ``impacts`` on the page as it is now."""
    violations = axe_violations(page, impacts)
    assert not violations, (
        f"axe-core: {len(violations)} rule(s) violated on {page.url}:\n"
        + describe_violations(violations))


@cache
def _axe_source() -> str:
    return AXE_SOURCE.read_text(encoding="utf-8")
