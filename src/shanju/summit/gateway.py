"""The live gateway: the WebSocket endpoint of the summit's live rooms (``/summit/live``).

One connection per person per room; see ``docs/summit/live-protocol.md`` for the frames and
``docs/summit/live.md`` for how it works. The gateway checks the Origin, waits for ``join``
(10 s), checks the live token's signature, asks ``live_auth`` whether its browser session
still signs in (no query for a session checked within the last sweeps), opens the room in this
process's hubs (``hub.py``) and then reads frames: it checks and limits them (token bucket,
flooding, bans, mutes, pause, slow mode) and hands the stored change (``live_service``) to
the process's writer (``writer.py``: group commit, one write transaction for everything
queued, each action in a savepoint), which publishes what changed on the broker after the
commit; then the gateway sends the ack. It never writes to the client itself: every frame
goes through the connection's bounded queue and writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, FastAPI, WebSocket

from shanju.accounts.service import IdleTimeouts
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.summit import live_auth, live_service, protocol, tokens
from shanju.summit.broker import broker_from_url
from shanju.summit.hub import Conn, LiveHubs, Room
from shanju.summit.live_auth import LiveAuth
from shanju.summit.live_service import Outcome
from shanju.summit.protocol import FrameError
from shanju.summit.writer import WriterClosed

log = structlog.get_logger(__name__)
router = APIRouter()

JOIN_TIMEOUT = 10.0
JOIN_CHECK_TIMEOUT = 4.0  # the session check of a join (the database away: server_busy)
# Token buckets: (burst, tokens per second).
ATTENDEE_BUCKET = (5.0, 1.0)
MODERATOR_BUCKET = (20.0, 5.0)
FLOOD_REFUSED = 20  # refused frames ...
FLOOD_WINDOW = 10.0  # ... within this many seconds: dropped (4008)
FLOOD_FRAMES_PER_SECOND = 50  # frames of any kind: dropped (4008)


@asynccontextmanager
async def live_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the broker and the room hubs with the app; stop them (closing every connection
    with 1001) when it stops. Without a lifespan (tests), the gateway starts them on first
    use."""
    hubs = _make_hubs(app)
    await hubs.start()
    app.state.live = hubs
    settings: Settings = app.state.settings
    if settings.environment != "test":
        # A serving process (not the test suite's short-lived apps): see hub.GcPacer.
        hubs.pace_gc()
    try:
        yield
    finally:
        app.state.live = None
        await hubs.stop()


def _make_hubs(app: FastAPI) -> LiveHubs:
    settings: Settings = app.state.settings
    auth = LiveAuth(app.state.db, secret=settings.secret_key,
                    token_seconds=settings.summit_live_token_seconds,
                    sweep_seconds=settings.summit_live_sweep_seconds,
                    idle=IdleTimeouts.from_settings(settings))
    return LiveHubs(db=app.state.db, broker=broker_from_url(settings.summit_broker_url),
                    tick_ms=settings.summit_tick_ms, auth=auth)


async def get_hubs(app: FastAPI) -> LiveHubs:
    """This process's hubs, started on first use when the app runs without its lifespan."""
    hubs: LiveHubs | None = getattr(app.state, "live", None)
    if hubs is not None:
        return hubs
    lock: asyncio.Lock | None = getattr(app.state, "live_lock", None)
    if lock is None:
        lock = app.state.live_lock = asyncio.Lock()
    async with lock:
        hubs = getattr(app.state, "live", None)
        if hubs is None:
            hubs = _make_hubs(app)
            await hubs.start()
            app.state.live = hubs
    return hubs


def site_origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@router.websocket("/summit/live")
async def live_socket(ws: WebSocket) -> None:
    settings: Settings = ws.app.state.settings
    origin = ws.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != site_origin(settings.base_url):
        await ws.close(code=1008)  # before the handshake: HTTP 403
        return
    hubs = await get_hubs(ws.app)
    await ws.accept()
    await LiveConnection(ws, hubs, settings, ws.app.state.db).run()


class LiveConnection:
    """One client's session: join, then frames until it leaves or is dropped."""

    def __init__(self, ws: WebSocket, hubs: LiveHubs, settings: Settings, db: Database) -> None:
        self.ws = ws
        self.hubs = hubs
        self.settings = settings
        self.db = db
        self.conn: Conn | None = None
        self.room: Room | None = None

    async def _refuse_join(self, code: str, message: str, close: int,
                           ref: str | None = None) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_text(protocol.error(code, message, ref=ref))
            await self.ws.close(close)

    async def run(self) -> None:
        try:
            if await self._join():
                await self._read()
        finally:
            conn = self.conn
            if conn is not None:
                if conn.closing is None:  # the client left
                    conn.drop(1000, send_close=False)
                elif conn.close_task is not None:
                    # Dropped: return only once the close frame is out (or timed out), or
                    # the server would cut the connection without a close code.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close_task)

    async def _join(self) -> bool:
        ws = self.ws
        try:
            message = await asyncio.wait_for(ws.receive(), JOIN_TIMEOUT)
        except TimeoutError:
            await self._refuse_join("bad_token", "join within 10 seconds",
                                    protocol.CLOSE_BAD_TOKEN)
            return False
        if message["type"] == "websocket.disconnect":
            return False
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if len(data) > protocol.HARD_MAX_FRAME_BYTES:
            with contextlib.suppress(Exception):
                await ws.close(protocol.CLOSE_TOO_BIG)
            return False
        try:
            frame = protocol.parse(data)
        except FrameError as exc:
            await self._refuse_join(exc.code, exc.message, protocol.CLOSE_BAD_TOKEN, exc.ref)
            return False
        ref = frame["ref"]
        if frame["t"] != "join":
            await self._refuse_join("not_joined", "the first frame must be join",
                                    protocol.CLOSE_BAD_TOKEN, ref)
            return False
        try:
            identity = tokens.verify(self.settings.secret_key, frame["token"])
        except tokens.TokenExpired:
            await self._refuse_join(live_auth.TOKEN_EXPIRED, live_auth.MESSAGES["token_expired"],
                                    protocol.CLOSE_BAD_TOKEN, ref)
            return False
        except tokens.BadToken:
            await self._refuse_join("bad_token", "the live token is not valid",
                                    protocol.CLOSE_BAD_TOKEN, ref)
            return False
        # Signed out, deactivated, no longer an organizer? (No query when the session was
        # checked by the last sweeps; see live_auth.py.)
        auth = self.hubs.auth
        if auth is not None:
            try:
                # Bounded like opening the room: a join is answered within 10 s.
                problem = await asyncio.wait_for(auth.admit(identity), JOIN_CHECK_TIMEOUT)
            except Exception as exc:
                self.hubs.problems.warning("summit.live.auth_check_failed", error=repr(exc))
                await self._refuse_join("server_busy", "the server cannot check the token now; "
                                        "try again", 1011, ref)
                return False
            if problem is not None:
                await self._refuse_join(problem, live_auth.MESSAGES[problem],
                                        live_auth.CLOSE_CODES[problem], ref)
                return False
        try:
            room = await self.hubs.open_room(frame["room"])
        except Exception as exc:
            self.hubs.problems.warning("summit.live.open_room_failed", room=frame["room"],
                                       error=repr(exc))
            await self._refuse_join("server_busy", "the room cannot be opened now; try again",
                                    1011, ref)
            return False
        if room is None or room.ref.summit_id != identity.summit_id:
            await self._refuse_join("room_not_found", "there is no such live room",
                                    protocol.CLOSE_NOT_FOUND, ref)
            return False
        state = self.hubs.summits.get(room.ref.summit_id)
        if state is not None and identity.user_id in state.bans:
            await self._refuse_join("banned", "you are banned from this summit's live rooms",
                                    protocol.CLOSE_BANNED, ref)
            return False
        if (room.capacity is not None and not identity.is_moderator
                and room.count() >= room.capacity):
            await self._refuse_join("room_full", "this live room is full",
                                    protocol.CLOSE_FULL, ref)
            return False
        conn = Conn(identity, ws.send_text, self._close)
        conn.reader_task = asyncio.current_task()
        burst = (MODERATOR_BUCKET if identity.is_moderator else ATTENDEE_BUCKET)[0]
        conn.bucket = burst
        conn.offer(room.welcome(conn))
        self.hubs.join(room, conn)
        self.conn, self.room = conn, room
        return True

    async def _close(self, code: int) -> None:
        await self.ws.close(code)

    async def _read(self) -> None:
        conn, task = self.conn, asyncio.current_task()
        if conn is None or task is None:
            return
        while conn.closing is None:
            conn.receiving = True
            try:
                message = await self.ws.receive()
            except asyncio.CancelledError:
                if conn.closing is None:
                    raise
                task.uncancel()
                return
            finally:
                conn.receiving = False
            if message["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            second = int(now)
            if second != conn.frames_second:
                conn.frames_second = second
                conn.frames_window = 0
            conn.frames_window += 1
            if conn.frames_window > FLOOD_FRAMES_PER_SECOND:
                conn.drop(protocol.CLOSE_FLOODING)
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > protocol.HARD_MAX_FRAME_BYTES:
                conn.drop(protocol.CLOSE_TOO_BIG)
                return
            try:
                frame = protocol.parse(data)
                await self._handle(conn, frame, now)
            except FrameError as exc:
                self._refused(conn, exc, now)

    def _refused(self, conn: Conn, exc: FrameError, now: float) -> None:
        conn.offer(exc.frame())
        refused = conn.refused
        refused.append(now)
        while refused and now - refused[0] > FLOOD_WINDOW:
            refused.popleft()
        if len(refused) > FLOOD_REFUSED:
            conn.drop(protocol.CLOSE_FLOODING)

    def _take_token(self, conn: Conn, now: float, ref: str | None) -> None:
        burst, rate = MODERATOR_BUCKET if conn.is_moderator else ATTENDEE_BUCKET
        conn.bucket = min(burst, conn.bucket + (now - conn.bucket_at) * rate)
        conn.bucket_at = now
        if conn.bucket < 1:
            raise FrameError("rate_limited", "too many messages; slow down", ref=ref,
                             retry_after=max(1, math.ceil((1 - conn.bucket) / rate)))
        conn.bucket -= 1

    async def _handle(self, conn: Conn, frame: dict[str, Any], now: float) -> None:
        kind = frame["t"]
        ref = frame["ref"]
        if kind == "hb":
            conn.heartbeat(now)
            return
        if kind == "join":
            raise FrameError("already_joined", "this connection has joined a room", ref=ref)
        room = self.room
        if room is None:
            raise FrameError("not_joined", "join a room first", ref=ref)
        ident = conn.identity
        if ident.expires < tokens.now():
            # Not renewed in time (the sweep renews every token while its session lasts).
            conn.offer(protocol.error(live_auth.TOKEN_EXPIRED,
                                      live_auth.MESSAGES["token_expired"], ref=ref))
            conn.drop(protocol.CLOSE_BAD_TOKEN)
            return
        if kind == "mod" and not conn.is_moderator:
            raise FrameError("not_moderator", "only moderators may do this", ref=ref)
        self._take_token(conn, now, ref)
        state = self.hubs.summits.get(room.ref.summit_id)
        if state is not None and ident.user_id in state.bans:
            raise FrameError("banned", "you are banned from this summit's live rooms", ref=ref)
        fn: Callable[..., Outcome]
        kwargs: dict[str, Any] = {"room": room.ref}
        if kind in ("chat", "ask") and not conn.is_moderator:
            muted = self.hubs.muted(room.ref.summit_id, room.ref.session_id, ident.user_id)
            if muted is not None:
                raise FrameError("muted", "you are muted in this session", ref=ref,
                                 retry_after=muted)
        if kind == "chat":
            slow_key = (room.ref.session_id, ident.user_id)
            if not conn.is_moderator:
                if room.settings.get("paused"):
                    raise FrameError("paused", "the chat is paused", ref=ref)
                slow = int(room.settings.get("slow") or 0)
                last = state.last_chat.get(slow_key) if state is not None else None
                if slow and last is not None and now - last < slow:
                    raise FrameError("slow_mode", "slow mode: wait before your next message",
                                     ref=ref, retry_after=max(1, math.ceil(slow - (now - last))))
                if state is not None:
                    state.last_chat[slow_key] = now
            fn = live_service.post_chat
            kwargs.update(user_id=ident.user_id, name=ident.name, body=frame["body"],
                          moderator=conn.is_moderator)
        elif kind == "ask":
            fn = live_service.ask_question
            kwargs.update(user_id=ident.user_id, name=ident.name, body=frame["body"])
        elif kind == "upvote":
            fn = live_service.upvote
            kwargs.update(user_id=ident.user_id, question_id=frame["question"])
        elif kind == "vote":
            fn = live_service.vote
            kwargs.update(user_id=ident.user_id, poll_id=frame["poll"], option_id=frame["option"])
        else:  # mod
            fn = live_service.moderate
            kwargs.update(actor_id=ident.user_id, frame=frame)
        try:
            # Group commit (writer.py): stored with the process's other posts in one
            # transaction, published after the commit, then answered.
            outcome = await self.hubs.writer.submit(fn, kwargs)
        except DomainError as exc:
            raise FrameError(exc.code, str(exc.message), field=exc.field, ref=ref) from exc
        except WriterClosed as exc:
            raise FrameError("server_busy", "the server is stopping; try again",
                             ref=ref) from exc
        except Exception as exc:
            log.warning("summit.live.write_failed", frame=kind, error=repr(exc))
            raise FrameError("server_busy", "the server could not do this now; try again",
                             ref=ref) from exc
        conn.offer(protocol.ack(ref, **outcome.ack))
