"""Who gets which live panel: the register prompt, an attendee's or a moderator's live token,
the console for organizers only, breakout rooms (helper: live UI). Both databases."""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass
from types import SimpleNamespace

from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.requests import Request

from shanju.accounts.models import Role, User
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.summit import tokens
from shanju.summit.live_views import live_context
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    SessionKind,
    Summit,
    SummitRegistration,
    SummitRoom,
    SummitSession,
    SummitStatus,
)
from tests.accounts.helpers import login
from tests.factories import make_org, make_user

SECRET = "test-secret"


@dataclass
class Setup:
    slug: str
    session_id: int
    room_id: int
    delegate: str
    public: str
    pending: str
    host_staff: str
    other_staff: str


def _setup(db: Database, *, status: SummitStatus = SummitStatus.PUBLISHED) -> Setup:
    now = utcnow()
    with db.transaction() as s:
        host = make_org(s, name="中国互联网公益峰会组委会")
        member = make_org(s, name="深圳壹基金公益基金会")
        member.short_name = "壹基金"
        summit = Summit(slug="cloud", title="云峰会", starts_on=now.date(),
                        ends_on=now.date() + dt.timedelta(days=1), status=status,
                        host_organization_id=host.id)
        s.add(summit)
        s.flush()
        session = SummitSession(summit_id=summit.id, kind=SessionKind.ROUNDTABLE, title="圆桌",
                                starts_at=now, ends_at=now + dt.timedelta(hours=1))
        s.add(session)
        s.flush()
        room = SummitRoom(session_id=session.id, name="第1组", video_url="https://meet.example/1")
        s.add(room)
        delegate = make_user(s, display_name="张晓明", organization_id=member.id)
        public = make_user(s, display_name="李华")
        pending = make_user(s, display_name="王五")
        host_staff = make_user(s, role=Role.ORG_STAFF, display_name="赵六",
                               organization_id=host.id)
        other_staff = make_user(s, role=Role.ORG_STAFF, display_name="钱七",
                                organization_id=member.id)
        s.add_all([
            SummitRegistration(summit_id=summit.id, user_id=delegate.id,
                               kind=RegistrationKind.DELEGATE, organization_id=member.id,
                               status=RegistrationStatus.APPROVED),
            SummitRegistration(summit_id=summit.id, user_id=public.id,
                               kind=RegistrationKind.AUDIENCE, status=RegistrationStatus.APPROVED),
            SummitRegistration(summit_id=summit.id, user_id=pending.id,
                               kind=RegistrationKind.AUDIENCE, status=RegistrationStatus.PENDING),
        ])
        s.flush()
        return Setup(summit.slug, session.id, room.id, delegate.email, public.email,
                     pending.email, host_staff.email, other_staff.email)


def _token(page: str) -> tokens.LiveIdentity:
    match = re.search(r'data-token="([^"]+)"', page)
    assert match, "no live token on the page"
    return tokens.verify(SECRET, html.unescape(match.group(1)))


def test_anonymous_and_unregistered_people_get_the_register_prompt(
    client: TestClient, db: Database,
) -> None:
    setup = _setup(db)
    path = f"/summits/{setup.slug}/sessions/{setup.session_id}/live"
    page = client.get(path).text
    assert f'href="/summits/{setup.slug}/register"' in page
    assert "data-token" not in page and "summit-live.js" not in page
    assert "/login?next=" in page
    login(client, setup.pending)  # applied, not approved yet
    page = client.get(path).text
    assert f'href="/summits/{setup.slug}/register"' in page
    assert "data-token" not in page


def test_attendees_get_a_masked_token_delegates_with_their_organization(
    client: TestClient, db: Database,
) -> None:
    setup = _setup(db)
    path = f"/summits/{setup.slug}/sessions/{setup.session_id}/live"
    login(client, setup.delegate)
    page = client.get(path).text
    identity = _token(page)
    assert (identity.role, identity.name) == ("attendee", "张** · 壹基金")
    assert identity.organization_id is not None
    assert f'data-room="s{setup.session_id}"' in page
    assert 'data-ws-path="/summit/live"' in page
    assert "/moderate" not in page
    client.cookies.clear()
    login(client, setup.public)
    identity = _token(client.get(path).text)
    assert (identity.role, identity.name, identity.organization_id) == ("attendee", "李*", None)


def test_organizers_moderate_others_may_not_open_the_console(
    client: TestClient, db: Database,
) -> None:
    setup = _setup(db)
    console = f"/summits/{setup.slug}/sessions/{setup.session_id}/moderate"
    anonymous = client.get(console, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    login(client, setup.other_staff)  # staff of another organization
    refused = client.get(console)
    assert refused.status_code == 403 and 'data-code="forbidden"' in refused.text
    client.cookies.clear()
    login(client, setup.host_staff)
    page = client.get(f"/summits/{setup.slug}/sessions/{setup.session_id}/live").text
    assert (_token(page).role, _token(page).name) == ("moderator", "主持人 赵*")
    assert f'href="{console}"' in page
    page = client.get(console).text
    assert 'data-console="true"' in page and 'data-form="poll"' in page
    assert f'href="/summits/{setup.slug}/rooms/{setup.room_id}"' in page


def test_breakout_room_shows_its_video_link_only_to_participants(
    client: TestClient, db: Database,
) -> None:
    setup = _setup(db)
    path = f"/summits/{setup.slug}/rooms/{setup.room_id}"
    page = client.get(path).text
    assert "https://meet.example/1" not in page
    assert "data-token" not in page
    login(client, setup.public)
    page = client.get(path).text
    assert "https://meet.example/1" in page
    assert f'data-room="r{setup.room_id}"' in page
    assert client.get(f"/summits/{setup.slug}/rooms/999999").status_code == 404


def test_draft_summits_have_no_live_panel(client: TestClient, db: Database) -> None:
    setup = _setup(db, status=SummitStatus.DRAFT)
    login(client, setup.delegate)
    path = f"/summits/{setup.slug}/sessions/{setup.session_id}/live"
    assert client.get(path).status_code == 404
    with db.transaction(write=False) as s:
        session = s.get(SummitSession, setup.session_id)
        assert session is not None
        summit = s.get(Summit, session.summit_id)
        assert summit is not None
        app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(secret_key=SECRET)))
        request = Request({"type": "http", "app": app, "path": "/", "headers": [],
                           "query_string": b""})
        assert live_context(request, s, summit=summit, session=session, user=None) is None


def test_the_token_endpoint_gives_a_signed_in_browser_a_fresh_token_for_what_it_is_now(
    client: TestClient, db: Database,
) -> None:
    """What the live panel asks when its token ran out or its role changed."""
    setup = _setup(db)
    url = f"/api/v1/summits/{setup.slug}/live-token"
    anonymous = client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    login(client, setup.pending)  # applied, not approved yet
    refused = client.get(url)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_registered")
    client.cookies.clear()
    login(client, setup.host_staff)
    got = client.get(url)
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    body = got.json()
    identity = tokens.verify(SECRET, body["token"])
    assert (body["role"], identity.role, identity.name) == ("moderator", "moderator", "主持人 赵*")
    assert body["ttl"] == 300 and identity.session_id > 0
    # Moved out of the host organization: no longer an organizer, not registered either.
    with db.transaction() as s:
        s.execute(update(User).where(User.email == setup.host_staff)
                  .values(organization_id=None))
    assert client.get(url).json()["error"]["code"] == "not_registered"
    assert client.get("/api/v1/summits/nowhere/live-token").status_code == 404
