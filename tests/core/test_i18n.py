"""Languages: Chinese by default, English on request, and a catalog that covers the pages."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from babel.messages.catalog import Catalog
from fastapi.testclient import TestClient

from shanju.core import i18n

BABEL_CFG = Path(__file__).resolve().parents[2] / "babel.cfg"

# Files (relative to src/shanju) whose every message must have a zh_CN translation: all
# templates and all Python code, so any new untranslated msgid fails this test.
COVERED = ("**",)


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    return i18n.extract(BABEL_CFG)


def test_covered_messages_have_chinese_translations(extracted: Catalog) -> None:
    covered = i18n.extract(BABEL_CFG, only=COVERED)
    assert len(covered) > 50  # the extraction itself works (templates and Python both)
    assert i18n.problems(i18n.load_po("zh_CN"), covered) == []


def test_extraction_finds_templates_code_and_domain_errors(extracted: Catalog) -> None:
    for msgid in (
        "Featured projects",  # a template
        "The email or password is not correct.",  # an InvalidInput in a service
        "Your form has expired or came from another site. Please reload the page and try "
        "again.",  # a PermissionDenied split over two string literals
        "Welcome to Shanju! Your account is ready.",  # marked with N_
        "This page does not exist.",  # app.py
    ):
        assert extracted.get(msgid) is not None, msgid


def test_the_checker_notices_gaps() -> None:
    translated = Catalog(locale="zh_CN")
    translated.add("Home", "首页")
    translated.add("Fuzzy", "模糊", flags=["fuzzy"])
    translated.add("%(n)s gifts", "人次")
    wanted = Catalog()
    for msgid in ("Home", "Missing", "Fuzzy", "%(n)s gifts"):
        wanted.add(msgid)
    assert i18n.problems(translated, wanted) == [
        "missing: 'Missing'", "fuzzy: 'Fuzzy'", "placeholders differ: '%(n)s gifts'"
    ]


def test_every_existing_translation_is_well_formed() -> None:
    catalog = i18n.load_po("zh_CN")
    translated = [m for m in catalog if m.id and m.string]
    assert i18n.problems(catalog, translated) == []
    assert not catalog.fuzzy


def test_chinese_is_the_default(client: TestClient) -> None:
    response = client.get("/")
    assert 'lang="zh-CN"' in response.text
    assert "推荐项目" in response.text
    assert 'href="?lang=en"' in response.text


def test_english_is_switchable_and_remembered(client: TestClient) -> None:
    response = client.get("/?lang=en")
    assert 'lang="en"' in response.text
    assert "Featured projects" in response.text
    assert response.cookies.get("sj_lang") == "en"
    assert "Featured projects" in client.get("/").text  # the cookie remembers the choice
    back = client.get("/?lang=zh_CN")
    assert "推荐项目" in back.text
    assert "推荐项目" in client.get("/").text


def test_chinese_is_the_default_whatever_the_browser_language(client: TestClient) -> None:
    # zh-CN is the platform's language; English is a choice the visitor makes (and keeps).
    response = client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "推荐项目" in response.text


def test_language_switch_keeps_the_current_page(client: TestClient) -> None:
    # A query-only link: the browser resolves it against the page it is on.
    html = client.get("/login?next=/me").text
    assert 'href="?next=%2Fme&amp;lang=en"' in html
    html = client.get("/login?next=/me&lang=en").text
    assert 'href="?next=%2Fme&amp;lang=zh_CN"' in html


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "///evil.example"])
def test_language_switch_never_echoes_the_path(client: TestClient, path: str) -> None:
    # GET //evil.example/x used to render href="//evil.example/x?lang=en": a link to
    # another site on our page. The switch is now "?lang=…" relative to the current page.
    url = f"http://testserver{path}"
    html = client.get(url).text
    assert re.findall(r'<a class="lang" href="([^"]*)"', html) == ["?lang=en"]
    for href in re.findall(r'href="([^"]*)"', html):
        # Resolved like a browser would on that page (which strips "\" to "/"):
        target = urljoin(url, html_lib.unescape(href).replace("\\", "/"))
        assert urlsplit(target).netloc == "testserver", href


def test_error_pages_are_translated(client: TestClient) -> None:
    assert "<h1>页面不存在</h1>" in client.get("/no-such-page").text
    assert "This page does not exist." in client.get("/no-such-page?lang=en").text


def test_api_errors_stay_english_with_a_stable_code(client: TestClient) -> None:
    client.get("/?lang=zh_CN")
    response = client.get("/api/v1/me", headers={"Accept-Language": "zh-CN"})
    assert response.json()["error"] == {
        "code": "not_authenticated", "message": "Please sign in first."
    }


def test_negotiate() -> None:
    assert i18n.negotiate(None) == "zh_CN"
    assert i18n.negotiate("en") == "en"
    assert i18n.negotiate("zh-CN") == "zh_CN"
    assert i18n.negotiate("fr") == "zh_CN"
    assert i18n.gettext("en", "Home") == "Home"
    assert i18n.gettext("zh_CN", "Home") == "首页"
