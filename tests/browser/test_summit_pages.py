"""The summit's pages on a phone: the timetable, adding a session to my agenda without
JavaScript tricks (a plain form), the agenda's .ics download, and the stage: hls.js (or native
HLS) attached to an HLS session's video, a provider's player page in an iframe.

No remote media is fetched: the stream and player hosts are answered by Playwright's router.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from icalendar import Calendar
from playwright.sync_api import Page, Route, expect

from shanju.accounts.models import User
from shanju.summit import service
from shanju.summit.models import SessionStatus, SummitSession
from shanju.summit.schemas import SessionIn
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.summit.events_data import World, build_summit

pytestmark = pytest.mark.browser

PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXTINF:2.0,\nseg0.ts\n"
)


def _world(live_server: LiveServer, *, live: bool = False) -> World:
    with live_server.database.transaction() as session:
        world = build_summit(session)
        if live:
            organizer = session.get(User, world.organizer_id)
            summit = service.get_summit(session=session, slug=world.slug, viewer=organizer)
            for session_id in (world.keynote_id, world.forum_id):
                row = session.get(SummitSession, session_id)
                assert row is not None
                service.do_set_status(session=session, actor=organizer, summit=summit,
                                      summit_session=row, status=SessionStatus.LIVE)
        return world


def test_timetable_to_agenda_and_ics_on_a_phone(
    page: Page, live_server: LiveServer, js_errors: list[str],
    sign_in: Callable[[Page, str], None], screenshot: Callable[[str], Path], tmp_path: Path,
) -> None:
    world = _world(live_server)
    donor = live_server.create_user()
    for path in ("/summits", f"/summits/{world.slug}", f"/summits/{world.slug}/speakers",
                 f"/summits/{world.slug}/speakers/{world.speaker_ids[0]}",
                 f"/summits/{world.slug}/sessions/{world.roundtable_id}"):
        response = page.goto(live_server(path))
        assert response is not None and response.status == 200, path
        check_fits_phone(page, js_errors)
        screenshot("summit" + re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/summits")))
    expect(page.locator(".room")).to_have_count(2)

    sign_in(page, donor.email)
    page.goto(live_server(f"/summits/{world.slug}/timetable"))
    check_fits_phone(page, js_errors)
    day_tabs = page.locator(".day-tabs a")
    expect(day_tabs).to_have_count(2)
    expect(page.locator(".session-card .kind-keynote").first).to_have_text(zh("Keynote"))
    screenshot("summit-timetable")

    card = page.locator(f"#session-{world.forum_id}")
    card.locator('button[data-agenda="add"]').click()
    expect(page).to_have_url(re.compile(r"/timetable"))
    expect(page.locator(f'#session-{world.forum_id} button[data-agenda="remove"]')).to_be_visible()

    # Day 2 through its tab; the roundtable is there.
    day_tabs.nth(1).click()
    expect(page.locator(f"#session-{world.roundtable_id}")).to_be_visible()
    expect(page.locator(f"#session-{world.forum_id}")).to_have_count(0)
    expect(page.locator(f"#session-{world.roundtable_id} .kind-roundtable")).to_have_text(
        zh("Roundtable"))

    page.goto(live_server(f"/summits/{world.slug}/agenda"))
    check_fits_phone(page, js_errors)
    expect(page.locator(".session-card")).to_have_count(1)
    expect(page.locator(f"#session-{world.forum_id}")).to_contain_text("数字公益分论坛")
    screenshot("summit-agenda")

    with page.expect_download() as info:
        page.locator("#agenda-ics").click()
    download = info.value
    assert download.suggested_filename == f"{world.slug}-agenda.ics"
    saved = tmp_path / "agenda.ics"
    download.save_as(saved)
    events = list(Calendar.from_ical(saved.read_bytes()).walk("VEVENT"))
    assert [str(e["SUMMARY"]) for e in events] == ["数字公益分论坛"]


# Chromium now plays HLS natively; hiding that exercises the hls.js path (as on Firefox).
NO_NATIVE_HLS = """
const canPlay = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /mpegurl/i.test(type) ? "" : canPlay.call(this, type);
};
"""


@pytest.mark.parametrize("native", [True, False], ids=["as-is", "without-native-hls"])
def test_stage_plays_hls_with_hlsjs_or_natively_and_embeds_a_player_page(
    page: Page, live_server: LiveServer, js_errors: list[str],
    screenshot: Callable[[str], Path], native: bool,
) -> None:
    world = _world(live_server, live=True)
    if not native:
        page.add_init_script(NO_NATIVE_HLS)
    requested: list[str] = []

    def stream(route: Route) -> None:
        requested.append(route.request.url)
        if route.request.url.endswith(".m3u8"):
            route.fulfill(status=200, body=PLAYLIST,
                          content_type="application/vnd.apple.mpegurl")
        else:
            route.fulfill(status=404, body="")

    page.route("https://live.example.test/**", stream)
    page.route("https://player.example.test/**", lambda route: route.fulfill(
        status=200, body="<!doctype html><title>player</title><p id=p>provider player</p>",
        content_type="text/html"))

    page.goto(live_server(f"/summits/{world.slug}/sessions/{world.keynote_id}"))
    check_fits_phone(page, js_errors)
    video = page.locator("video#stage-video")
    src = "https://live.example.test/keynote/index.m3u8"
    expect(video).to_have_attribute("data-hls-src", src)
    expect(video).to_have_attribute("data-player", re.compile(r"^(hls\.js|native)$"))
    player = video.get_attribute("data-player")
    if not native:
        assert player == "hls.js"
    if player == "hls.js":
        attached = page.evaluate(
            "() => { const s = window.summitStage; return !!(window.Hls && s && s.hls && "
            "s.hls.url === s.video.getAttribute('data-hls-src') && "
            "s.hls.media === document.getElementById('stage-video')); }")
        assert attached
        # Watched from here, not with the page's performance entries: a moved page clock
        # (scripts/year_ahead) replaces `performance` with one that records none.
        deadline = time.monotonic() + 10
        while src not in requested and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert src in requested  # hls.js loaded the playlist (answered locally)
    else:
        assert page.evaluate("document.getElementById('stage-video').src") == src
    screenshot(f"summit-stage-hls-{player}")

    page.goto(live_server(f"/summits/{world.slug}/sessions/{world.forum_id}"))
    check_fits_phone(page, js_errors)
    frame = page.locator("iframe#stage-frame")
    expect(frame).to_have_attribute("src", "https://player.example.test/embed/forum")
    expect(page.frame_locator("iframe#stage-frame").locator("#p")).to_have_text(
        "provider player")
    expect(page.locator("video")).to_have_count(0)
    assert page.evaluate("typeof window.Hls") == "undefined"  # hls.js only where needed
    screenshot("summit-stage-iframe")

    # Before it starts: the countdown ticks.
    page.goto(live_server(f"/summits/{world.slug}/sessions/{world.roundtable_id}"))
    check_fits_phone(page, js_errors)
    expect(page.locator("[data-countdown]")).to_contain_text(re.compile(r"\d{2}:\d{2}:\d{2}"))


def test_a_waiting_stage_reloads_when_the_stream_is_set(
    page: Page, live_server: LiveServer, js_errors: list[str],
) -> None:
    world = _world(live_server)
    with live_server.database.transaction() as session:
        organizer = session.get(User, world.organizer_id)
        summit = service.get_summit(session=session, slug=world.slug, viewer=organizer)
        row = session.get(SummitSession, world.roundtable_id)
        assert row is not None
        service.do_set_status(session=session, actor=organizer, summit=summit,
                              summit_session=row, status=SessionStatus.LIVE)
    page.route("https://live.example.test/**", lambda route: route.fulfill(
        status=200, body=PLAYLIST, content_type="application/vnd.apple.mpegurl"))
    page.add_init_script("window.summitStagePollMs = 200;")
    page.goto(live_server(f"/summits/{world.slug}/sessions/{world.roundtable_id}"))
    check_fits_phone(page, js_errors)
    expect(page.locator(".stage-placeholder")).to_be_visible()
    expect(page.locator("video")).to_have_count(0)

    with live_server.database.transaction() as session:
        organizer = session.get(User, world.organizer_id)
        summit = service.get_summit(session=session, slug=world.slug, viewer=organizer)
        row = session.get(SummitSession, world.roundtable_id)
        assert row is not None
        service.do_update_session(session=session, actor=organizer, summit=summit,
                                  summit_session=row, data=SessionIn(
            stream_url="https://live.example.test/rt/index.m3u8"))
    # The page notices on its own and reloads into the player.
    expect(page.locator("video#stage-video")).to_have_attribute(
        "data-hls-src", "https://live.example.test/rt/index.m3u8")
    assert js_errors == []
