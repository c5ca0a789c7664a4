"""Key pages speak one language: no English UI words in Chinese, no Chinese chrome in English.

The pages are rendered over the demo data (realistic Chinese names, titles and messages), so
the checks must tell interface text from data:

* Chinese pages: the visible text (and the placeholders, labels and titles people read) may
  not contain an English word that occurs in one of our msgids. Emails, web addresses and
  codes (credit codes, payment numbers: letters mixed with digits or capitals) are data and
  are dropped before looking, and so are a few names that stay English in Chinese (API…).
* English pages: no text node or attribute may be exactly the Chinese translation of a msgid
  (that would be chrome someone forgot to wrap). Chinese data such as titles is fine.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.core import i18n
from shanju.core.db import Database
from shanju.demo.seed import DEMO_ACCOUNTS, seed
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects.models import Project, ProjectStatus

# Read by people, so they must be translated as well as the text between tags.
_ATTRIBUTES = ("placeholder", "aria-label", "alt", "title")
# English that stays English on Chinese pages: product and format names.
# File formats and names written the same in Chinese text.
_ALLOWED_IN_CHINESE = {"api", "openapi", "jpeg", "png", "webp", "pdf", "idempotency", "key",
                       "shanju", "csv", "json", "excel"}
_DATA = re.compile(
    r"[\w.+-]+@[\w-]+(\.[\w-]+)+"  # emails
    r"|https?://\S+"  # web addresses
    r"|\b\w*\d\w*\b"  # anything with a digit: credit codes, ids, amounts, dates
    r"|\b[A-Z]{2,}\b"  # all-capital codes and abbreviations
)
_WORD = re.compile(r"\b[A-Za-z][a-z]+\b")
_CJK = re.compile(r"[\u3400-\u9fff]")


class _Visible(HTMLParser):
    """The text people see: text nodes outside script/style, and readable attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if value and (name in _ATTRIBUTES or (
                    tag == "input" and name == "value" and ("type", "submit") in attrs)):
                self.chunks.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.chunks.append(data.strip())


def visible_chunks(html: str) -> list[str]:
    """Split a page into the pieces of text people read."""
    parser = _Visible()
    parser.feed(html)
    return parser.chunks


def english_leaks(html: str, ui_words: set[str]) -> set[str]:
    """English words of our msgids that show on a (Chinese) page."""
    found: set[str] = set()
    for chunk in visible_chunks(html):
        text = _DATA.sub(" ", chunk)
        found.update(w for w in _WORD.findall(text) if w.lower() in ui_words)
    return found


def chinese_chrome(html: str, chrome: set[str]) -> set[str]:
    """Pieces of an (English) page that are exactly a Chinese translation of a msgid."""
    return {c for c in visible_chunks(html) if c in chrome}


@pytest.fixture(scope="module")
def catalog_words() -> tuple[set[str], set[str]]:
    catalog = i18n.load_po("zh_CN")
    words: set[str] = set()
    chrome: set[str] = set()
    for message in catalog:
        if not message.id or not message.string:
            continue
        msgid = re.sub(r"%\(\w+\)[sdif]", " ", str(message.id))
        words.update(w.lower() for w in _WORD.findall(msgid) if len(w) >= 3)
        text = str(message.string)
        if _CJK.search(text) and "%(" not in text:
            chrome.add(text.strip())
    return words - _ALLOWED_IN_CHINESE, chrome


def test_the_checks_tell_interface_text_from_data() -> None:
    words = {"donate", "project", "status"}
    page = ('<title>捐款 · 善举</title><p title="Project">统一社会信用代码 53100000500021676Q '
            "donor@demo.shanju.org https://example.org/donate pi_abc123 API</p>"
            "<script>var status = 1;</script><button>Donate now</button>")
    assert english_leaks(page, words) == {"Project", "Donate"}
    assert chinese_chrome("<h1>Projects</h1><p>项目</p><p>山区儿童营养餐项目</p>",
                          {"项目"}) == {"项目"}


def _sign_in(client: TestClient, db: Database, email: str) -> None:
    with db.transaction() as s:
        user = s.scalars(select(User).where(User.email == email)).one()
        token = accounts.do_start_session(session=s, user=user)
    client.cookies.set("sj_session", token)


def _key_pages(client: TestClient, db: Database) -> list[str]:
    """Seed the demo and return the key pages' paths (the client ends signed in as donor)."""
    with db.transaction() as s:
        seed(s, scale=0.02, upload_dir=client.app.state.settings.upload_dir)  # type: ignore[attr-defined]
    with db.transaction(write=False) as s:
        fundraising = list(s.scalars(select(Project.id).where(
            Project.status == ProjectStatus.FUNDRAISING).order_by(Project.id)))
        org_id = s.scalars(select(Organization.id).where(
            Organization.status == OrgStatus.APPROVED).order_by(Organization.id)).first()
    emails = {role.value: email for email, role, _ in DEMO_ACCOUNTS}

    _sign_in(client, db, emails["donor"])
    cashier = None
    for project_id in fundraising:
        page = client.get(f"/projects/{project_id}/donate")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
        if not (token and key):
            continue
        response = client.post(f"/projects/{project_id}/donate", follow_redirects=False, data={
            "csrf_token": token.group(1), "idempotency_key": key.group(1), "amount": "20",
            "custom_amount": "", "donor_name": "李明", "message": "加油", "province": "北京"})
        if response.status_code == 303:
            cashier = response.headers["location"]
            break
    assert cashier is not None, "no demo project took a donation"
    return [
        "/", "/projects", f"/projects/{project_id}", f"/organizations/{org_id}",
        "/me/donations", f"/projects/{project_id}/donate", cashier,
        f"reviewer:{emails['reviewer']}:/review", f"org_staff:{emails['org_staff']}:/console",
        "/signup", "/login",  # last: signed out
    ]


def _fetch(client: TestClient, db: Database, path: str) -> str:
    if path.count(":") == 2:  # "role:email:/path" — sign in as someone else first
        _, email, path = path.split(":")
        _sign_in(client, db, email)
    elif path in ("/signup", "/login"):
        client.cookies.delete("sj_session")
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.text


def test_key_pages_speak_one_language(
    client: TestClient, db: Database, catalog_words: tuple[set[str], set[str]]
) -> None:
    ui_words, chrome = catalog_words
    paths = _key_pages(client, db)
    problems: dict[str, object] = {}
    donor = next(email for email, role, _ in DEMO_ACCOUNTS if role.value == "donor")
    for lang in ("zh_CN", "en"):
        _sign_in(client, db, donor)
        client.cookies.set("sj_lang", lang)
        for path in paths:
            html = _fetch(client, db, path)
            if lang == "zh_CN":
                leaks: set[str] = english_leaks(html, ui_words)
            else:
                assert 'lang="en"' in html
                leaks = chinese_chrome(html, chrome)
            if leaks:
                problems[f"{lang} {path}"] = sorted(leaks)
    assert problems == {}
