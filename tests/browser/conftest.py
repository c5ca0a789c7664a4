"""Browser test fixtures: a live server on a real database and Debian's chromium via Playwright.

- ``live_server``: uvicorn in a background thread on a free 127.0.0.1 port, serving the app on
  a fresh migrated SQLite file (or PostgreSQL: ``@pytest.mark.parametrize("live_server",
  ["postgresql"], indirect=True)``); stopped at teardown. It can create users directly in
  its database (``live_server.create_user(role=Role.REVIEWER)``) so a journey can start from
  a signed-up reviewer without clicking through an operator's command. A test module that
  needs something in front of the app (an ASGI layer) overrides ``live_server`` with
  ``serving(request, tmp_path, wrap=...)``.
- ``page``: a Playwright page (sync API) in a phone-sized (390×844) zh-CN context.
- ``new_context(browser, viewport)``: such a context of another size, on the suite's clock;
  ``another_person(browser, js_errors, who)``: a second page with its own cookies, for a
  journey of two people (a fixture of the test module yields it).
- ``screenshot(name)``: saves the page as ``<tmp_path>/<name>.png`` (and into
  ``$SHANJU_SCREENSHOT_DIR`` when that is set, e.g. for CI artifacts).
- ``sign_in(page, email, password)``: signs in through the login form.

Without ``/usr/bin/chromium`` the browser tests skip with a printed reason — except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)
from sqlalchemy import select

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.mail import OutboxMessage
from tests.conftest import IN_CI, _truncate_all
from tests.factories import PASSWORD
from tests.serving import free_socket, uvicorn_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
# How long a page's waits may take: an action or a navigation (``new_context``), and an
# ``expect`` (Playwright's default is 5 s). A passing wait returns as soon as it holds; these
# bound only a stuck one. Sized for a busy 2-core machine running the suite on two workers
# (`./run test`), where a first page of a fresh server, or Swagger UI rendering, took over
# 5–10 s while other processes ran; an unloaded machine needs a fraction of them.
WAIT_MS = 20_000
EXPECT_MS = 10_000
expect.set_options(timeout=EXPECT_MS)


# --- the live server -----------------------------------------------------------------------


@dataclass
class LiveServer:
    """A running app: its base URL and direct access to its database."""

    url: str
    database: Database
    settings: Settings
    _seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def __call__(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.url + path

    def create_user(
        self,
        *,
        role: Role = Role.DONOR,
        email: str | None = None,
        password: str = PASSWORD,
        display_name: str = "测试用户",
        organization_id: int | None = None,
    ) -> User:
        """Create a user straight in the server's database (committed), e.g. a reviewer."""
        n = next(self._seq)
        with self.database.transaction() as session:
            user = accounts.do_create_user(
                session=session,
                email=email or f"{role.value}{n}@browser.test",
                password=password,
                display_name=display_name,
                role=role,
                organization_id=organization_id,
            )
        return user

    def emailed_link(self, to: str) -> str:
        """The link of the newest email to ``to``: the outbox is the tests' inbox."""
        with self.database.transaction(write=False) as session:
            body = session.scalars(
                select(OutboxMessage.body).where(OutboxMessage.to_address == to)
                .order_by(OutboxMessage.id.desc())).first()
        match = re.search(r"https?://\S+", body or "")
        assert match, f"no link emailed to {to}: {body!r}"
        return match.group(0)


def confirm_signup(page: Page, live_server: LiveServer, email: str) -> None:
    """After the sign-up form: open the emailed link and create the account."""
    expect(page.locator("[data-signup-sent]")).to_be_visible()
    page.goto(live_server.emailed_link(email))
    page.locator("[data-confirm-signup]").click()


@pytest.fixture
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """The app served by uvicorn in a thread, on a fresh database (SQLite unless asked)."""
    with serving(request, tmp_path) as server:
        yield server


@contextmanager
def serving(request: pytest.FixtureRequest, tmp_path: Path, *,
            wrap: Callable[[Any], Any] | None = None) -> Iterator[LiveServer]:
    """What ``live_server`` serves, for a test module's own fixture: ``wrap(app)`` is served
    instead of the app when given (an ASGI layer in front of it, e.g. one that cuts
    connections)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "live.sqlite3"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
    database = Database(url)
    sock = free_socket()
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        environment="test",
        database_url=url,
        secret_key="test-secret",
        sandbox_secret="test-sandbox-secret",
        base_url=base,
        upload_dir=tmp_path / "uploads",
        transparency_key_file=tmp_path / "transparency-ed25519.key",
    )
    app = create_app(settings, database=database)
    try:
        with uvicorn_thread(wrap(app) if wrap else app, sock):
            yield LiveServer(url=base, database=database, settings=settings)
    finally:
        database.dispose()
        if backend != "sqlite":
            cleaner = Database(url)
            _truncate_all(cleaner)
            cleaner.dispose()


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium, or a skip (a failure in CI) saying why there is none."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{reason}: browser tests are mandatory in CI")
        pytest.skip(reason)
    return CHROMIUM


# Package scope, not session: while the sync API's driver runs, the main thread has a running
# event loop, and tests after this package that run their own (asyncio.run) would fail.
# scripts/year_ahead moves the clock of every process with libfaketime (LD_PRELOAD). Chromium
# loads no page under it (navigation times out), so the driver and the browser are started
# without it, and each browser context's clock is moved instead (follow_clock): the pages
# see the same "now" as the server they talk to.
_FAKETIME_VARS = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "FAKETIME_NO_CACHE")


def follow_clock(context: BrowserContext) -> None:
    """Give ``context`` the suite's clock when scripts/year_ahead moved it (else nothing)."""
    if os.environ.get("FAKETIME") or _SAVED_FAKETIME:
        import datetime as dt

        # Date only (timers and performance.now() run as they do): hls.js, for one, stalls
        # under a clock installed with clock.install().
        context.clock.set_system_time(dt.datetime.now(dt.UTC))


_SAVED_FAKETIME: dict[str, str] = {}


@pytest.fixture(scope="package")
def playwright_instance(chromium_path: str) -> Iterator[Playwright]:
    """The Playwright driver (sync API), for the browser tests of this package."""
    del chromium_path
    saved = {k: os.environ.pop(k) for k in _FAKETIME_VARS if k in os.environ}
    _SAVED_FAKETIME.update(saved)
    try:
        with sync_playwright() as pw:
            os.environ.update(saved)   # the driver has started without them
            yield pw
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright, chromium_path: str) -> Iterator[Browser]:
    """One chromium for all browser tests; each test gets its own context."""
    browser = playwright_instance.chromium.launch(
        executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught JavaScript errors of the test's page, for tests to assert on."""
    return []


# Reports every Content-Security-Policy violation of every page and frame of a context to the
# test (``securitypolicyviolation`` events, which also catch what the console does not show).
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (e) => {
  const what = `${e.effectiveDirective} refused ${e.blockedURI || "inline"} on ${e.documentURI}`
    + (e.sourceFile ? ` (${e.sourceFile}:${e.lineNumber})` : "");
  if (window.__shanjuCspViolation) window.__shanjuCspViolation(what);
}, true);
"""


def watch_csp(context: BrowserContext, violations: list[str], page: Page) -> None:
    """Collect the context's CSP violations (events and console reports) into ``violations``.

    The console also reports what the headers got wrong (an unknown Permissions-Policy
    feature), and what happens before a page's scripts could listen.
    """
    context.expose_binding("__shanjuCspViolation", lambda _source, what: violations.append(what))
    context.add_init_script(CSP_REPORTER)

    def console(message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text
                                        or "Permissions-Policy" in text):
            violations.append(text)

    page.on("console", console)


@pytest.fixture
def csp_violations() -> list[str]:
    """Content-Security-Policy violations of the test's page; any fails the test."""
    return []


def new_context(browser: Browser, viewport: ViewportSize = PHONE, *,
                device_scale_factor: float | None = None, user_agent: str | None = None,
                timeout_ms: float = WAIT_MS) -> BrowserContext:
    """A zh-CN, China-time, touch context of ``viewport`` (a phone unless told), on the
    suite's clock (:func:`follow_clock`), its waits ``timeout_ms`` at most."""
    context = browser.new_context(
        viewport=viewport,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        is_mobile=True,
        has_touch=True,
        device_scale_factor=device_scale_factor,
        user_agent=user_agent,
    )
    context.set_default_timeout(timeout_ms)
    follow_clock(context)
    return context


@contextmanager
def another_person(browser: Browser, js_errors: list[str], who: str,
                   viewport: ViewportSize = PHONE) -> Iterator[Page]:
    """A page in a context of its own (another person's cookies), its uncaught errors added
    to ``js_errors`` as ``"<who>: <error>"``; closed on leaving."""
    context = new_context(browser, viewport)
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: js_errors.append(f"{who}: {exc}"))
        yield page
    finally:
        context.close()


# A phone's own browser (its user agent): the platform sends it to the providers' phone pages
# (WeChat Pay's H5, Alipay's wap), as it would a real phone.
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


@contextmanager
def phone_browser(browser: Browser, csp_violations: list[str]) -> Iterator[Page]:
    """A page as a phone's browser (:data:`PHONE_UA`, 5 s more for its waits: the providers'
    pages are on the way), its CSP violations collected into ``csp_violations`` for the caller
    to judge; closed on leaving."""
    context = new_context(browser, user_agent=PHONE_UA, timeout_ms=WAIT_MS + 5_000)
    try:
        page = context.new_page()
        watch_csp(context, csp_violations, page)
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, js_errors: list[str], csp_violations: list[str]) -> Iterator[Page]:
    """A fresh phone-sized, zh-CN page. Every browser test fails on a CSP violation."""
    context = new_context(browser, device_scale_factor=2)
    page = context.new_page()
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    watch_csp(context, csp_violations, page)
    yield page
    context.close()
    assert csp_violations == [], f"Content-Security-Policy violations: {csp_violations}"


@pytest.fixture
def screenshot(page: Page, tmp_path: Path) -> Callable[[str], Path]:
    """Save a full-page screenshot named ``name``; return its path."""
    extra = os.environ.get("SHANJU_SCREENSHOT_DIR")

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return take


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    width: Any = page.evaluate("document.documentElement.scrollWidth")
    return max(0, int(width) - PHONE["width"])


@pytest.fixture
def sign_in(live_server: LiveServer) -> Callable[[Page, str, str], None]:
    """Sign ``page`` in through the login form."""

    def do(page: Page, email: str, password: str = PASSWORD) -> None:
        page.goto(live_server("/login"))
        page.fill('input[name="email"]', email)
        page.fill('input[name="password"]', password)
        page.locator('form[action="/login"] [type="submit"]').click()
        page.wait_for_load_state()

    return do
