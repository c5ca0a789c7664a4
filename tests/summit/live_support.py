"""Helpers of the live-room tests: a summit with people, a uvicorn server in a thread, and
protocol clients (``websockets``) that wait for what they expect."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.app import create_app
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.summit import tokens
from shanju.summit.models import SessionKind, Summit, SummitRoom, SummitSession, SummitStatus
from tests.factories import make_user
from tests.serving import free_socket, uvicorn_thread

SECRET = "test-secret"


@dataclass
class World:
    summit_id: int
    other_summit_id: int
    session_id: int  # a roundtable with one breakout room
    room_id: int
    other_session_id: int  # in the other summit
    attendee_a: int
    attendee_b: int
    moderator: int
    web_sessions: dict[int, int]  # user id -> their signed-in browser session's id

    def token(self, user_id: int, *, role: tokens.Role = "attendee", name: str = "张*",
              summit_id: int | None = None, ttl: int = 3600,
              session_id: int | None = None) -> str:
        return tokens.issue(SECRET, user_id=user_id, summit_id=summit_id or self.summit_id,
                            role=role, name=name, ttl=ttl,
                            session_id=session_id or self.web_sessions[user_id])

    @property
    def stage(self) -> str:
        return f"s{self.session_id}"

    @property
    def breakout(self) -> str:
        return f"r{self.room_id}"


def make_world(database: Database, *, keywords: str = "", capacity: int | None = None) -> World:
    """Two summits; the first has a live roundtable (with a breakout room) and three people."""
    now = utcnow()
    with database.transaction() as s:
        summits = []
        for slug in ("live-a", "live-b"):
            summit = Summit(slug=slug, title="云峰会", starts_on=now.date(), ends_on=now.date(),
                            status=SummitStatus.PUBLISHED, moderation_keywords=keywords)
            s.add(summit)
            s.flush()
            summits.append(summit)
        sessions = []
        for summit in summits:
            sess = SummitSession(summit_id=summit.id, kind=SessionKind.ROUNDTABLE,
                                 title="圆桌：数字公益", starts_at=now,
                                 ends_at=now + dt.timedelta(hours=1), capacity=capacity)
            s.add(sess)
            s.flush()
            sessions.append(sess)
        room = SummitRoom(session_id=sessions[0].id, name="第1组", topic="乡村",
                          video_url="https://meeting.example/1", capacity=12)
        s.add(room)
        a = make_user(s, display_name="张三")
        b = make_user(s, display_name="李四")
        m = make_user(s, role=Role.REVIEWER, display_name="王五")
        s.flush()
        web_sessions: dict[int, int] = {}
        for user in (a, b, m):
            cookie = accounts.do_start_session(session=s, user=user)
            sid = accounts.web_session_id(session=s, token=cookie)
            assert sid is not None
            web_sessions[user.id] = sid
        return World(summits[0].id, summits[1].id, sessions[0].id, room.id, sessions[1].id,
                     a.id, b.id, m.id, web_sessions)


def add_people(database: Database, world: World, n: int, *, role: Role = Role.DONOR
               ) -> list[int]:
    """``n`` more people, each signed in with a browser session (their live tokens name it);
    reviewers (``role``) organize every summit, so they may join as moderators."""
    with database.transaction() as s:
        users = [make_user(s, role=role) for _ in range(n)]
        s.flush()
        for user in users:
            cookie = accounts.do_start_session(session=s, user=user)
            sid = accounts.web_session_id(session=s, token=cookie)
            assert sid is not None
            world.web_sessions[user.id] = sid
        return [user.id for user in users]


# --- a server ------------------------------------------------------------------------------


@dataclass
class Server:
    url: str  # ws://127.0.0.1:port/summit/live
    base: str
    app: Any
    server: uvicorn.Server

    def hubs(self) -> Any:
        return getattr(self.app.state, "live", None)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop (to read hub state safely)."""
        hubs = self.hubs()
        assert hubs is not None and hubs.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), hubs.loop).result(10)


@contextmanager
def serve(database: Database, tmp_path: Path, *, tick_ms: int = 50,
          broker_url: str = "memory://", token_seconds: int = 300,
          sweep_seconds: float = 2.0) -> Iterator[Server]:
    """The app served by uvicorn in a thread (no lifespan: the hubs start on first use)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        environment="test", database_url=database.url, secret_key=SECRET,
        sandbox_secret="test-sandbox-secret", base_url=base, upload_dir=tmp_path / "uploads",
        transparency_key_file=tmp_path / "transparency-ed25519.key",
        summit_tick_ms=tick_ms, summit_broker_url=broker_url,
        summit_live_token_seconds=token_seconds, summit_live_sweep_seconds=sweep_seconds,
    )
    app = create_app(settings, database=database)
    with uvicorn_thread(app, sock) as server:
        running = Server(url=f"ws://127.0.0.1:{port}/summit/live", base=base, app=app,
                         server=server)
        try:
            yield running
        finally:
            hubs = running.hubs()
            if hubs is not None and hubs.loop is not None and not hubs.loop.is_closed():
                asyncio.run_coroutine_threadsafe(hubs.stop(), hubs.loop).result(20)


# --- clients -------------------------------------------------------------------------------


class Client:
    """A protocol client: sends frames, keeps every frame it received, waits for events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self._seen = 0

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        self.frames.append(frame)
        return dict(frame)

    async def reply(self, ref: str, timeout: float = 5) -> dict[str, Any]:
        """The ack or error that answers ``ref``."""
        for f in self.frames:
            if f.get("t") in ("ack", "error") and f.get("ref") == ref:
                self.frames.remove(f)
                return f
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv(max(0.01, deadline - time.monotonic()))
            if f.get("t") in ("ack", "error") and f.get("ref") == ref:
                self.frames.remove(f)
                return f

    async def drain(self, seconds: float) -> None:
        """Receive whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while time.monotonic() < deadline:
                await self.recv(max(0.01, deadline - time.monotonic()))

    async def error(self, timeout: float = 5) -> dict[str, Any]:
        """The next error frame (batches in between are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv(max(0.01, deadline - time.monotonic()))
            if f.get("t") == "error":
                self.frames.remove(f)
                return f

    async def request(self, ref: str, **frame: Any) -> dict[str, Any]:
        await self.send(ref=ref, **frame)
        return await self.reply(ref)

    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.frames if f.get("t") == "batch" for e in f["events"]]

    async def event(self, match: Callable[[dict[str, Any]], bool],
                    timeout: float = 5) -> dict[str, Any]:
        """The first batch event (received already or next) for which ``match`` holds."""
        for e in self.events():
            if match(e):
                return e
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv(max(0.01, deadline - time.monotonic()))
            if f.get("t") == "batch":
                for e in f["events"]:
                    if match(e):
                        return dict(e)

    async def closed(self, timeout: float = 10) -> int | None:
        """Read until the server closes; the close code."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(Exception):  # ConnectionClosed (or a timeout: no code)
            while True:
                await self.recv(max(0.01, deadline - time.monotonic()))
        return self.ws.close_code


# Generous: late in a full run a test server's first handshake has been seen to take over
# 10 s on the 2-core CI machine (twice, same test, never alone); a slow start is not what
# these tests test.
OPEN_TIMEOUT = 60


async def join(server: Server, token: str, room: str, **kwargs: Any) -> Client:
    """Connect and join; returns the client after its welcome."""
    ws = await connect(server.url, open_timeout=OPEN_TIMEOUT, **kwargs)
    client = Client(ws)
    await client.send(t="join", token=token, room=room)
    # A room's first join opens it (its state read from the database) and a new session is
    # checked: seconds on a loaded machine, so the bound is generous (not what is tested).
    frame = await client.recv(30)
    assert frame["t"] == "welcome", frame
    client.welcome = frame
    client.frames.clear()
    return client


async def refused_join(server: Server, token: str, room: str) -> tuple[dict[str, Any], int | None]:
    """Connect, try to join; the error frame and the close code."""
    ws = await connect(server.url, open_timeout=OPEN_TIMEOUT)
    client = Client(ws)
    await client.send(t="join", token=token, room=room)
    frame = await client.recv(10)
    code = await client.closed()
    return frame, code
