"""The layout every page shares: the header's links."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from shanju.core.db import Database
from tests.accounts.helpers import signup_and_confirm
from tests.factories import make_org, make_project


def nav(html: str) -> str:
    match = re.search(r'<header class="site-header">.*?</header>', html, re.S)
    assert match
    return match.group(0)


def test_signing_in_or_up_from_a_page_comes_back_to_it(client: TestClient, db: Database
                                                        ) -> None:
    with db.transaction() as session:
        project = make_project(session, org=make_org(session))
        project_id = project.id
    header = nav(client.get(f"/projects/{project_id}").text)
    assert f'href="/login?next=/projects/{project_id}"' in header
    assert f'href="/signup?next=/projects/{project_id}"' in header
    # From the home page and the sign-in pages themselves there is nothing to come back to.
    for path in ("/", "/login", "/signup"):
        header = nav(client.get(path).text)
        assert 'href="/login"' in header and 'href="/signup"' in header


def test_only_the_current_tab_is_marked(client: TestClient) -> None:
    assert signup_and_confirm(client).status_code == 303
    header = nav(client.get("/me/donations").text)
    assert re.findall(r'href="([^"]+)" aria-current="page"', header) == ["/me/donations"]
    header = nav(client.get("/me").text)
    assert re.findall(r'href="([^"]+)" aria-current="page"', header) == ["/me"]


def test_signed_in_header_keeps_account_apart_from_the_main_nav(client: TestClient) -> None:
    assert signup_and_confirm(client).status_code == 303
    header = nav(client.get("/").text)
    main = re.search(r'<nav class="nav".*?</nav>', header, re.S)
    account = re.search(r'<nav class="account-nav".*?</nav>', header, re.S)
    assert main and account
    assert 'href="/me/donations"' in main.group(0) and 'href="/me"' not in main.group(0)
    assert 'href="/me"' in account.group(0)


def test_chinese_labels_use_full_width_colons(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_project(session, org=make_org(session))
    for path, text in (("/projects", "找到的项目：1"), ("/organizations", "找到的组织：1")):
        html = client.get(path).text
        assert text in html
        # No Chinese label followed by an ASCII colon anywhere in the page's text.
        visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", html,
                                                   flags=re.S))
        assert not re.search(r"[\u4e00-\u9fff]\s*:\s", visible), path
