"""The summit's live rooms in the browser (issue 5's "Done when"): two attendees and a moderator
on phones, over the real WebSocket gateway; plus the panel's rendering against a scripted
WebSocket, and the prompt an anonymous visitor sees instead of a connection."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from shanju.accounts.models import Role
from shanju.core.clock import utcnow
from shanju.summit import tokens
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    SessionKind,
    SessionStatus,
    Summit,
    SummitRegistration,
    SummitRoom,
    SummitSession,
    SummitStatus,
)
from tests.browser.conftest import LiveServer, new_context, watch_csp
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import make_org, make_user


@dataclass
class LiveSetup:
    slug: str
    session_id: int
    room_ids: list[int]
    attendees: list[str]  # emails: a delegate of 壹基金, a member of the public
    moderator: str  # a platform reviewer: organizes every summit
    outsider: str  # signed up, not registered

    @property
    def live_path(self) -> str:
        return f"/summits/{self.slug}/sessions/{self.session_id}/live"

    @property
    def moderate_path(self) -> str:
        return f"/summits/{self.slug}/sessions/{self.session_id}/moderate"


def summit_with_session(live_server: LiveServer, *, kind: SessionKind = SessionKind.KEYNOTE
                        ) -> LiveSetup:
    """A published summit with one live session, two approved registrations, a reviewer and
    a signed-up person without a registration, straight in the server's database."""
    now = utcnow()
    with live_server.database.transaction() as db:
        org = make_org(db, name="深圳壹基金公益基金会")
        org.short_name = "壹基金"
        summit = Summit(
            slug="cloud-2026", title="中国互联网公益峰会 2026", starts_on=now.date(),
            ends_on=now.date() + dt.timedelta(days=1), status=SummitStatus.PUBLISHED,
        )
        db.add(summit)
        db.flush()
        session = SummitSession(
            summit_id=summit.id, kind=kind, title="科技向善：数字公益的下一个十年",
            starts_at=now - dt.timedelta(minutes=10), ends_at=now + dt.timedelta(hours=1),
            status=SessionStatus.LIVE,
        )
        db.add(session)
        db.flush()
        room_ids = []
        if kind == SessionKind.ROUNDTABLE:
            for i in (1, 2):
                room = SummitRoom(session_id=session.id, name=f"第{i}组", topic="乡村教育",
                                  video_url=f"https://meeting.example.cn/{i}", position=i)
                db.add(room)
                db.flush()
                room_ids.append(room.id)
        delegate = make_user(db, display_name="张晓明", organization_id=org.id)
        public = make_user(db, display_name="李华")
        outsider = make_user(db, display_name="王五")
        reviewer = make_user(db, role=Role.REVIEWER, display_name="赵主持")
        db.add_all([
            SummitRegistration(summit_id=summit.id, user_id=delegate.id,
                               kind=RegistrationKind.DELEGATE, organization_id=org.id,
                               status=RegistrationStatus.APPROVED),
            SummitRegistration(summit_id=summit.id, user_id=public.id,
                               kind=RegistrationKind.AUDIENCE,
                               status=RegistrationStatus.APPROVED),
        ])
        return LiveSetup(
            slug=summit.slug, session_id=session.id, room_ids=room_ids,
            attendees=[delegate.email, public.email], moderator=reviewer.email,
            outsider=outsider.email,
        )


@pytest.fixture
def new_phone(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Open further phone-sized zh-CN pages, each in its own context (another person)."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []
    violations: list[str] = []

    def open_page() -> Page:
        context = new_context(browser, device_scale_factor=2)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        watch_csp(context, violations, page)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert violations == [], f"Content-Security-Policy violations: {violations}"


def tab(page: Page, name: str) -> None:
    page.locator(".summit-live [role=tab]", has_text=zh(name)).click()


# --- who sees what -------------------------------------------------------------------------


def test_anonymous_visitor_is_asked_to_register_and_no_websocket_opens(
    live_server: LiveServer, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(live_server(setup.live_path))
    prompt = page.locator(".live-join")
    expect(prompt).to_be_visible()
    link = prompt.get_by_role("link", name=zh("Register to join the discussion"))
    expect(link).to_have_attribute("href", f"/summits/{setup.slug}/register")
    assert page.locator(".summit-live").count() == 0
    assert page.locator("script[src='/static/js/summit-live.js']").count() == 0
    page.wait_for_load_state("networkidle")
    check_fits_phone(page, js_errors)
    # Signed in but not registered: the same prompt, still no connection.
    sign_in(page, setup.outsider)
    page.goto(live_server(setup.live_path))
    expect(page.locator(".live-join")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert sockets == []


def test_only_organizers_open_the_moderator_console(
    live_server: LiveServer, page: Page, sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server)
    sign_in(page, setup.attendees[0])
    response = page.goto(live_server(setup.moderate_path))
    assert response is not None and response.status == 403
    expect(page.locator("[data-code=forbidden]")).to_be_visible()


# --- the panel against a scripted WebSocket ---------------------------------------------------

FAKE_SOCKET = """
(() => {
  class FakeSocket {
    constructor(url) {
      this.url = url; this.sent = []; this.readyState = 0;
      (window.__sockets = window.__sockets || []).push(this);
      setTimeout(() => { this.readyState = 1; this.onopen && this.onopen({}); }, 0);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() {}
    receive(frame) { this.onmessage && this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code) { this.readyState = 3; this.onclose && this.onclose({ code: code }); }
  }
  window.WebSocket = FakeSocket;
})();
"""


def _welcome(you: int) -> dict[str, Any]:
    return {
        "t": "welcome", "room": "s1", "you": {"user": you, "name": "张*", "role": "attendee"},
        "state": {
            "room": {"key": "s1", "kind": "stage", "session": 1, "title": "t", "video_url": None},
            "settings": {"paused": False, "slow": 0, "premoderated": False},
            "count": 1234,
            "chat": [{"id": 1, "user": 99, "name": "李*",
                      "body": "<img src=x onerror=alert(1)>大家好", "at": "2026-11-29T02:00:00Z"}],
            "questions": [
                {"id": 3, "name": "王*", "body": "乡村学校怎么用好数字资源？", "status": "approved",
                 "upvotes": 2, "voted": False, "at": "2026-11-29T02:01:00Z"},
                {"id": 4, "name": "陈*", "body": "志愿者如何参与？", "status": "answering",
                 "upvotes": 1, "voted": False, "at": "2026-11-29T02:02:00Z"},
            ],
            "polls": [{"id": 2, "question": "你最关心哪个议题？", "status": "open", "total": 4,
                       "voted": None, "options": [{"id": 5, "label": "乡村教育", "votes": 3},
                                                  {"id": 6, "label": "养老", "votes": 1}]}],
            "rooms": [{"key": "r4", "name": "第1组", "topic": "乡村教育", "count": 8,
                       "capacity": 12, "video_url": "https://meeting.example.cn/1"}],
        },
    }


def _frames(page: Page) -> list[dict[str, Any]]:
    frames: Any = page.evaluate("window.__sockets[window.__sockets.length - 1].sent")
    return list(frames)


def _push(page: Page, frame: dict[str, Any]) -> None:
    page.evaluate(f"window.__sockets[window.__sockets.length - 1].receive({json.dumps(frame)})")


def test_panel_renders_state_and_events_from_the_protocol(
    live_server: LiveServer, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None], screenshot: Callable[[str], Any],
) -> None:
    setup = summit_with_session(live_server, kind=SessionKind.ROUNDTABLE)
    sign_in(page, setup.attendees[0])
    page.add_init_script(FAKE_SOCKET)
    page.clock.install()
    page.goto(live_server(setup.live_path))
    panel = page.locator(".summit-live")
    page.wait_for_function("() => window.__sockets && window.__sockets[0].sent.length === 1")
    join = _frames(page)[0]
    assert join["t"] == "join" and join["room"] == f"s{setup.session_id}"
    identity = tokens.verify(live_server.settings.secret_key, join["token"])
    assert identity.name == "张** · 壹基金" and identity.role == "attendee"
    assert _frames(page)[0]["token"]
    expect(panel.locator("[data-live=status]")).to_have_text(zh("Connecting…"))

    _push(page, _welcome(you=7))
    expect(panel.locator("[data-live=count]")).to_have_text("在线 1,234 人")
    expect(panel.locator("[data-live=status]")).to_be_hidden()
    # A heartbeat every 20 seconds (attendance).
    page.clock.run_for(20_500)
    assert _frames(page)[1:] == [{"t": "hb"}]
    # User text is text, never markup.
    expect(panel.locator("[data-chat='1'] .live-body")).to_have_text(
        "<img src=x onerror=alert(1)>大家好")
    assert panel.locator("[data-live=chat] img").count() == 0

    # Questions: "answering now" first, then by upvotes; upvoting disables the button.
    tab(page, "Questions")
    items = panel.locator("[data-live=questions] > li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-question", "4")
    expect(items.nth(0)).to_contain_text(zh("Answering now"))
    up = panel.locator("[data-question='3'] .live-upvote")
    up.click()
    expect(up).to_be_disabled()
    upvote = _frames(page)[-1]
    assert upvote["t"] == "upvote" and upvote["question"] == 3
    _push(page, {"t": "ack", "ref": upvote["ref"], "question": 3, "upvotes": 3})
    _push(page, {"t": "batch", "events": [{"k": "question", "q": {
        "id": 3, "name": "王*", "body": "乡村学校怎么用好数字资源？", "status": "approved",
        "upvotes": 3, "voted": None, "at": "2026-11-29T02:01:00Z"}}]})
    expect(panel.locator("[data-question='3'] .live-upvotes")).to_have_text("3")
    expect(panel.locator("[data-question='3'] .live-upvote")).to_be_disabled()

    # Asking: my question waits for review, shown only to me.
    panel.locator("[data-form=ask] textarea").fill("企业如何参与？")
    panel.locator("[data-form=ask] button").click()
    ask = _frames(page)[-1]
    assert ask == {"t": "ask", "body": "企业如何参与？", "ref": ask["ref"]}
    _push(page, {"t": "ack", "ref": ask["ref"], "id": 9, "status": "pending"})
    expect(panel.locator("[data-mine='9']")).to_contain_text(zh("Waiting for review"))
    save_screenshot(page, "summit-live-questions")

    # Polls: vote, then results as percentages, updated by batches; closed polls keep them.
    tab(page, "Polls")
    panel.locator("[data-poll='2'] button[data-option='6']").click()
    vote = _frames(page)[-1]
    assert (vote["t"], vote["poll"], vote["option"]) == ("vote", 2, 6)
    _push(page, {"t": "ack", "ref": vote["ref"], "poll": 2, "option": 6})
    _push(page, {"t": "batch", "events": [{"k": "poll", "p": {
        "id": 2, "question": "你最关心哪个议题？", "status": "open", "total": 5, "voted": None,
        "options": [{"id": 5, "label": "乡村教育", "votes": 3},
                    {"id": 6, "label": "养老", "votes": 2}]}}]})
    expect(panel.locator("[data-poll='2'] [data-option='5'] .live-pct")).to_have_text("60%")
    expect(panel.locator("[data-poll='2'] [data-option='6'] .live-pct")).to_have_text("40%")
    expect(panel.locator("[data-poll='2'] [data-option='6']")).to_contain_text(zh("Your choice"))
    save_screenshot(page, "summit-live-polls")

    # Breakout rooms of a roundtable, with counts and links.
    tab(page, "Breakout rooms")
    room = panel.locator("[data-live=rooms] [data-room='r4']")
    expect(room).to_contain_text("8 / 12")
    expect(room.get_by_role("link")).to_have_attribute("href", f"/summits/{setup.slug}/rooms/4")

    # Chat: slow mode says how long to wait; pause closes the form.
    tab(page, "Chat")
    panel.locator("[data-form=chat] input").fill("你好")
    panel.locator("[data-form=chat] button").click()
    chat = _frames(page)[-1]
    _push(page, {"t": "error", "ref": chat["ref"], "code": "slow_mode", "message": "slow",
                 "retry_after": 7})
    expect(panel.locator("[data-error=chat]")).to_have_text(
        zh("Slow mode: you can post again in %(n)s seconds.").replace("%(n)s", "7"))
    page.clock.run_for(1_000)
    expect(panel.locator("[data-error=chat]")).to_contain_text("6")
    _push(page, {"t": "batch", "events": [
        {"k": "settings", "paused": True, "slow": 0, "premoderated": False},
        {"k": "chat", "m": {"id": 2, "user": 7, "name": "张*", "body": "第二条",
                            "at": "2026-11-29T02:03:00Z"}},
        {"k": "chat_removed", "id": 1},
        {"k": "count", "n": 1500},
    ]})
    expect(panel.locator("[data-live=chat-notice]")).to_have_text(
        zh("The host has paused the chat."))
    expect(panel.locator("[data-form=chat] input")).to_be_disabled()
    expect(panel.locator("[data-chat='2']")).to_have_class("live-msg mine")
    expect(panel.locator("[data-chat='1']")).to_have_count(0)
    expect(panel.locator("[data-live=count]")).to_have_text("在线 1,500 人")
    check_fits_phone(page, js_errors)
    screenshot("summit-live-panel")

    # A dropped connection shows "reconnecting…" and comes back with a fresh join.
    page.evaluate("window.__sockets[0].drop(1006)")
    expect(panel.locator("[data-live=status]")).to_have_text(zh("Reconnecting…"))
    # A function, not an expression: Playwright evaluates an expression string with eval,
    # which the page's Content-Security-Policy refuses.
    page.wait_for_function(
        "() => window.__sockets.length === 2 && window.__sockets[1].sent.length")
    assert _frames(page)[0]["t"] == "join"
    _push(page, _welcome(you=7))
    expect(panel.locator("[data-live=status]")).to_be_hidden()
    assert js_errors == []


def test_the_panel_keeps_its_token_fresh_and_asks_to_sign_in_again_when_signed_out(
    live_server: LiveServer, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None],
) -> None:
    """Live tokens last minutes (issue 11): the panel rejoins with the token the server sent
    over the socket, fetches a new one from the token endpoint when the server says its token
    ran out (4001), and on 4011 (signed out) stops and asks the person to sign in again."""
    setup = summit_with_session(live_server)
    sign_in(page, setup.attendees[1])
    page.add_init_script(FAKE_SOCKET)
    page.clock.install()
    page.goto(live_server(setup.live_path))
    panel = page.locator(".summit-live")
    page.wait_for_function("() => window.__sockets && window.__sockets[0].sent.length === 1")
    first = _frames(page)[0]["token"]
    _push(page, _welcome(you=7))
    # The server renews the token over the socket; the next join uses the new one.
    _push(page, {"t": "token", "token": "renewed-token", "expires": 0, "ttl": 300})
    page.evaluate("window.__sockets[0].drop(1006)")
    page.wait_for_function("() => window.__sockets.length === 2 && window.__sockets[1].sent.length")
    assert _frames(page)[0] == {"t": "join", "token": "renewed-token",
                                "room": f"s{setup.session_id}"}
    # The token was refused as expired: a new one from the endpoint (this browser's session).
    _push(page, {"t": "error", "code": "token_expired", "message": "expired"})
    page.evaluate("window.__sockets[1].drop(4001)")
    page.wait_for_function("() => window.__sockets.length === 3 && window.__sockets[2].sent.length")
    fetched = _frames(page)[0]["token"]
    identity = tokens.verify(live_server.settings.secret_key, fetched)
    assert fetched not in (first, "renewed-token") and identity.name == "李*"
    _push(page, _welcome(you=7))
    expect(panel.locator("[data-live=status]")).to_be_hidden()
    # Signed out (here or everywhere): no reconnecting, a message and a way to sign in.
    _push(page, {"t": "error", "code": "session_ended", "message": "ended"})
    page.evaluate("window.__sockets[2].drop(4011)")
    fatal = panel.locator("[data-live=fatal]")
    expect(fatal).to_be_visible()
    expect(fatal).to_contain_text(
        zh("You are no longer signed in: please sign in again to join the discussion."))
    expect(fatal.get_by_role("link", name=zh("Sign in"))).to_have_attribute(
        "href", f"/login?next={setup.live_path}")
    expect(panel.locator("[data-live=status]")).to_be_hidden()
    page.clock.run_for(60_000)  # longer than any reconnect's backoff: none comes
    assert page.evaluate("window.__sockets.length") == 3
    assert js_errors == []


# --- the "Done when": the real gateway --------------------------------------------


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_two_attendees_and_a_moderator_ask_approve_upvote_and_poll_live(
    live_server: LiveServer, new_phone: Callable[[], Page],
    sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server)
    asker, other, moderator = new_phone(), new_phone(), new_phone()
    for person, email in ((asker, setup.attendees[0]), (other, setup.attendees[1]),
                          (moderator, setup.moderator)):
        sign_in(person, email)
    for person in (asker, other):
        person.goto(live_server(setup.live_path))
    moderator.goto(live_server(setup.moderate_path))
    for person in (asker, other, moderator):
        # Joined: the welcome state is applied (the count shows, "connecting" is gone).
        expect(person.locator("[data-live=count]")).to_have_text(
            re.compile(r"^在线 \d+ 人$"), timeout=15_000)
        expect(person.locator("[data-live=status]")).to_be_hidden()

    # One attendee asks; it waits for review, and only the moderator sees it.
    tab(asker, "Questions")
    asker.locator("[data-form=ask] textarea").fill("乡村学校怎么用好数字资源？")
    asker.locator("[data-form=ask] button").click()
    expect(asker.locator("[data-live=mine] li")).to_contain_text(zh("Waiting for review"))
    tab(moderator, "Questions")
    waiting = moderator.locator("[data-live=pending] li", has_text="乡村学校怎么用好数字资源？")
    expect(waiting).to_be_visible()
    expect(waiting).to_contain_text("张** · 壹基金")

    # The moderator approves it; the other attendee sees it and upvotes it.
    waiting.get_by_role("button", name=zh("Approve")).click()
    expect(moderator.locator("[data-live=pending] li")).to_have_count(0)
    tab(other, "Questions")
    question = other.locator("[data-live=questions] li", has_text="乡村学校怎么用好数字资源？")
    expect(question).to_be_visible()
    expect(question.locator(".live-upvotes")).to_have_text("0")
    question.locator(".live-upvote").click()
    expect(question.locator(".live-upvotes")).to_have_text("1")
    expect(question.locator(".live-upvote")).to_be_disabled()
    # The count updates for both attendees; the asker's question left "waiting for review".
    mine = asker.locator("[data-live=questions] li", has_text="乡村学校怎么用好数字资源？")
    expect(mine.locator(".live-upvotes")).to_have_text("1")
    expect(asker.locator("[data-live=mine] li")).to_have_count(0)
    expect(moderator.locator("[data-live=questions] li .live-upvotes")).to_have_text("1")

    # The moderator creates and opens a poll; both attendees vote; results update live.
    tab(moderator, "Polls")
    moderator.locator(".live-new-poll summary").click()
    form = moderator.locator("[data-form=poll]")
    form.locator("[name=question]").fill("你最关心哪个议题？")
    options = form.locator("[name=option]")
    options.nth(0).fill("乡村教育")
    options.nth(1).fill("养老服务")
    form.get_by_role("button", name=zh("Create poll")).click()
    draft = moderator.locator(".live-poll[data-status=draft]", has_text="你最关心哪个议题？")
    draft.get_by_role("button", name=zh("Open poll")).click()
    expect(moderator.locator(".live-poll[data-status=open]")).to_have_count(1)

    for person in (asker, other):
        tab(person, "Polls")
        expect(person.locator(".live-poll[data-status=open]")).to_be_visible()
    asker.locator(".live-poll button.live-option", has_text="乡村教育").click()
    # The asker sees the results at once, then the other's vote arrives live.
    first = asker.locator(".live-poll .live-result", has_text="乡村教育").locator(".live-pct")
    expect(first).to_have_text("100%")
    other.locator(".live-poll button.live-option", has_text="养老服务").click()
    for person in (asker, other, moderator):
        poll = person.locator(".live-poll")
        expect(poll.locator(".live-result", has_text="乡村教育").locator(".live-pct")
               ).to_have_text("50%")
        expect(poll.locator(".live-result", has_text="养老服务").locator(".live-pct")
               ).to_have_text("50%")
        expect(poll.locator(".live-total")).to_contain_text("2")
    expect(asker.locator(".live-result.chosen")).to_contain_text("乡村教育")
    expect(other.locator(".live-result.chosen")).to_contain_text("养老服务")

    # Closing it keeps the results on show.
    moderator.locator(".live-poll").get_by_role("button", name=zh("Close poll")).click()
    expect(other.locator(".live-poll[data-status=closed] .live-pct").first).to_have_text("50%")
    for name, person in (("asker", asker), ("other", other), ("moderator", moderator)):
        save_screenshot(person, f"summit-live-{name}")


def save_screenshot(page: Page, name: str) -> None:
    """A full-page screenshot into ``$SHANJU_SCREENSHOT_DIR`` (CI artifacts), when it is set."""
    folder = os.environ.get("SHANJU_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_roundtable_breakout_room_chat_and_video_link(
    live_server: LiveServer, new_phone: Callable[[], Page],
    sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server, kind=SessionKind.ROUNDTABLE)
    first, second = new_phone(), new_phone()
    sign_in(first, setup.attendees[0])
    sign_in(second, setup.attendees[1])
    # The roundtable's rooms are listed on its live page, each with a way in.
    first.goto(live_server(setup.live_path))
    tab(first, "Breakout rooms")
    rooms = first.locator("[data-live=rooms] li")
    expect(rooms).to_have_count(2)
    expect(rooms.nth(0)).to_contain_text("第1组")
    expect(rooms.nth(0)).to_contain_text("/ 12")
    rooms.nth(0).get_by_role("link", name=zh("Enter")).click()
    expect(first).to_have_url(live_server(f"/summits/{setup.slug}/rooms/{setup.room_ids[0]}"))
    expect(first.get_by_role("link", name=zh("Join the video room"))).to_have_attribute(
        "href", "https://meeting.example.cn/1")
    second.goto(live_server(f"/summits/{setup.slug}/rooms/{setup.room_ids[0]}"))
    for person in (first, second):
        expect(person.locator("[data-live=status]")).to_be_hidden()
        # A breakout room is a small chat: no questions or polls there.
        expect(person.locator(".summit-live [role=tab]:visible")).to_have_count(1)
    first.locator("[data-form=chat] input").fill("大家好，我是壹基金的小张")
    first.locator("[data-form=chat] button").click()
    message = second.locator("[data-live=chat] li", has_text="大家好，我是壹基金的小张")
    expect(message).to_be_visible()
    expect(message.locator(".live-name")).to_have_text("张** · 壹基金")
    expect(first.locator("[data-live=chat] li.mine")).to_have_count(1)


def test_console_queues_and_late_moderator_events(
    live_server: LiveServer, page: Page, js_errors: list[str],
    sign_in: Callable[[Page, str], None],
) -> None:
    setup = summit_with_session(live_server)
    sign_in(page, setup.moderator)
    page.add_init_script(FAKE_SOCKET)
    page.goto(live_server(setup.moderate_path))
    page.wait_for_function("() => window.__sockets && window.__sockets[0].sent.length === 1")
    join = _frames(page)[0]
    assert tokens.verify(live_server.settings.secret_key, join["token"]).name == "主持人 赵**"
    welcome = _welcome(you=50)
    welcome["you"]["role"] = "moderator"
    welcome["state"]["held"] = [{"id": 11, "user": 8, "name": "钱*", "body": "加微信领红包",
                                 "at": "2026-11-29T02:05:00Z"}]
    welcome["state"]["pending"] = [{"id": 12, "name": "孙*", "body": "能分享课件吗？",
                                    "status": "pending", "upvotes": 0, "voted": False,
                                    "at": "2026-11-29T02:06:00Z"}]
    _push(page, welcome)
    panel = page.locator(".summit-live")
    expect(panel.locator("[data-live=held-count]")).to_have_text("1")
    panel.locator("[data-held='11']").get_by_role("button", name=zh("Reject")).click()
    frame = _frames(page)[-1]
    assert (frame["t"], frame["action"], frame["message"]) == ("mod", "chat_reject", 11)
    _push(page, {"t": "ack", "ref": frame["ref"], "message": 11, "status": "rejected"})
    expect(panel.locator("[data-held='11']")).to_have_count(0)

    tab(page, "Questions")
    panel.locator("[data-pending='12']").get_by_role("button", name=zh("Approve")).click()
    frame = _frames(page)[-1]
    assert (frame["action"], frame["question"]) == ("q_approve", 12)
    # Public state first, then the moderators-only older one, in one batch: public wins.
    _push(page, {"t": "batch", "events": [
        {"k": "question", "q": {"id": 12, "name": "孙*", "body": "能分享课件吗？",
                                "status": "approved", "upvotes": 0, "voted": None, "at": "x"}},
        {"k": "pending", "q": {"id": 12, "name": "孙*", "body": "能分享课件吗？",
                               "status": "pending", "upvotes": 0, "voted": None, "at": "x"}},
        {"k": "poll", "p": {"id": 8, "question": "下一场想听什么？", "status": "open",
                            "total": 0, "voted": None,
                            "options": [{"id": 1, "label": "A", "votes": 0},
                                        {"id": 2, "label": "B", "votes": 0}]}},
        {"k": "poll", "p": {"id": 8, "question": "下一场想听什么？", "status": "draft",
                            "total": 0, "voted": None,
                            "options": [{"id": 1, "label": "A", "votes": 0},
                                        {"id": 2, "label": "B", "votes": 0}]}},
    ]})
    expect(panel.locator("[data-live=pending] li")).to_have_count(0)
    expect(panel.locator("[data-live=questions] [data-question='12']")).to_be_visible()
    tab(page, "Polls")
    expect(panel.locator(".live-poll[data-poll='8']")).to_have_attribute("data-status", "open")

    tab(page, "Settings")
    panel.get_by_role("button", name=zh("Pause chat")).click()
    assert _frames(page)[-1]["action"] == "pause"
    _push(page, {"t": "batch", "events": [
        {"k": "settings", "paused": True, "slow": 0, "premoderated": False}]})
    expect(panel.get_by_role("button", name=zh("Resume chat"))).to_be_visible()
    check_fits_phone(page, js_errors)
