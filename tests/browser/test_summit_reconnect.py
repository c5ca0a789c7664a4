"""The live panel through a server that stops answering (issue 13, "every wait has a bound"):
the page gives up on a socket that does not open or a join nobody answers, shows
"reconnecting…" and retries with backoff; back on the room, it shows what was posted meanwhile
exactly once, and what the person typed while cut off is still in the box.

The first test runs against the real app behind a ``LiveGate``: an ASGI layer in front of it
that can cut one browser (by its session cookie) off the live endpoint — its connection is
closed, later ones either never get the upgrade answered or are accepted and never answered
(a server stuck opening the room) — while another attendee's connection keeps working. The
second drives the panel with a scripted WebSocket and the page's clock, for the default bounds
(10 s to open, 15 s to be welcomed), ``server_busy`` and the sequence numbers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.core.web import SESSION_COOKIE
from tests.browser.conftest import LiveServer, another_person, serving
from tests.browser.helpers import check_fits_phone, zh
from tests.browser.test_summit_live import _welcome, summit_with_session, tab

Mode = Literal["no_handshake", "silent"]

# The page's bounds, shortened (the panel reads them from its root's data attributes).
OPEN_TIMEOUT_MS = 1000
JOIN_TIMEOUT_MS = 1500
SHORT_BOUNDS = f"""
new MutationObserver((_, observer) => {{
  const root = document.querySelector(".summit-live[data-token]");
  if (!root) return;
  root.setAttribute("data-open-timeout-ms", "{OPEN_TIMEOUT_MS}");
  root.setAttribute("data-join-timeout-ms", "{JOIN_TIMEOUT_MS}");
  observer.disconnect();
}}).observe(document, {{ childList: true, subtree: true }});
"""


@dataclass
class Blocked:
    """A live connection the gate held instead of passing it on (times: time.monotonic())."""

    mode: Mode
    started: float
    joined: float | None = None  # when its first frame (the join) came
    ended: float | None = None  # when the browser gave up on it


class LiveGate:
    """An ASGI layer in front of the app that can cut one browser off ``/summit/live``."""

    def __init__(self) -> None:
        self._app: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cookie: str | None = None  # whose live connections are cut
        self._plan: list[Mode] = []
        self._through: list[tuple[str, Callable[[], Any]]] = []  # (cookie header, close)
        self.blocked: list[Blocked] = []

    def wrap(self, app: Any) -> LiveGate:
        self._app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or scope["path"] != "/summit/live":
            await self._app(scope, receive, send)
            return
        self._loop = asyncio.get_running_loop()
        cookie = dict(scope["headers"]).get(b"cookie", b"").decode("latin-1")
        if self._cookie is not None and self._cookie in cookie:
            mode = self._plan.pop(0) if len(self._plan) > 1 else self._plan[0]
            await self._hold(receive, send, mode)
        else:
            await self._pass(scope, receive, send, cookie)

    async def _pass(self, scope: Any, receive: Any, send: Any, cookie: str) -> None:
        closed = False

        async def guarded(message: Any) -> None:
            if not closed:  # after the gate closed it, the app's sends go nowhere
                await send(message)

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                await send({"type": "websocket.close", "code": 1012})

        entry = (cookie, close)
        self._through.append(entry)
        try:
            await self._app(scope, receive, guarded)
        finally:
            self._through.remove(entry)

    async def _hold(self, receive: Any, send: Any, mode: Mode) -> None:
        record = Blocked(mode=mode, started=time.monotonic())
        self.blocked.append(record)
        try:
            await receive()  # websocket.connect
            if mode == "silent":
                await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                record.joined = record.joined or time.monotonic()
        finally:
            record.ended = time.monotonic()

    def cut(self, cookie: str, plan: Sequence[Mode]) -> None:
        """Close the live connections of the browser with ``cookie`` and hold its next ones,
        one per mode of ``plan`` (the last one repeats) until :meth:`restore`."""
        self._plan = list(plan)
        self._cookie = cookie
        assert self._loop is not None, "no live connection came through the gate yet"
        for who, close in list(self._through):
            if cookie in who:
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)

    def restore(self) -> None:
        self._cookie = None


@pytest.fixture
def gate() -> LiveGate:
    return LiveGate()


@pytest.fixture
def live_server(request: pytest.FixtureRequest, tmp_path: Path, gate: LiveGate
                ) -> Iterator[LiveServer]:
    """The browser tests' served app, behind this module's gate."""
    with serving(request, tmp_path, wrap=gate.wrap) as server:
        yield server


def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Wait for ``condition`` (checked every 50 ms) at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def post(page: Page, text: str) -> None:
    page.locator("[data-form=chat] input").fill(text)
    page.locator("[data-form=chat] button").click()


def test_a_cut_off_page_reconnects_within_its_bounds_and_shows_what_it_missed_once(
    live_server: LiveServer, gate: LiveGate, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None], another: Page,
) -> None:
    setup = summit_with_session(live_server)
    sign_in(page, setup.attendees[0])
    sign_in(another, setup.attendees[1])
    page.add_init_script(SHORT_BOUNDS)
    for person in (page, another):
        person.goto(live_server(setup.live_path))
        expect(person.locator("[data-live=status]")).to_be_hidden()
    panel = page.locator(".summit-live")
    chat = panel.locator("[data-live=chat] li")
    status = panel.locator("[data-live=status]")
    post(page, "会前：大家好")
    expect(chat).to_have_count(1)
    expect(another.locator("[data-live=chat] li")).to_have_count(1)

    # The server goes away for this page: its socket closes, the next one is never opened
    # (the upgrade is not answered), the one after is opened but its join never answered.
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    gate.cut(cookie, ["no_handshake", "silent"])
    expect(status).to_have_text(zh("Reconnecting…"))
    offline = panel.locator("[data-pane=chat] [data-live=offline]")
    expect(offline).to_be_visible()
    # What the person writes meanwhile cannot go; it stays in the box, and the form says why.
    post(page, "断线时写的")
    expect(panel.locator("[data-error=chat]")).to_have_text(
        zh("Not connected: please wait until the connection is back."))
    expect(panel.locator("[data-form=chat] input")).to_have_value("断线时写的")
    # Another attendee's posts are stored and shown meanwhile.
    for text in ("第一条：断线期间", "第二条：断线期间"):
        post(another, text)
        expect(another.locator("[data-live=chat] li", has_text=text)).to_have_count(1)

    until(lambda: len(gate.blocked) >= 2 and gate.blocked[1].ended is not None,
          "the page to give up on two held sockets")
    gate.restore()
    hung, silent = gate.blocked[:2]
    assert (hung.mode, silent.mode) == ("no_handshake", "silent")
    assert hung.ended is not None and silent.ended is not None and silent.joined is not None
    # Each given up after its bound (not at once, not after the 10 s / 15 s defaults), and
    # retried after a backoff.
    assert OPEN_TIMEOUT_MS / 2000 < hung.ended - hung.started < OPEN_TIMEOUT_MS / 1000 + 2
    assert JOIN_TIMEOUT_MS / 2000 < silent.ended - silent.joined < JOIN_TIMEOUT_MS / 1000 + 2
    assert silent.started > hung.ended
    expect(status).to_have_text(zh("Reconnecting…"))
    expect(panel.locator("[data-live=fatal]")).to_be_hidden()

    # The server answers again: the room, with everything posted meanwhile, each once.
    expect(status).to_be_hidden(timeout=10_000)
    expect(offline).to_be_hidden()
    expect(chat).to_have_count(3)
    for i, text in enumerate(("会前：大家好", "第一条：断线期间", "第二条：断线期间")):
        expect(chat.nth(i).locator(".live-body")).to_have_text(text)
    expect(panel.locator("[data-form=chat] input")).to_have_value("断线时写的")
    panel.locator("[data-form=chat] button").click()
    expect(panel.locator("[data-form=chat] input")).to_have_value("")
    for person in (page, another):
        expect(person.locator("[data-live=chat] li", has_text="断线时写的")).to_have_count(1)
        expect(person.locator("[data-live=chat] li")).to_have_count(4)
    assert len(gate.blocked) == 2
    check_fits_phone(page, js_errors)


@pytest.fixture
def another(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    """A second attendee's phone."""
    with another_person(browser, js_errors, "another") as page:
        yield page


# --- the bounds and the sequence numbers against a scripted WebSocket --------------------------

# Like test_summit_live's, plus: window.__hold keeps new sockets from opening; close() is
# recorded; each socket knows when (on the page's clock) it was made.
HOLDING_SOCKET = """
(() => {
  class FakeSocket {
    constructor(url) {
      this.url = url; this.sent = []; this.readyState = 0; this.closed = false;
      this.born = Date.now();
      (window.__sockets = window.__sockets || []).push(this);
      if (!window.__hold) {
        setTimeout(() => { this.readyState = 1; this.onopen && this.onopen({}); }, 0);
      }
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.closed = true; this.readyState = 3; }
    receive(frame) { this.onmessage && this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code) { this.readyState = 3; this.onclose && this.onclose({ code: code }); }
  }
  window.WebSocket = FakeSocket;
})();
"""


def _push_to(page: Page, i: int, frame: dict[str, Any]) -> None:
    page.evaluate(f"window.__sockets[{i}].receive({json.dumps(frame)})")


def _sockets(page: Page) -> int:
    n: Any = page.evaluate("window.__sockets ? window.__sockets.length : 0")
    return int(n)


def _at(page: Page, i: int, ms: int) -> None:
    """Move the page's clock to ``ms`` after socket ``i`` was made."""
    now: Any = page.evaluate(f"Date.now() - window.__sockets[{i}].born")
    page.clock.run_for(max(0, ms - int(now)))


def _closed(page: Page, i: int) -> bool:
    return bool(page.evaluate(f"window.__sockets[{i}].closed"))


def _joined_on(page: Page, i: int) -> None:
    page.wait_for_function(
        f"() => window.__sockets.length > {i} && window.__sockets[{i}].sent.length === 1")


def _chat(id_: int, body: str) -> dict[str, Any]:
    return {"id": id_, "user": 99, "name": "李*", "body": body, "at": "2026-11-29T02:00:00Z"}


def test_default_bounds_server_busy_and_stale_batches(
    live_server: LiveServer, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server)
    sign_in(page, setup.attendees[0])
    page.add_init_script(HOLDING_SOCKET)
    page.clock.install()
    page.goto(live_server(setup.live_path))
    panel = page.locator(".summit-live")
    status = panel.locator("[data-live=status]")
    fatal = panel.locator("[data-live=fatal]")

    # Opened, join sent, never welcomed: given up after 15 s, then "reconnecting".
    _joined_on(page, 0)
    _at(page, 0, 14_000)
    assert not _closed(page, 0)
    expect(status).to_have_text(zh("Connecting…"))
    page.evaluate("window.__hold = true")
    _at(page, 0, 15_500)
    assert _closed(page, 0)
    expect(status).to_have_text(zh("Reconnecting…"))
    # A welcome on the socket given up changes nothing.
    _push_to(page, 0, _welcome(you=7))
    expect(status).to_have_text(zh("Reconnecting…"))
    expect(panel.locator("[data-live=chat] li")).to_have_count(0)

    # Retried after the backoff (at most 1 s); this socket never opens: given up after 10 s.
    page.clock.run_for(1_100)
    assert _sockets(page) == 2
    _at(page, 1, 9_000)
    assert not _closed(page, 1)
    _at(page, 1, 10_500)
    assert _closed(page, 1)
    expect(status).to_have_text(zh("Reconnecting…"))

    # The server is busy (error, then close 1011): retried, never fatal.
    page.evaluate("window.__hold = false")
    page.clock.run_for(2_100)
    _joined_on(page, 2)
    _push_to(page, 2, {"t": "error", "code": "server_busy", "message": "busy"})
    page.evaluate("window.__sockets[2].drop(1011)")
    expect(status).to_have_text(zh("Reconnecting…"))
    expect(fatal).to_be_hidden()
    page.clock.run_for(4_100)
    _joined_on(page, 3)

    # Welcomed at seq 10: a batch older than that is stale; repeats add nothing.
    welcome = _welcome(you=7)
    welcome["state"]["seq"] = 10
    welcome["state"]["chat"] = [_chat(1, "第一条")]
    _push_to(page, 3, welcome)
    expect(status).to_be_hidden()
    expect(panel).to_have_attribute("data-seq", "10")
    chat = panel.locator("[data-live=chat] li")
    _push_to(page, 3, {"t": "batch", "seq": 9, "events": [
        {"k": "chat", "m": _chat(5, "过时的")}, {"k": "count", "n": 1}]})
    newer = {"t": "batch", "seq": 11, "events": [
        {"k": "chat", "m": _chat(1, "第一条")}, {"k": "chat", "m": _chat(6, "第六条")}]}
    _push_to(page, 3, newer)
    _push_to(page, 3, newer)
    expect(chat).to_have_count(2)
    expect(chat.nth(1)).to_have_attribute("data-chat", "6")
    expect(panel.locator("[data-chat='5']")).to_have_count(0)
    expect(panel.locator("[data-live=count]")).to_have_text("在线 1,234 人")
    expect(panel).to_have_attribute("data-seq", "11")

    # Cut off: the forms say they cannot send, and keep what was typed.
    page.evaluate("window.__sockets[3].drop(1006)")
    expect(status).to_have_text(zh("Reconnecting…"))
    expect(panel.locator("[data-pane=chat] [data-live=offline]")).to_be_visible()
    tab(page, "Questions")
    expect(panel.locator("[data-pane=qa] [data-live=offline]")).to_be_visible()
    tab(page, "Chat")
    box = panel.locator("[data-form=chat] input")
    box.fill("还在吗？")
    panel.locator("[data-form=chat] button").click()
    expect(panel.locator("[data-error=chat]")).to_have_text(
        zh("Not connected: please wait until the connection is back."))
    expect(box).to_have_value("还在吗？")
    page.clock.run_for(1_100)
    _joined_on(page, 4)
    welcome["state"]["seq"] = 12
    welcome["state"]["chat"] = [_chat(1, "第一条"), _chat(6, "第六条"), _chat(7, "第七条")]
    _push_to(page, 4, welcome)
    expect(status).to_be_hidden()
    expect(panel.locator("[data-live=offline]")).to_have_count(2)
    expect(panel.locator("[data-live=offline]:visible")).to_have_count(0)
    expect(panel.locator("[data-error=chat]")).to_be_hidden()
    expect(chat).to_have_count(3)
    expect(box).to_have_value("还在吗？")
    # A send the server could not store (server_busy) keeps the text too; the next one goes.
    panel.locator("[data-form=chat] button").click()
    sent: Any = page.evaluate("window.__sockets[4].sent")
    assert sent[-1]["t"] == "chat" and sent[-1]["body"] == "还在吗？"
    _push_to(page, 4, {"t": "error", "ref": sent[-1]["ref"], "code": "server_busy",
                       "message": "busy"})
    expect(panel.locator("[data-error=chat]")).to_have_text(
        zh("The server is busy: please try again."))
    expect(box).to_have_value("还在吗？")
    panel.locator("[data-form=chat] button").click()
    sent = page.evaluate("window.__sockets[4].sent")
    _push_to(page, 4, {"t": "ack", "ref": sent[-1]["ref"], "id": 8, "status": "visible"})
    expect(box).to_have_value("")
    expect(fatal).to_be_hidden()
    check_fits_phone(page, js_errors)
