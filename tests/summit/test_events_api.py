"""The summit's events API and pages: reading, organizers' changes with stable error codes,
the agenda (API and no-JS forms), the iCal exports parsed back, and the organizers' console."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from icalendar import Calendar

from shanju.accounts.models import Role
from shanju.core.db import Database
from tests.accounts.helpers import csrf, login
from tests.factories import make_user
from tests.summit.events_data import World, build_summit, cn


def _world(db: Database, **kwargs: object) -> World:
    with db.transaction() as session:
        return build_summit(session, **kwargs)  # type: ignore[arg-type]


def _sign_in(client: TestClient, db: Database, role: Role = Role.DONOR) -> dict[str, str]:
    with db.transaction() as session:
        user = make_user(session, role=role)
        email = user.email
    assert login(client, email).status_code == 303
    return {"X-CSRF-Token": csrf(client)}


def _as_organizer(client: TestClient, db: Database, world: World) -> dict[str, str]:
    with db.transaction() as session:
        from shanju.accounts.models import User

        user = session.get(User, world.organizer_id)
        assert user is not None
        email = user.email
    assert login(client, email).status_code == 303
    return {"X-CSRF-Token": csrf(client)}


def test_reading_the_timetable_and_a_speaker(client: TestClient, db: Database) -> None:
    world = _world(db)
    day1, day2 = world.day1, world.day2
    listed = client.get("/api/v1/summits").json()["items"]
    assert [s["slug"] for s in listed] == [world.slug]
    summit = client.get(f"/api/v1/summits/{world.slug}").json()
    days = [day1.isoformat(), day2.isoformat()]
    assert summit["days"] == days
    table = client.get(f"/api/v1/summits/{world.slug}/timetable").json()
    assert [d["date"] for d in table["days"]] == days
    first = table["days"][0]["sessions"][0]
    assert first["id"] == world.keynote_id and first["kind"] == "keynote"
    # 09:00 China time, in UTC
    assert first["starts_at"].startswith(f"{day1.isoformat()}T01:00:00")
    assert [s["role"] for s in first["speakers"]] == ["speaker", "host"]
    assert first["url"] == f"/summits/{world.slug}/sessions/{world.keynote_id}"
    rt = client.get(f"/api/v1/summits/{world.slug}/sessions/{world.roundtable_id}").json()
    assert [r["name"] for r in rt["rooms"]] == ["A 组", "B 组"]
    speaker = client.get(f"/api/v1/summits/{world.slug}/speakers/{world.speaker_ids[1]}").json()
    assert [s["id"] for s in speaker["sessions"]] == [world.keynote_id, world.roundtable_id]
    assert len(client.get(f"/api/v1/summits/{world.slug}/speakers").json()["items"]) == 2
    now = client.get(f"/api/v1/summits/{world.slug}/now").json()
    assert "live" in now and "next" in now
    missing = client.get("/api/v1/summits/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "summit_not_found"
    other = client.get(f"/api/v1/summits/{world.slug}/sessions/999999")
    assert other.json()["error"]["code"] == "session_not_found"


def test_drafts_are_not_found_for_others(client: TestClient, db: Database) -> None:
    world = _world(db, slug="draft-one", publish=False)
    assert client.get(f"/api/v1/summits/{world.slug}").status_code == 404
    assert client.get(f"/summits/{world.slug}").status_code == 404
    assert client.get("/api/v1/summits").json()["items"] == []
    headers = _as_organizer(client, db, world)
    assert client.get(f"/api/v1/summits/{world.slug}").json()["status"] == "draft"
    published = client.post(f"/api/v1/summits/{world.slug}/publish", headers=headers)
    assert published.json()["status"] == "published"


def test_organizers_edit_through_the_api_with_error_codes(client: TestClient,
                                                          db: Database) -> None:
    world = _world(db)
    day1, day2 = world.day1, world.day2
    # Not signed in, then a donor: 401, then 403 organizer_only.
    body = {"kind": "forum", "title": "新分论坛", "starts_at": cn(day1, 14).isoformat(),
            "ends_at": cn(day1, 15).isoformat()}
    assert client.post(f"/api/v1/summits/{world.slug}/sessions", json=body).status_code == 401
    headers = _sign_in(client, db)
    denied = client.post(f"/api/v1/summits/{world.slug}/sessions", json=body, headers=headers)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "organizer_only"
    client.cookies.clear()

    headers = _as_organizer(client, db, world)
    created = client.post(f"/api/v1/summits/{world.slug}/sessions", json=body, headers=headers)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert created.json()["day"] == day1.isoformat()

    def error(method: str, path: str, payload: object) -> tuple[int, str, str | None]:
        response = client.request(method, f"/api/v1/summits/{world.slug}{path}", json=payload,
                                  headers=headers)
        err = response.json()["error"]
        return response.status_code, err["code"], err.get("field")

    after = day2 + dt.timedelta(days=1)  # the day after the summit
    assert error("POST", "/sessions", {**body, "ends_at": cn(day1, 13).isoformat()}) == (
        422, "ends_before_starts", "ends_at")
    assert error("POST", "/sessions", {**body, "starts_at": cn(after, 9).isoformat(),
                                       "ends_at": cn(after, 10).isoformat()}) == (
        422, "outside_summit_days", "starts_at")
    assert error("PATCH", f"/sessions/{session_id}", {"stream_url": "https://x.test/a.flv"}) == (
        422, "stream_not_hls", "stream_url")
    assert error("PATCH", f"/sessions/{session_id}", {"player_url": "http://x.test/p"}) == (
        422, "https_required", "player_url")
    assert error("PATCH", f"/sessions/{session_id}", {"replay_url": "javascript:x"}) == (
        422, "invalid_url", "replay_url")
    assert error("POST", f"/sessions/{session_id}/rooms", {"name": "A"}) == (
        409, "not_a_roundtable", None)
    assert error("POST", "/tracks", {"name": "x", "color": "blue"}) == (
        422, "invalid_color", "color")
    assert client.post(f"/api/v1/summits/{world.slug}/sessions/{session_id}/status",
                       json={"status": "ended"}, headers=headers).json()["status"] == "ended"
    assert error("POST", f"/sessions/{session_id}/status", {"status": "live"}) == (
        409, "invalid_status_change", "status")
    assert error("POST", "/sessions", {**body, "unknown": 1})[1] == "validation_error"

    patched = client.patch(f"/api/v1/summits/{world.slug}/sessions/{world.forum_id}",
                           json={"stream_url": "https://cdn.example.test/f/index.m3u8",
                                 "player_url": None}, headers=headers)
    assert patched.status_code == 200
    assert patched.json()["stream_url"].endswith(".m3u8") and patched.json()["player_url"] is None
    speakers = client.put(f"/api/v1/summits/{world.slug}/sessions/{world.forum_id}/speakers",
                          json={"speakers": [{"speaker_id": world.speaker_ids[1],
                                              "role": "host"}]}, headers=headers)
    assert [s["name"] for s in speakers.json()["speakers"]] == ["李华"]
    room = client.post(f"/api/v1/summits/{world.slug}/sessions/{world.roundtable_id}/rooms",
                       json={"name": "C 组", "video_url": "https://meeting.example.test/c"},
                       headers=headers)
    assert room.status_code == 201
    renamed = client.patch(
        f"/api/v1/summits/{world.slug}/sessions/{world.roundtable_id}/rooms/{room.json()['id']}",
        json={"topic": "乡村儿童"}, headers=headers)
    assert renamed.json()["topic"] == "乡村儿童"
    rooms = f"/api/v1/summits/{world.slug}/sessions/{world.roundtable_id}/rooms"
    assert client.delete(f"{rooms}/{room.json()['id']}", headers=headers).status_code == 204
    gone = client.delete(f"{rooms}/{room.json()['id']}", headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "room_not_found"
    summit = client.patch(f"/api/v1/summits/{world.slug}", json={"tagline": "新标语"},
                          headers=headers)
    assert summit.json()["tagline"] == "新标语"
    next_year = [str(day + dt.timedelta(days=365)) for day in (day1, day2)]
    new = client.post("/api/v1/summits", json={"slug": "next-year", "title": "明年",
                                               "starts_on": next_year[0],
                                               "ends_on": next_year[1]}, headers=headers)
    assert new.status_code == 201 and new.json()["status"] == "draft"


def test_agenda_api(client: TestClient, db: Database) -> None:
    world = _world(db)
    assert client.get(f"/api/v1/summits/{world.slug}/agenda").status_code == 401
    headers = _sign_in(client, db)
    base = f"/api/v1/summits/{world.slug}/agenda"
    assert client.put(f"{base}/{world.roundtable_id}", headers=headers).status_code == 200
    agenda = client.put(f"{base}/{world.keynote_id}", headers=headers).json()
    assert [s["id"] for s in agenda["sessions"]] == [world.keynote_id, world.roundtable_id]
    assert agenda["ics_url"] == f"/summits/{world.slug}/agenda.ics"
    assert client.put(f"{base}/{world.keynote_id}", headers=headers).status_code == 200
    assert client.delete(f"{base}/{world.keynote_id}", headers=headers).status_code == 204
    assert client.delete(f"{base}/{world.keynote_id}", headers=headers).status_code == 204
    assert [s["id"] for s in client.get(base).json()["sessions"]] == [world.roundtable_id]
    # Without the CSRF header a cookie-authenticated change is refused.
    refused = client.put(f"{base}/{world.keynote_id}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"


def _events(body: bytes) -> list[object]:
    cal = Calendar.from_ical(body)
    return list(cal.walk("VEVENT"))


def test_ical_exports_parse_back(client: TestClient, db: Database) -> None:
    world = _world(db)
    day1 = world.day1
    with db.transaction() as session:
        from shanju.summit.models import SummitSession

        forum = session.get(SummitSession, world.forum_id)
        assert forum is not None
        forum.title = "数字公益, 分论坛; 第一场\\总结"  # characters iCal must escape
        forum.description = "第一行\n第二行"

    response = client.get(f"/summits/{world.slug}/timetable.ics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    assert b"\r\n" in response.content
    events = _events(response.content)
    assert len(events) == 3
    # UIDs are stable: the session's id at the site's host (settings.base_url).
    by_uid = {str(e["UID"]).split("@")[0]: e for e in events}  # type: ignore[index]
    assert all(str(e["UID"]).endswith("@127.0.0.1") for e in events)  # type: ignore[index]
    forum_event = by_uid[f"summit-session-{world.forum_id}"]
    assert str(forum_event["SUMMARY"]) == "数字公益, 分论坛; 第一场\\总结"  # type: ignore[index]
    assert "第一行\n第二行" in str(forum_event["DESCRIPTION"])  # type: ignore[index]
    start = forum_event["DTSTART"].dt  # type: ignore[index]
    assert start == cn(day1, 10, 30).astimezone(dt.UTC)
    assert start.utcoffset() == dt.timedelta(0)
    assert forum_event["DTEND"].dt == cn(day1, 12).astimezone(dt.UTC)  # type: ignore[index]
    assert str(forum_event["LOCATION"]).endswith(  # type: ignore[index]
        f"/summits/{world.slug}/sessions/{world.forum_id}")
    assert f"DTSTART:{day1:%Y%m%d}T023000Z".encode() in response.content

    # My agenda: signed in only; the same UIDs as the timetable.
    signed_out = client.get(f"/summits/{world.slug}/agenda.ics", follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == f"/login?next=/summits/{world.slug}/agenda.ics"
    headers = _sign_in(client, db)
    client.put(f"/api/v1/summits/{world.slug}/agenda/{world.forum_id}", headers=headers)
    mine = _events(client.get(f"/summits/{world.slug}/agenda.ics").content)
    assert [str(e["UID"]) for e in mine] == [  # type: ignore[index]
        f"summit-session-{world.forum_id}@127.0.0.1"]


def test_pages_and_the_no_js_agenda_form(client: TestClient, db: Database) -> None:
    world = _world(db)
    day1, day2 = world.day1, world.day2
    home = client.get(f"/summits/{world.slug}")
    assert home.status_code == 200
    assert "从不会掉线" in home.text and f'href="/summits/{world.slug}/register"' in home.text
    assert client.get("/summits").status_code == 200
    page = client.get(f"/summits/{world.slug}/timetable?day={day1.isoformat()}")
    assert page.status_code == 200
    assert 'kind-keynote">主旨演讲</span>' in page.text
    assert 'kind-forum">分论坛</span>' in page.text
    assert client.get(f"/summits/{world.slug}/timetable?day={day2.isoformat()}").text.count(
        'class="card session-card"') == 1
    assert client.get(f"/summits/{world.slug}/timetable?day=garbage").status_code == 200
    assert client.get(f"/summits/{world.slug}/speakers").status_code == 200
    assert "二十年公益经验" in client.get(
        f"/summits/{world.slug}/speakers/{world.speaker_ids[0]}").text

    stage = client.get(f"/summits/{world.slug}/sessions/{world.roundtable_id}").text
    assert "https://meeting.example.test/A" in stage  # breakout rooms' video links
    assert 'kind-roundtable">圆桌</span>' in stage

    # Signed out, the form leads to sign-in and back to the timetable.
    token = csrf(client)
    back = f"/summits/{world.slug}/timetable?day={day1.isoformat()}"
    answer = client.post(f"/summits/{world.slug}/agenda", data={
        "csrf_token": token, "session_id": str(world.forum_id), "next": back},
        follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    _sign_in(client, db)
    answer = client.post(f"/summits/{world.slug}/agenda", data={
        "csrf_token": csrf(client), "session_id": str(world.forum_id), "next": back},
        follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{back}#session-{world.forum_id}"
    agenda = client.get(f"/summits/{world.slug}/agenda").text
    assert "数字公益分论坛" in agenda and f"/summits/{world.slug}/agenda.ics" in agenda
    # An outside "next" is not followed.
    answer = client.post(f"/summits/{world.slug}/agenda", data={
        "csrf_token": csrf(client), "session_id": str(world.forum_id), "action": "remove",
        "next": "https://evil.example/"}, follow_redirects=False)
    assert answer.headers["location"].startswith(f"/summits/{world.slug}/timetable")
    assert "数字公益分论坛" not in client.get(f"/summits/{world.slug}/agenda").text
    # No Chinese label followed by an ASCII colon.
    for path in (f"/summits/{world.slug}", f"/summits/{world.slug}/timetable",
                 f"/summits/{world.slug}/sessions/{world.keynote_id}"):
        html = client.get(path).text
        visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", html,
                                                   flags=re.S))
        assert not re.search(r"[\u4e00-\u9fff]\s*:\s", visible), path


def test_console_sets_status_and_urls_with_readable_errors(client: TestClient,
                                                           db: Database) -> None:
    world = _world(db)
    _sign_in(client, db)
    assert client.get(f"/summits/{world.slug}/console").status_code == 403
    client.cookies.clear()
    _as_organizer(client, db, world)
    assert client.get(f"/summits/{world.slug}/console").status_code == 200
    path = f"/summits/{world.slug}/console/sessions/{world.keynote_id}"
    assert client.get(path).status_code == 200
    bad = client.post(path, data={"csrf_token": csrf(client), "status": "live",
                                  "stream_url": "https://cdn.example.test/live.flv"})
    assert bad.status_code == 422
    assert 'data-code="stream_not_hls"' in bad.text
    assert "https://cdn.example.test/live.flv" in bad.text  # the form keeps what was typed
    stage = client.get(f"/api/v1/summits/{world.slug}/sessions/{world.keynote_id}").json()
    assert stage["status"] == "scheduled"  # nothing was saved
    good = client.post(path, data={"csrf_token": csrf(client), "status": "live",
                                   "stream_url": "https://cdn.example.test/k/index.m3u8",
                                   "replay_url": ""}, follow_redirects=False)
    assert good.status_code == 303
    stage = client.get(f"/api/v1/summits/{world.slug}/sessions/{world.keynote_id}").json()
    assert stage["status"] == "live"
    assert stage["stream_url"] == "https://cdn.example.test/k/index.m3u8"
    page = client.get(f"/summits/{world.slug}/sessions/{world.keynote_id}").text
    assert 'data-hls-src="https://cdn.example.test/k/index.m3u8"' in page
    assert "/static/vendor/hls.js/hls.min.js" in page
    back = client.post(path, data={"csrf_token": csrf(client), "status": "scheduled"})
    assert back.status_code == 409 and 'data-code="invalid_status_change"' in back.text
