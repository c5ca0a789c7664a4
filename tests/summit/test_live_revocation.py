"""Live tokens end with what they stand for (issue 11, item 6): a real uvicorn server, real
``websockets`` clients, both databases.

A signed-out browser's token can no longer join and its open socket is closed within seconds
(4011); so is a deactivated person's; an organizer whose role is taken away loses the
moderator's actions within seconds (4012) and comes back, with a new token, as what they are
now; an expired token is refused and cannot post; a connection is sent renewed tokens and
outlives its first one; joins of known sessions cost no query, new ones are checked in
batches. Short lifetimes and sweep intervals are configured (no real minutes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import delete, func, select, update
from websockets.asyncio.client import connect

from shanju.accounts.models import Role, User, WebSession
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.summit import tokens
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    Summit,
    SummitRegistration,
)
from tests.factories import PASSWORD, make_org, make_user
from tests.summit.live_support import (
    OPEN_TIMEOUT,
    SECRET,
    Client,
    Server,
    World,
    add_people,
    join,
    make_world,
    refused_join,
    serve,
)

SWEEP = 0.2  # seconds between revocation sweeps in these tests
WITHIN = 5.0  # what "within seconds" means here: 25 sweeps, generous on a busy machine


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db)


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[Server]:
    with serve(db, tmp_path, tick_ms=50, sweep_seconds=SWEEP) as running:
        yield running


async def dropped(client: Client, code: str) -> int | None:
    """The error ``code`` the server sends before it closes the connection, then the close
    code; fails unless both come within :data:`WITHIN` seconds."""
    started = time.monotonic()
    error = await client.error(timeout=WITHIN)
    assert error["code"] == code, error
    close = await client.closed(timeout=WITHIN)
    assert time.monotonic() - started < WITHIN
    return close


def register(db: Database, summit_id: int, user_id: int) -> None:
    with db.transaction() as s:
        s.add(SummitRegistration(summit_id=summit_id, user_id=user_id,
                                 kind=RegistrationKind.AUDIENCE,
                                 status=RegistrationStatus.APPROVED))


# --- sign-out ---------------------------------------------------------------------------------


class Browser:
    """A person's browser against the test server: sign in, read pages, sign out."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base, follow_redirects=False, timeout=30)

    def csrf(self) -> str:
        if "sj_csrf" not in self.http.cookies:
            self.http.get("/login")
        return str(self.http.cookies["sj_csrf"])

    def sign_in(self, email: str) -> None:
        response = self.http.post("/login", data={"email": email, "password": PASSWORD,
                                                  "next": "/", "csrf_token": self.csrf()})
        assert response.status_code == 303 and "sj_session" in self.http.cookies, response.text

    def live_token(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200
        match = re.search(r'data-token="([^"]+)"', page.text)
        assert match, "no live token on the page"
        return html.unescape(match.group(1))

    def sign_out(self) -> None:
        assert self.http.post("/logout", data={"csrf_token": self.csrf()}).status_code == 303


def test_after_sign_out_the_token_cannot_join_and_the_socket_is_closed(
    server: Server, world: World, db: Database,
) -> None:
    register(db, world.summit_id, world.attendee_a)
    with db.transaction(write=False) as s:
        email = s.get(User, world.attendee_a).email  # type: ignore[union-attr]
    browser = Browser(server)
    browser.sign_in(email)
    token = browser.live_token(f"/summits/live-a/sessions/{world.session_id}/live")
    assert tokens.verify(SECRET, token).user_id == world.attendee_a
    # Another browser of the same person stays signed in, and in the room.
    other = world.token(world.attendee_a)

    async def run() -> None:
        a = await join(server, token, world.stage)
        kept = await join(server, other, world.stage)
        assert (await a.request("c1", t="chat", body="还在"))["status"] == "visible"
        await asyncio.to_thread(browser.sign_out)
        browser.http.close()
        assert await dropped(a, "session_ended") == 4011
        frame, code = await refused_join(server, token, world.stage)
        assert (frame["code"], code) == ("session_ended", 4011)
        # The other browser's connection was not touched.
        assert (await kept.request("c2", t="chat", body="我还在"))["status"] == "visible"
        await kept.ws.close()

    asyncio.run(run())


def test_a_token_of_a_session_signed_out_before_the_join_is_refused(
    server: Server, world: World, db: Database,
) -> None:
    """No connection of this process ever used the session: the join itself is checked."""
    token = world.token(world.attendee_b)
    with db.transaction() as s:
        s.execute(delete(WebSession).where(WebSession.user_id == world.attendee_b))

    async def run() -> None:
        frame, code = await refused_join(server, token, world.stage)
        assert (frame["code"], code) == ("session_ended", 4011)
        # Another person's session in a token of someone else's is no session at all.
        stolen = world.token(world.attendee_b, session_id=world.web_sessions[world.attendee_a])
        frame, code = await refused_join(server, stolen, world.stage)
        assert (frame["code"], code) == ("session_ended", 4011)

    asyncio.run(run())


def test_an_expired_session_ends_the_connection(
    server: Server, world: World, db: Database,
) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        with db.transaction() as s:
            s.execute(update(WebSession).where(WebSession.user_id == world.attendee_a)
                      .values(expires_at=WebSession.created_at))
        assert await dropped(a, "session_ended") == 4011

    asyncio.run(run())


def test_a_session_idle_past_its_timeout_ends_the_connection(
    server: Server, world: World, db: Database,
) -> None:
    """The idle timeouts of pages (ADR 0022) hold in the live rooms too: a session whose last
    activity is older than its role allows is dropped like a signed-out one."""
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        long_ago = utcnow() - dt.timedelta(days=30)  # donors: 7 days
        # The sweep records a connected session's activity at most once a minute: wait for
        # its first record, then make the session look idle.
        await until(lambda: _last_seen(db, world.attendee_a) > utcnow() - dt.timedelta(
            seconds=30))
        with db.transaction() as s:
            s.execute(update(WebSession).where(WebSession.user_id == world.attendee_a)
                      .values(last_seen_at=long_ago))
        assert await dropped(a, "session_ended") == 4011

    asyncio.run(run())


def test_being_in_a_live_room_counts_as_activity(
    server: Server, world: World, db: Database,
) -> None:
    """A moderator may run the console for an hour without loading a page: the sweep records
    the activity of the sessions it keeps, so their idle timeout does not run out."""
    twenty_minutes_ago = utcnow() - dt.timedelta(minutes=20)
    with db.transaction() as s:
        s.execute(update(WebSession).where(WebSession.user_id == world.attendee_a)
                  .values(last_seen_at=twenty_minutes_ago))

    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        await until(lambda: _last_seen(db, world.attendee_a) > twenty_minutes_ago)
        assert (await a.request("c", t="chat", body="还在"))["status"] == "visible"
        await a.ws.close()

    asyncio.run(run())


def _last_seen(db: Database, user_id: int) -> dt.datetime:
    with db.transaction(write=False) as s:
        seen = s.scalar(select(func.max(WebSession.last_seen_at))
                        .where(WebSession.user_id == user_id))
    assert seen is not None
    return seen


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds, polling; fail after :data:`WITHIN` seconds."""
    deadline = time.monotonic() + WITHIN
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


# --- deactivation and roles ---------------------------------------------------------------------


def test_a_deactivated_person_is_dropped_and_cannot_come_back(
    server: Server, world: World, db: Database,
) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        b = await join(server, world.token(world.attendee_b), world.stage)
        with db.transaction() as s:
            s.execute(update(User).where(User.id == world.attendee_a).values(is_active=False))
        assert await dropped(a, "session_ended") == 4011
        frame, code = await refused_join(server, world.token(world.attendee_a), world.stage)
        assert (frame["code"], code) == ("session_ended", 4011)
        assert (await b.request("c", t="chat", body="hi"))["status"] == "visible"
        await b.ws.close()

    asyncio.run(run())


def test_an_organizer_whose_role_is_taken_away_loses_moderator_actions(
    server: Server, world: World, db: Database,
) -> None:
    """Staff of the host organization moderate; moved out of it, they are organizers no more:
    within seconds their moderator's frames stop and the connection closes (4012); the old
    token cannot come back, and a new one (the page's endpoint) makes them an attendee."""
    with db.transaction() as s:
        host = make_org(s, name="峰会组委会")
        summit = s.get(Summit, world.summit_id)
        assert summit is not None
        summit.host_organization_id = host.id
        staff = make_user(s, role=Role.ORG_STAFF, organization_id=host.id, display_name="赵六")
        s.flush()
        staff_id = staff.id
    (reviewer_id,) = add_people(db, world, 1)
    world.web_sessions[staff_id] = add_session(db, staff_id)
    register(db, world.summit_id, staff_id)

    async def run() -> None:
        m = await join(server, world.token(staff_id, role="moderator"), world.stage)
        assert m.welcome["you"]["role"] == "moderator"
        assert (await m.request("p1", t="mod", action="pause"))["settings"]["paused"] is True
        # A platform reviewer moderates every summit: changing someone else changes nothing.
        with db.transaction() as s:
            s.execute(update(User).where(User.id == reviewer_id).values(role=Role.REVIEWER))
        r = await join(server, world.token(reviewer_id, role="moderator"), world.stage)
        with db.transaction() as s:
            s.execute(update(User).where(User.id == staff_id).values(organization_id=None))
        assert await dropped(m, "role_changed") == 4012
        frame, code = await refused_join(server, world.token(staff_id, role="moderator"),
                                         world.stage)
        assert (frame["code"], code) == ("role_changed", 4012)
        # The same person, with a token for what they are now (registered): an attendee.
        a = await join(server, world.token(staff_id), world.stage)
        assert a.welcome["you"]["role"] == "attendee"
        assert (await a.request("p2", t="mod", action="resume"))["code"] == "not_moderator"
        # The reviewer is still a moderator.
        assert (await r.request("p3", t="mod", action="resume"))["settings"]["paused"] is False
        for c in (a, r):
            await c.ws.close()

    asyncio.run(run())


def add_session(db: Database, user_id: int) -> int:
    from shanju.accounts import service as accounts

    with db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None
        sid = accounts.web_session_id(session=s, token=accounts.do_start_session(session=s,
                                                                                 user=user))
        assert sid is not None
        return sid


# --- lifetime and renewal -------------------------------------------------------------------------


def test_an_expired_token_is_refused(server: Server, world: World) -> None:
    async def run() -> None:
        frame, code = await refused_join(server, world.token(world.attendee_a, ttl=-1),
                                         world.stage)
        assert (frame["code"], code) == ("token_expired", 4001)

    asyncio.run(run())


def test_renewed_tokens_keep_a_connection_past_its_first_token(
    db: Database, tmp_path: Path, world: World,
) -> None:
    with serve(db, tmp_path, token_seconds=2, sweep_seconds=SWEEP) as server:
        async def run() -> None:
            first = world.token(world.attendee_a, ttl=2)
            expires = tokens.verify(SECRET, first).expires
            a = await join(server, first, world.stage)
            renewed: list[dict[str, Any]] = []
            deadline = time.monotonic() + 15
            while tokens.now() <= expires + 1:  # read (and keep) until past the first expiry
                assert time.monotonic() < deadline
                frame = await a.recv(timeout=WITHIN)
                if frame["t"] == "token":
                    renewed.append(frame)
            assert renewed and renewed[-1]["ttl"] == 2
            latest = tokens.verify(SECRET, renewed[-1]["token"])
            assert latest.expires > expires and latest.session_id == \
                world.web_sessions[world.attendee_a]
            assert (await a.request("c", t="chat", body="还在"))["status"] == "visible"
            # The first token is dead; the renewed one joins.
            frame, code = await refused_join(server, first, world.stage)
            assert (frame["code"], code) == ("token_expired", 4001)
            again = await join(server, renewed[-1]["token"], world.stage)
            for c in (a, again):
                await c.ws.close()

        asyncio.run(run())


def test_a_connection_whose_token_was_not_renewed_cannot_post(
    db: Database, tmp_path: Path, world: World,
) -> None:
    """Renewal comes with the sweep; with the sweep far away the token runs out and the next
    posting frame closes the connection."""
    with serve(db, tmp_path, token_seconds=2, sweep_seconds=60) as server:
        async def run() -> None:
            token = world.token(world.attendee_a, ttl=2)
            a = await join(server, token, world.stage)
            expires = tokens.verify(SECRET, token).expires
            assert (await a.request("c1", t="chat", body="早"))["status"] == "visible"
            await a.drain(max(0.0, expires - tokens.now() + 0.2))  # let the token run out
            await a.send(ref="c2", t="chat", body="晚")
            assert (await a.reply("c2"))["code"] == "token_expired"
            assert await a.closed() == 4001

        asyncio.run(run())


# --- the cost of joins ------------------------------------------------------------------------


def test_joins_of_known_sessions_cost_no_query_and_new_ones_are_batched(
    db: Database, tmp_path: Path, world: World,
) -> None:
    people = add_people(db, world, 20)
    with serve(db, tmp_path, sweep_seconds=1.0) as server:
        async def run() -> None:
            first = await join(server, world.token(world.attendee_a), world.stage)
            auth = server.hubs().auth
            checks = auth.stats["join_checks"]
            # Twenty people join at the same moment: their sessions are read together.
            sockets = [Client(await connect(server.url, open_timeout=OPEN_TIMEOUT))
                       for _ in people]
            await asyncio.gather(*(c.send(t="join", token=world.token(u), room=world.stage)
                                   for c, u in zip(sockets, people, strict=True)))
            for c in sockets:
                assert (await c.recv(10))["t"] == "welcome"
            batches = auth.stats["join_checks"] - checks
            assert 1 <= batches <= 4, batches
            # A second tab of a connected person (a session the sweep keeps checking): none.
            checks = auth.stats["join_checks"]
            tabs = [await join(server, world.token(u), world.stage) for u in people[:5]]
            assert auth.stats["join_checks"] == checks
            for c in [first, *sockets, *tabs]:
                await c.ws.close()

        asyncio.run(run())
