"""No dead ends: every link on the pages a new visitor sees opens, and every #anchor exists."""

from __future__ import annotations

from urllib.parse import urldefrag

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, fundraising_project

pytestmark = pytest.mark.browser


def test_links_on_public_pages_open_and_anchors_exist(
    page: Page, live_server: LiveServer, js_errors: list[str]
) -> None:
    project_id, _ = fundraising_project(live_server)
    start = ["/", "/projects", f"/projects/{project_id}", "/organizations", "/login", "/signup",
             f"/projects/{project_id}/donate"]
    links: set[str] = set()
    for path in start:
        response = page.goto(live_server(path))
        assert response is not None and response.status == 200, path
        check_fits_phone(page, js_errors)
        hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        links.update(h for h in hrefs if h.startswith(live_server.url))

    assert len(links) > 10
    broken = []
    for link in sorted(links):
        url, fragment = urldefrag(link)
        # A plain request: the page's own status, without loading what it embeds.
        response = page.request.get(url)
        if response.status >= 400:
            broken.append(f"{link}: {response.status}")
        elif fragment:
            page.goto(url)
            if page.locator(f'[id="{fragment}"]').count() == 0:
                broken.append(f"{link}: no element with id {fragment!r}")
    assert broken == []
    assert js_errors == []
