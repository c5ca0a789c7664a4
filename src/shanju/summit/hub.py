"""The live rooms of one server process: state in memory, coalesced fan-out, presence.

:class:`LiveHubs` (one per process, ``app.state.live``) keeps a :class:`Room` for each live
room with a client in this process. A room subscribes to its broker channel
``summit:<key>`` and applies what arrives (events carry absolute state, so the order and
duplicates do not matter); it loads its state from the database once, when it opens, and
clients that join later get the in-memory state. Every tick (``summit_tick_ms``) each room
with news encodes ONE ``batch`` frame (and one more for moderators when they have extra
events) and offers the same string to every connection's bounded queue; each connection's
own writer task drains its queue. A full queue means the client does not read: it is closed
with 4009; the room never waits for a client.

Per summit, the hubs subscribe to ``summit:summit<id>``: bans and mutes (kept in memory,
loaded when the first room of the summit opens) and presence — every second each process
publishes how many clients it holds in each room, and a room's count is the sum of the fresh
(≤ 3 s) reports. Attendance is counted from heartbeats per connection and written every
~30 s (and soon after a disconnect) in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import structlog

from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.logging import Throttled
from shanju.summit import live_service, protocol
from shanju.summit.attendance import Beat, record_heartbeats
from shanju.summit.broker import Broker, BrokerError
from shanju.summit.live_auth import LiveAuth
from shanju.summit.live_service import POLL_RANK, QUESTION_RANK, RoomSnapshot
from shanju.summit.tokens import LiveIdentity
from shanju.summit.writer import LiveWriter

log = structlog.get_logger(__name__)

QUEUE_FRAMES = 32  # per connection; full: the client is too slow (4009)
PRESENCE_SECONDS = 1.0
PRESENCE_FRESH = 3.0
ATTENDANCE_SLOTS = 30  # each connection's time is written every 30 s, 1/30 of them a second
HEARTBEAT_GAP = 60.0  # a longer gap between heartbeats does not count as attendance
ROOM_IDLE_SECONDS = 60.0  # an empty room is closed after this
NOT_FOUND_CACHE_SECONDS = 10.0
CLOSE_TIMEOUT = 5.0
# The cycle collector, paced by the tick (see GcPacer).
GC_YOUNG_OBJECTS = 20_000  # a young pass when this many more objects are tracked
GC_FULL_SECONDS = 60.0  # a full pass at most this often (0.3-0.4 s with 3,000 connections)
WRITE_THREADS = 8  # worker threads for the live rooms' database work, per process
OPEN_TIMEOUT = 5.0  # opening a room (subscribe, load): longer, the join is answered server_busy
SEQ_CHECK_SECONDS = 1.0  # how often the stored sequence numbers are compared with the rooms'
SHOWN_IDS = 5_000  # chat ids a room remembers having shown (see Room.shown)
SEND_STALL_SECONDS = 10.0  # one frame's send blocked this long: the client does not read (4009)


def channel(key: str) -> str:
    return f"summit:{key}"


class Conn:
    """One client connection in a room: its identity, outbound queue and writer task."""

    __slots__ = (
        "_close", "_q", "_send", "_wake", "beat_at", "beat_seconds", "bucket", "bucket_at",
        "close_task", "closing", "frames_second", "frames_window", "identity", "is_moderator",
        "reader_task", "receiving", "refused", "room", "sending_since", "slot", "writer_task",
    )

    def __init__(
        self, identity: LiveIdentity, send: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
    ) -> None:
        self.identity = identity
        self.is_moderator = identity.is_moderator
        self._send = send
        self._close = close
        self._q: deque[str] = deque()
        self._wake: asyncio.Future[None] | None = None
        self.closing: int | None = None  # the close code once it is being dropped
        self.room: Room | None = None
        self.writer_task: asyncio.Task[None] | None = None
        self.close_task: asyncio.Task[None] | None = None
        self.reader_task: asyncio.Task[Any] | None = None
        self.receiving = False  # the reader waits for a frame (safe to cancel)
        self.sending_since: float | None = None  # monotonic start of the send in progress
        now = time.monotonic()
        # Abuse control (see gateway.py): token bucket, refused frames, frames per second.
        self.bucket = 0.0
        self.bucket_at = now
        self.refused: deque[float] = deque()
        self.frames_second = int(now)
        self.frames_window = 0
        # Attendance: seconds counted since the last flush, and the last heartbeat.
        self.beat_at = now
        self.beat_seconds = 0.0
        # Which second of the attendance cycle writes this connection's time (spread out).
        self.slot = random.randrange(ATTENDANCE_SLOTS)  # noqa: S311 - not a secret

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    def start(self) -> None:
        self.writer_task = asyncio.get_running_loop().create_task(self._writer())

    def offer(self, frame: str) -> bool:
        """Queue a frame for the writer; a full queue drops the client (4009)."""
        if self.closing is not None:
            return False
        if len(self._q) >= QUEUE_FRAMES:
            self.too_slow("queue_full")
            return False
        self._q.append(frame)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return True

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self._q:
                    self.sending_since = time.monotonic()
                    await self._send(self._q.popleft())
                    self.sending_since = None
                if self.closing is not None:
                    return
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client went away; its reader ends it
            self.drop(1006, send_close=False)

    def too_slow(self, reason: str) -> None:
        """Drop a client that does not read what it is sent (4009), counted and logged once:
        ``queue_full`` (QUEUE_FRAMES frames waiting) or ``send_stalled`` (one send blocked
        for SEND_STALL_SECONDS: the socket's buffers are full)."""
        if self.closing is not None:
            return
        if self.room is not None:
            self.room.hubs.slow_client(self, reason)
        self.drop(protocol.CLOSE_TOO_SLOW)

    def demote(self) -> None:
        """Take the moderator's rights away at once (the person no longer organizes)."""
        if self.is_moderator:
            self.is_moderator = False
            if self.room is not None and self in self.room.conns:
                self.room.moderators -= 1

    def heartbeat(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        gap = now - self.beat_at
        if 0 < gap <= HEARTBEAT_GAP:
            self.beat_seconds += gap
        self.beat_at = now

    def drop(self, code: int, *, send_close: bool = True) -> None:
        """Close the connection with ``code`` (idempotent), without waiting for it.

        What is queued is still sent first (briefly), except to a client too slow to read it.
        """
        if self.closing is not None:
            return
        self.closing = code
        if self.writer_task is not None and (code == protocol.CLOSE_TOO_SLOW or not send_close):
            self.writer_task.cancel()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self.room is not None:
            self.room.hubs.leave(self)
        if send_close:
            self.close_task = asyncio.get_running_loop().create_task(self._send_close(code))
            if self.room is not None:
                self.room.hubs.keep(self.close_task, closer=True)
        if self.reader_task is not None and self.receiving:
            self.reader_task.cancel()

    async def _send_close(self, code: int) -> None:
        writer = self.writer_task
        if writer is not None and not writer.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close(code), CLOSE_TIMEOUT)


class GcPacer:
    """Run Python's cycle collector between ticks instead of whenever allocations say.

    With thousands of connections the heap holds millions of objects and an automatic full
    pass takes 0.3–0.7 s, every few seconds under load (measured with 3,000 connections): each
    one stalls every room's tick and shows up as fan-out latency. Paced, the objects that exist
    once the app has started are frozen out of the collector's way (``gc.freeze``), automatic
    collection is off, and the hubs' clock runs a young pass in the middle of a tick interval,
    when the writers have sent the last batch, and a full pass at most once a minute.
    Only the app's lifespan turns this on (one process, one app).
    """

    def __init__(self) -> None:
        self.enabled = False
        self.young_runs = 0
        self.last_full = time.monotonic()

    def start(self) -> None:
        if self.enabled:
            return
        gc.collect()
        gc.freeze()
        gc.disable()
        self.enabled = True
        self.last_full = time.monotonic()

    def stop(self) -> None:
        if self.enabled:
            self.enabled = False
            gc.unfreeze()
            gc.enable()

    def step(self, now: float) -> None:
        if not self.enabled:
            return
        if now - self.last_full >= GC_FULL_SECONDS:
            self.last_full = now
            gc.collect(2)
        elif gc.get_count()[0] >= GC_YOUNG_OBJECTS:
            self.young_runs += 1
            gc.collect(1 if self.young_runs % 10 == 0 else 0)


class Numbered:
    """What of a channel's numbered changes (``live_service.stamp``) this process applied:
    every number up to ``seq``, and ``ahead`` (applied past a hole)."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.ahead: set[int] = set()
        self.lag_target: int | None = None  # the stored number seen ahead at the last check
        self.reloading = False

    def is_new(self, seq: int) -> bool:
        return seq > self.seq and seq not in self.ahead

    def advance(self, seq: int) -> None:
        """Record that change ``seq`` is applied (a hole before it stays open)."""
        if seq == self.seq + 1:
            self.seq = seq
            while self.seq + 1 in self.ahead:
                self.seq += 1
                self.ahead.discard(self.seq)
        elif seq > self.seq:
            self.ahead.add(seq)

    def caught_up(self, top: int) -> None:
        """Everything up to ``top`` is applied (a reload from the database)."""
        if top > self.seq:
            self.seq = top
            self.ahead = {n for n in self.ahead if n > top}
            self.advance(top)
        self.lag_target = None

    @property
    def highest(self) -> int:
        return max(self.ahead, default=self.seq)

    def behind(self, stored: int, *, waiting: bool) -> bool:
        """Compared with the stored number: reload now? Behind at two checks in a row (a
        message in flight arrives within milliseconds), or at once when nothing can arrive
        (``waiting`` False: the broker is away)."""
        if stored <= self.seq:
            self.lag_target = None
            return False
        if not waiting or (self.lag_target is not None and self.seq < self.lag_target):
            return True
        self.lag_target = stored
        return False


class SummitState(Numbered):
    """Per summit, in this process: bans, mutes, presence reports, slow-mode clocks."""

    def __init__(self, summit_id: int) -> None:
        super().__init__()
        self.summit_id = summit_id
        self.bans: set[int] = set()
        self.mutes: dict[tuple[int, int], float | None] = {}
        self.presence: dict[str, tuple[float, dict[str, int]]] = {}  # pid -> (at, counts)
        self.last_chat: dict[tuple[int, int], float] = {}  # (session, user) -> monotonic
        self.rooms: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def muted_until(self, session_id: int, user_id: int, now: float) -> float | None:
        """Unix time the person is muted until (``inf`` if indefinitely), or None."""
        key = (session_id, user_id)
        if key not in self.mutes:
            return None
        until = self.mutes[key]
        if until is None:
            return float("inf")
        if until <= now:
            del self.mutes[key]
            return None
        return until

    def apply_control(self, hubs: LiveHubs, control: dict[str, Any]) -> None:
        kind, user = control.get("k"), control.get("user")
        if not isinstance(user, int):
            return
        if kind == "ban":
            self.bans.add(user)
            for key in list(self.rooms):
                room = hubs.rooms.get(key)
                if room is not None:
                    for conn in [c for c in room.conns if c.user_id == user]:
                        conn.offer(protocol.error("banned", "You have been banned."))
                        conn.drop(protocol.CLOSE_BANNED)
        elif kind == "unban":
            self.bans.discard(user)
        elif kind == "mute" and isinstance(control.get("session"), int):
            self.mutes[(control["session"], user)] = control.get("until")
        elif kind == "unmute" and isinstance(control.get("session"), int):
            self.mutes.pop((control["session"], user), None)

    def receive(self, hubs: LiveHubs, msg: dict[str, Any]) -> None:
        """A message of the summit's channel: presence, or numbered bans and mutes."""
        presence = msg.get("p")
        if isinstance(presence, dict) and presence.get("pid") != hubs.pid:
            self.presence[str(presence.get("pid"))] = (
                time.monotonic(), dict(presence.get("n") or {}))
        seq = msg.get("s")
        if isinstance(seq, int):
            if not self.is_new(seq):
                return
            self.advance(seq)
        for control in msg.get("x", ()):
            self.apply_control(hubs, control)

    def reconcile(self, hubs: LiveHubs, top: int, bans: set[int],
                  mutes: dict[tuple[int, int], float | None]) -> None:
        """Catch up with the stored sanctions (numbered up to ``top``): new bans close their
        people's connections; lifted ones are forgotten unless this process applied a newer
        change than the snapshot holds (then only what it adds is taken)."""
        for user in bans - self.bans:
            self.apply_control(hubs, {"k": "ban", "user": user})
        if top >= self.highest:
            self.bans = set(bans)
            self.mutes = dict(mutes)
        else:
            for key, until in mutes.items():
                self.mutes.setdefault(key, until)
        self.caught_up(top)

    def remote_count(self, key: str, pid: str, now: float) -> int:
        total = 0
        for other, (at, counts) in self.presence.items():
            if other != pid and now - at <= PRESENCE_FRESH:
                total += counts.get(key, 0)
        return total


class Room(Numbered):
    """A live room's state in this process and its local connections."""

    def __init__(self, hubs: LiveHubs, snap: RoomSnapshot) -> None:
        super().__init__(snap.seq)
        self.hubs = hubs
        self.ref = snap.ref
        self.key = snap.ref.key
        self.title = snap.title
        self.video_url = snap.video_url
        self.capacity = snap.capacity
        self.settings = dict(snap.settings)
        self.chat: OrderedDict[int, dict[str, Any]] = OrderedDict(
            (m["id"], m) for m in snap.chat)
        self.held: dict[int, dict[str, Any]] = {m["id"]: m for m in snap.held}
        self.questions: dict[int, dict[str, Any]] = {q["id"]: q for q in snap.questions}
        self.polls: dict[int, dict[str, Any]] = {p["id"]: p for p in snap.polls}
        self.rooms: list[dict[str, Any]] = [dict(r) for r in snap.rooms]
        self.question_votes = snap.question_votes
        self.poll_votes = snap.poll_votes
        self.removed: set[int] = set()  # chat ids removed (a late "chat" must not revive)
        # Chat ids already shown here, beyond the 50 kept (trimmed in arrival order, which is
        # not id order across processes): a reload's snapshot must not show one again.
        self.shown: set[int] = set(self.chat)
        self._shown_order: deque[int] = deque(self.chat)
        self.conns: set[Conn] = set()
        self.moderators = 0
        self.pending: dict[tuple[str, int], dict[str, Any]] = {}
        self.pending_mod: dict[tuple[str, int], dict[str, Any]] = {}
        self.count_sent = 0
        self.rooms_sent: list[int] = [0] * len(self.rooms)
        self.idle_since: float | None = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self._state_json: dict[bool, str] = {}  # moderator? -> cached shared state JSON
        # Sequence numbers (Numbered). ``item_seq``: the number that last changed a chat
        # message or question (what a reload may take back, see reconcile).
        self.settings_seq = snap.seq
        self.item_seq: dict[tuple[str, int], int] = {}
        self._msg_seq: int | None = None  # the number of the message being applied

    # -- applying events ------------------------------------------------------------------

    def receive(self, msg: dict[str, Any]) -> bool:
        """Apply a message of this room's channel once: a numbered message (``"s"``) already
        applied (this process's own, back from the broker; or one a reload covered) is
        skipped. Returns whether it was applied."""
        seq = msg.get("s")
        if not isinstance(seq, int):
            self.apply_message(msg)
            return True
        if not self.is_new(seq):
            return False
        self.apply_message(msg, seq=seq)
        self.advance(seq)
        return True

    def reconcile(self, snap: RoomSnapshot) -> None:
        """Catch up with the stored state ``snap`` (loaded after a broker gap, or because the
        stored number is ahead): everything it holds is applied as events (duplicates are
        ignored), and what it no longer holds was taken back while this process was not
        listening: a chat message deleted or rejected, a question rejected. Only what was
        applied at a number up to the snapshot's can be taken back (newer changes may be
        missing from it)."""
        top = snap.seq
        self._msg_seq = None
        chat_ids = {m["id"] for m in snap.chat}
        held_ids = {m["id"] for m in snap.held}
        for m in snap.held:
            self._apply({"k": "held", "m": m}, everyone=False)
        for m in snap.chat:
            self._apply({"k": "chat", "m": m}, everyone=True)
        full = len(snap.chat) >= live_service.CHAT_HISTORY
        floor = min(chat_ids) if full else 0
        for mid in list(self.chat):
            if mid not in chat_ids and self.item_seq.get(("c", mid), 0) <= top:
                if mid > floor:
                    self._apply({"k": "chat_removed", "id": mid}, everyone=True)
                else:  # older than the history the snapshot holds: not removed, just old
                    del self.chat[mid]
        for mid in list(self.held):
            if (mid not in held_ids and mid not in chat_ids
                    and self.item_seq.get(("c", mid), 0) <= top):
                self._apply({"k": "chat_removed", "id": mid}, everyone=False)
        question_ids = {q["id"] for q in snap.questions}
        for q in snap.questions:
            self._apply({"k": "question", "q": q}, everyone=True)
        for qid, q in list(self.questions.items()):
            if (qid not in question_ids and q["status"] != "rejected"
                    and self.item_seq.get(("q", qid), 0) <= top):
                self._apply({"k": "question", "q": {**q, "status": "rejected"}}, everyone=True)
        for p in snap.polls:
            self._apply({"k": "poll", "p": p}, everyone=p["status"] != "draft")
        for user, questions in snap.question_votes.items():
            self.question_votes.setdefault(user, set()).update(questions)
        for user, polls in snap.poll_votes.items():
            self.poll_votes.setdefault(user, {}).update(polls)
        if top >= self.settings_seq:
            self._msg_seq = top
            self._apply({"k": "settings", **snap.settings}, everyone=True)
            self._msg_seq = None
        self.caught_up(top)

    def apply_message(self, msg: dict[str, Any], *, seq: int | None = None) -> None:
        """Apply one broker message (``e``/``m`` events, ``v`` votes); ``seq``: its number."""
        self._msg_seq = seq
        for vote in msg.get("v", ()):
            if vote[0] == "q":
                self.question_votes.setdefault(vote[2], set()).add(vote[1])
            elif vote[0] == "p":
                self.poll_votes.setdefault(vote[2], {})[vote[1]] = vote[3]
        for event in msg.get("e", ()):
            self._apply(event, everyone=True)
        for event in msg.get("m", ()):
            self._apply(event, everyone=False)

    def _queue(self, key: tuple[str, int], event: dict[str, Any], everyone: bool) -> None:
        (self.pending if everyone else self.pending_mod)[key] = event
        self._state_json.clear()

    def _apply(self, event: dict[str, Any], *, everyone: bool) -> None:
        kind = event.get("k")
        seq = self._msg_seq
        if seq is not None:
            if kind in ("chat", "held", "chat_removed"):
                mid = event["m"]["id"] if kind != "chat_removed" else event["id"]
                self.item_seq[("c", mid)] = max(seq, self.item_seq.get(("c", mid), 0))
            elif kind in ("question", "pending"):
                qid = event["q"]["id"]
                self.item_seq[("q", qid)] = max(seq, self.item_seq.get(("q", qid), 0))
        if kind == "chat":
            m = event["m"]
            mid = m["id"]
            if mid in self.removed or mid in self.shown:
                return
            self.held.pop(mid, None)
            self.chat[mid] = m
            self.shown.add(mid)
            self._shown_order.append(mid)
            if len(self._shown_order) > SHOWN_IDS:
                self.shown.discard(self._shown_order.popleft())
            while len(self.chat) > live_service.CHAT_HISTORY:
                old, _ = self.chat.popitem(last=False)
                self.item_seq.pop(("c", old), None)
            self._queue(("chat", mid), event, True)
        elif kind == "held":
            m = event["m"]
            if m["id"] in self.removed or m["id"] in self.shown:
                return
            self.held[m["id"]] = m
            self._queue(("held", m["id"]), event, False)
        elif kind == "chat_removed":
            mid = event["id"]
            if mid in self.removed:
                return
            self.removed.add(mid)
            self.chat.pop(mid, None)
            self.held.pop(mid, None)
            self.pending.pop(("chat", mid), None)
            self._queue(("chat_removed", mid), event, everyone)
        elif kind in ("question", "pending"):
            q = self._merge_question(event["q"])
            if q is None:
                return
            shown = q["status"] not in ("pending", "rejected")
            if q["status"] == "pending":
                self._queue(("q", q["id"]), {"k": "pending", "q": q}, False)
            else:
                self.pending_mod.pop(("q", q["id"]), None)
                self._queue(("q", q["id"]), {"k": "question", "q": q}, shown)
        elif kind == "poll":
            p = self._merge_poll(event["p"])
            if p is not None:
                self._queue(("p", p["id"]), {"k": "poll", "p": p}, p["status"] != "draft")
        elif kind == "settings":
            # Not monotonic (paused, then resumed): an older change never undoes a newer one.
            if seq is not None:
                if seq < self.settings_seq:
                    return
                self.settings_seq = seq
            new: dict[str, Any] = {
                k: event[k] for k in ("paused", "slow", "premoderated") if k in event}
            if any(self.settings.get(k) != v for k, v in new.items()):
                self.settings.update(new)
                self._queue(("settings", 0), {"k": "settings", **self.settings}, True)

    def _merge_question(self, q: dict[str, Any]) -> dict[str, Any] | None:
        old = self.questions.get(q["id"])
        if old is None:
            merged = dict(q)
        else:
            status = q["status"] if QUESTION_RANK.get(q["status"], 0) >= QUESTION_RANK.get(
                old["status"], 0) else old["status"]
            merged = {**old, "status": status, "upvotes": max(old["upvotes"], q["upvotes"])}
            if merged == old:
                return None
        merged["voted"] = None
        if merged["status"] == "rejected":
            self.questions.pop(q["id"], None)
            self.questions[q["id"]] = merged  # kept so that a late "pending" stays rejected
        else:
            self.questions[q["id"]] = merged
        return merged

    def _merge_poll(self, p: dict[str, Any]) -> dict[str, Any] | None:
        old = self.polls.get(p["id"])
        if old is None:
            merged = dict(p)
        else:
            status = p["status"] if POLL_RANK.get(p["status"], 0) >= POLL_RANK.get(
                old["status"], 0) else old["status"]
            votes = {o["id"]: o["votes"] for o in old["options"]}
            options = [{**o, "votes": max(o["votes"], votes.get(o["id"], 0))}
                       for o in p["options"]]
            merged = {**old, "status": status, "options": options,
                      "total": sum(o["votes"] for o in options)}
            if merged == old:
                return None
        merged["voted"] = None
        self.polls[p["id"]] = merged
        return merged

    # -- connections ----------------------------------------------------------------------

    def count(self, now: float | None = None) -> int:
        return self.hubs.count(self.key, now)

    def add(self, conn: Conn) -> None:
        conn.room = self
        self.conns.add(conn)
        if conn.is_moderator:
            self.moderators += 1
        self.idle_since = None

    def remove(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            if conn.is_moderator:
                self.moderators -= 1
            if not self.conns:
                self.idle_since = time.monotonic()

    # -- the state a joining client gets --------------------------------------------------

    def _shared_state(self, moderator: bool) -> str:
        cached = self._state_json.get(moderator)
        if cached is not None:
            return cached
        state: dict[str, Any] = {
            "room": {"key": self.key, "kind": self.ref.kind, "session": self.ref.session_id,
                     "title": self.title, "video_url": self.video_url},
            "settings": self.settings,
            "chat": list(self.chat.values()),
            "questions": self._shown_questions(),
            "polls": [p for p in self.polls.values() if moderator or p["status"] != "draft"],
            "rooms": self.rooms,
        }
        if moderator:
            state["held"] = list(self.held.values())
            state["pending"] = [q for q in self.questions.values() if q["status"] == "pending"]
        text = protocol.encode(state)
        self._state_json[moderator] = text
        return text

    def _shown_questions(self) -> list[dict[str, Any]]:
        shown = [q for q in self.questions.values()
                 if q["status"] not in ("pending", "rejected")]
        shown.sort(key=lambda q: (-q["upvotes"], q["id"]))
        return shown

    def welcome(self, conn: Conn) -> str:
        you = {"user": conn.user_id, "name": conn.identity.name, "role": conn.identity.role}
        count = self.count() + (0 if conn in self.conns else 1)
        q_votes = self.question_votes.get(conn.user_id)
        p_votes = self.poll_votes.get(conn.user_id)
        if not q_votes and not p_votes:
            state = self._shared_state(conn.is_moderator)
        else:
            data = json.loads(self._shared_state(conn.is_moderator))
            for q in data["questions"]:
                q["voted"] = bool(q_votes and q["id"] in q_votes)
            for p in data["polls"]:
                p["voted"] = (p_votes or {}).get(p["id"])
            state = protocol.encode(data)
        # The count is not in the cached state (it changes with every join): spliced in.
        return ('{"t":"welcome","room":' + protocol.encode(self.key) + ',"you":'
                + protocol.encode(you) + ',"state":{"count":' + str(count) + ',"seq":'
                + str(self.seq) + "," + state[1:] + "}")

    # -- the tick -------------------------------------------------------------------------

    def refresh_counts(self, now: float) -> None:
        n = self.count(now)
        if n != self.count_sent:
            self.count_sent = n
            self.pending[("count", 0)] = {"k": "count", "n": n}
        if self.rooms:
            counts = [self.hubs.count(r["key"], now) for r in self.rooms]
            if counts != self.rooms_sent:
                self.rooms_sent = counts
                for r, c in zip(self.rooms, counts, strict=True):
                    r["count"] = c
                self.pending[("rooms", 0)] = {"k": "rooms", "rooms": self.rooms}
                self._state_json.clear()

    def flush(self) -> int:
        """Send the pending events as one batch (encoded once); returns frames offered."""
        if not self.pending and not self.pending_mod:
            return 0
        events = list(self.pending.values())
        self.pending = {}
        mod_events = list(self.pending_mod.values())
        self.pending_mod = {}
        frame = protocol.batch(events, self.seq) if events else None
        # Moderators' extras first: an object's moderators-only state (a draft poll, a pending
        # question, a held message) is always older than its public state (open, approved,
        # shown), so within one batch the public event must come last to win.
        mod_frame = protocol.batch(mod_events + events, self.seq) if mod_events else frame
        sent = 0
        for conn in list(self.conns):
            f = mod_frame if conn.is_moderator else frame
            if f is not None and conn.offer(f):
                sent += 1
        return sent


class LiveHubs:
    """This process's live rooms, their broker subscriptions, presence and attendance."""

    def __init__(self, *, db: Database, broker: Broker, tick_ms: int = 250,
                 auth: LiveAuth | None = None) -> None:
        self.db = db
        self.broker = broker
        # Sign-outs, deactivations and lost roles (live_auth.py); None only in unit tests.
        self.auth = auth
        self._sweeper: asyncio.Task[None] | None = None
        self.tick = max(tick_ms, 5) / 1000
        self.pid = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.rooms: dict[str, Room] = {}
        self.summits: dict[int, SummitState] = {}
        self._opening: dict[str, asyncio.Future[Room | None]] = {}
        self._missing: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[Any]] = set()
        self._beats: list[Beat] = []
        self._flushing = False
        self._slot = 0
        self._ticker: asyncio.Task[None] | None = None
        self._started = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        # Every posting frame of the process is written by this one writer (group commit).
        self.writer = LiveWriter(db, self.deliver)
        self.stats = {"frames": 0, "batches": 0, "dropped_slow": 0, "publish_failed": 0,
                      "reloads": 0}
        self.problems = Throttled(log)  # an outage: one line per kind per interval
        self.slow_log = Throttled(log, interval=1.0)
        self._buffers: dict[str, list[dict[str, Any]]] = {}  # rooms being opened
        self._checking = False
        self._last_check = 0.0
        self.gc = GcPacer()

    def pace_gc(self) -> None:
        """Let the clock pace the cycle collector (see :class:`GcPacer`); the app's lifespan
        does this, tests (which run the app without one) do not."""
        self.gc.start()

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.loop = asyncio.get_running_loop()
        # The live rooms' database work has its own threads: a burst of posts waiting for
        # the database must not take every worker thread the site's pages use.
        self.limiter = anyio.CapacityLimiter(WRITE_THREADS)
        self.writer.limiter = self.limiter
        # A network broker starts even while it is away (the hubs serve degraded, rooms
        # catch up from the database) and calls back each time it is connected again.
        self.broker.on_reconnect(self._broker_back)
        await self.broker.start()
        self._started = True
        self.writer.start()
        self._ticker = self._loop().create_task(self._run())
        if self.auth is not None:
            self.auth.limiter = self.limiter
            self._sweeper = self._loop().create_task(self.auth.run(self.connections))

    async def stop(self) -> None:
        """Close every connection (1001), write the last attendance, stop the broker."""
        if not self._started:
            return
        self._started = False
        # What is queued is written (and answered) while the connections are still open.
        await self.writer.stop()
        for room in list(self.rooms.values()):
            for conn in list(room.conns):
                conn.drop(protocol.CLOSE_GOING_AWAY)
        for task in (self._ticker, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.auth is not None:
            self.auth.stop()
        closers = [t for t in self._closers if not t.done()]
        if closers:
            await asyncio.wait(closers, timeout=CLOSE_TIMEOUT + 2)
        for room in list(self.rooms.values()):
            self._close_room(room)
        for state in list(self.summits.values()):
            if state.task is not None:
                state.task.cancel()
        self.summits.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        await self._flush_attendance(final=True)
        await self.broker.stop()
        self.gc.stop()

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError("the live hubs are not started")
        return self.loop

    def keep(self, task: asyncio.Task[Any], *, closer: bool = False) -> None:
        """Hold a reference to a background task until it is done."""
        tasks = self._closers if closer else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # -- rooms ----------------------------------------------------------------------------

    async def open_room(self, key: str) -> Room | None:
        """The room ``key`` (loaded and subscribed on first use), or None if none exists.

        Bounded: a room that cannot be opened within OPEN_TIMEOUT (the database is away)
        raises TimeoutError, which the gateway answers with ``server_busy``; the next join
        tries again."""
        room = self.rooms.get(key)
        if room is not None:
            return room
        missing = self._missing.get(key)
        if missing is not None and time.monotonic() - missing < NOT_FOUND_CACHE_SECONDS:
            return None
        opening = self._opening.get(key)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Room | None] = self._loop().create_future()
        self._opening[key] = future
        try:
            room = await asyncio.wait_for(self._open(key), OPEN_TIMEOUT)
            future.set_result(room)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            del self._opening[key]
        return room

    async def _subscribe(self, key: str) -> asyncio.Task[None]:
        """A task that holds the broker subscription of channel ``key`` and hands what
        arrives to :meth:`receive`; returned once subscribed (a network broker does not wait
        for the network: it subscribes upstream when connected)."""
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with self.broker.subscribe(channel(key)) as sub:
                subscribed.set()
                async for raw in sub:
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(msg, dict):
                        self.receive(key, msg)

        task = self._loop().create_task(listen())
        self.keep(task)
        waiter = self._loop().create_task(subscribed.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not subscribed.is_set():
            task.result()  # its error
            raise BrokerError(f"the subscription of {key} ended")
        return task

    async def _open(self, key: str) -> Room | None:
        # What arrives before the room exists (the broker, this process's writer) is kept
        # and applied after the snapshot: numbered messages it already holds are skipped.
        buffered = self._buffers.setdefault(key, [])
        task: asyncio.Task[None] | None = None
        try:
            task = await self._subscribe(key)
            snap = await anyio.to_thread.run_sync(self._load_snapshot, key, limiter=self.limiter)
            if snap is None:
                task.cancel()
                self._missing[key] = time.monotonic()
                return None
            await self._open_summit(snap.ref.summit_id)
        except BaseException:
            if task is not None:
                task.cancel()
            self._buffers.pop(key, None)
            raise
        room = Room(self, snap)
        self._buffers.pop(key, None)
        for msg in buffered:
            room.receive(msg)
        room.pending.clear()
        room.pending_mod.clear()
        room.task = task
        self.rooms[key] = room
        self.summits[snap.ref.summit_id].rooms.add(key)
        room.refresh_counts(time.monotonic())
        room.pending.clear()
        return room

    def _load_snapshot(self, key: str) -> RoomSnapshot | None:
        with self.db.transaction(write=False) as session:
            return live_service.snapshot(session, key)

    def _load_sanctions(
        self, summit_id: int
    ) -> tuple[int, set[int], dict[tuple[int, int], float | None]]:
        with self.db.transaction(write=False) as session:
            return live_service.summit_snapshot(session, summit_id)

    def _load_seqs(self, keys: list[str]) -> dict[str, int]:
        with self.db.transaction(write=False) as session:
            return live_service.channel_seqs(session, keys)

    async def _open_summit(self, summit_id: int) -> SummitState:
        state = self.summits.get(summit_id)
        if state is not None:
            await state.ready.wait()
            if self.summits.get(summit_id) is not state:
                raise BrokerError(f"summit {summit_id} could not be opened")
            return state
        state = SummitState(summit_id)
        self.summits[summit_id] = state
        key = live_service.summit_channel_key(summit_id)
        try:
            state.task = await self._subscribe(key)
            top, bans, mutes = await anyio.to_thread.run_sync(
                self._load_sanctions, summit_id, limiter=self.limiter)
        except BaseException:
            if state.task is not None:
                state.task.cancel()
            del self.summits[summit_id]
            state.ready.set()
            raise
        state.reconcile(self, top, bans, mutes)
        state.ready.set()
        return state

    def _close_room(self, room: Room) -> None:
        self.rooms.pop(room.key, None)
        if room.task is not None:
            room.task.cancel()
        state = self.summits.get(room.ref.summit_id)
        if state is not None:
            state.rooms.discard(room.key)

    # -- connections ----------------------------------------------------------------------

    def connections(self) -> list[Conn]:
        """Every connection of this process."""
        conns: list[Conn] = []
        for room in self.rooms.values():
            conns.extend(room.conns)
        return conns

    def join(self, room: Room, conn: Conn) -> None:
        room.add(conn)
        conn.start()

    def leave(self, conn: Conn) -> None:
        """Take a connection out of its room and keep its last attendance."""
        room = conn.room
        if room is None or conn not in room.conns:
            return
        room.remove(conn)
        conn.heartbeat()
        self._take_beat(conn)

    def _take_beat(self, conn: Conn) -> None:
        seconds = int(conn.beat_seconds)
        if seconds <= 0 or conn.room is None:
            return
        conn.beat_seconds -= seconds
        self._beats.append(Beat(
            session_id=conn.room.ref.session_id, user_id=conn.user_id,
            organization_id=conn.identity.organization_id, at=utcnow(), seconds=seconds))

    def count(self, key: str, now: float | None = None) -> int:
        """Live clients in room ``key`` across every process."""
        now = time.monotonic() if now is None else now
        room = self.rooms.get(key)
        local = len(room.conns) if room is not None else 0
        summit_id = room.ref.summit_id if room is not None else None
        if summit_id is None:
            # A breakout room not open here: any summit whose presence mentions it.
            return local + sum(s.remote_count(key, self.pid, now) for s in self.summits.values())
        state = self.summits.get(summit_id)
        return local + (state.remote_count(key, self.pid, now) if state else 0)

    def receive(self, key: str, msg: dict[str, Any]) -> None:
        """A message of channel ``key`` (from the broker or this process's writer)."""
        room = self.rooms.get(key)
        if room is not None:
            room.receive(msg)
            return
        buffered = self._buffers.get(key)
        if buffered is not None:
            buffered.append(msg)
            return
        if key.startswith("summit") and key[6:].isdigit():
            state = self.summits.get(int(key[6:]))
            if state is not None:
                state.receive(self, msg)

    async def deliver(self, key: str, msg: dict[str, Any]) -> None:
        """What the writer stored (after the commit): to this process's rooms at once, then
        to the other processes through the broker. Never raises: when the broker fails, the
        others find the stored number ahead of theirs and reload (:meth:`_check_seqs`)."""
        self.receive(key, msg)
        try:
            await self.broker.publish(channel(key), protocol.encode(msg))
        except Exception as exc:  # noqa: BLE001 - stored; the others catch up
            self.stats["publish_failed"] += 1
            self.problems.warning("summit.hub.publish_failed", channel=key, error=repr(exc))

    def slow_client(self, conn: Conn, reason: str) -> None:
        """Count and log (once per client; a burst of them once per second) a client dropped
        for not reading."""
        self.stats["dropped_slow"] += 1
        self.slow_log.warning(
            "summit.hub.slow_client_dropped", reason=reason,
            room=conn.room.key if conn.room is not None else None, user=conn.user_id,
            dropped_slow=self.stats["dropped_slow"])

    def status(self) -> dict[str, Any]:
        """For ``/healthz``."""
        return {"broker": self.broker.status(), "rooms": len(self.rooms),
                "connections": sum(len(r.conns) for r in self.rooms.values())}

    # -- catching up ----------------------------------------------------------------------

    def _broker_back(self) -> None:
        """The broker is connected again: what was published meanwhile never arrives here,
        so every open room and summit reloads from the database."""
        if not self._started and self.loop is None:
            return
        for room in list(self.rooms.values()):
            self.keep(self._loop().create_task(self._reload_room(room)))
        for state in list(self.summits.values()):
            if state.ready.is_set():
                self.keep(self._loop().create_task(self._reload_summit(state)))

    async def _reload_room(self, room: Room) -> None:
        if room.reloading:
            return
        room.reloading = True
        try:
            snap = await anyio.to_thread.run_sync(self._load_snapshot, room.key,
                                                  limiter=self.limiter)
            if snap is not None and self.rooms.get(room.key) is room:
                room.reconcile(snap)
                self.stats["reloads"] += 1
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            self.problems.warning("summit.hub.reload_failed", room=room.key, error=repr(exc))
        finally:
            room.reloading = False

    async def _reload_summit(self, state: SummitState) -> None:
        if state.reloading:
            return
        state.reloading = True
        try:
            top, bans, mutes = await anyio.to_thread.run_sync(
                self._load_sanctions, state.summit_id, limiter=self.limiter)
            if self.summits.get(state.summit_id) is state:
                state.reconcile(self, top, bans, mutes)
                self.stats["reloads"] += 1
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            self.problems.warning("summit.hub.reload_failed", summit=state.summit_id,
                                  error=repr(exc))
        finally:
            state.reloading = False

    async def _check_seqs(self) -> None:
        """Compare every open channel's stored number with what this process applied; reload
        what is behind (a broker message lost: a failed publish, an outage, a reconnect)."""
        rooms = list(self.rooms.values())
        summits = [s for s in self.summits.values() if s.ready.is_set()]
        keys = [r.key for r in rooms] + [live_service.summit_channel_key(s.summit_id)
                                         for s in summits]
        if not keys:
            return
        self._checking = True
        try:
            stored = await anyio.to_thread.run_sync(self._load_seqs, keys,
                                                    limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - the database is away; try next time
            self.problems.warning("summit.hub.seq_check_failed", error=repr(exc))
            return
        finally:
            self._checking = False
        waiting = self.broker.connected
        for room in rooms:
            if not room.reloading and room.behind(stored.get(room.key, 0), waiting=waiting):
                self.keep(self._loop().create_task(self._reload_room(room)))
        for state in summits:
            top = stored.get(live_service.summit_channel_key(state.summit_id), 0)
            if not state.reloading and state.behind(top, waiting=waiting):
                self.keep(self._loop().create_task(self._reload_summit(state)))

    # -- the clock ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        last_presence = 0.0
        while True:
            next_tick += self.tick
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_tick = loop.time()
                await asyncio.sleep(0)
            try:
                now = time.monotonic()
                counts = now - last_presence >= PRESENCE_SECONDS
                if counts:
                    last_presence = now
                    self._presence(now)
                for room in list(self.rooms.values()):
                    if counts:
                        # Counts once a second, not every tick: while thousands join, a
                        # count alone would otherwise cost everyone a frame per tick.
                        room.refresh_counts(now)
                    sent = room.flush()
                    if sent:
                        self.stats["frames"] += sent
                        self.stats["batches"] += 1
                if self.gc.enabled:
                    # Mid-interval: the writers have sent this tick's batches.
                    await asyncio.sleep(self.tick / 2)
                    self.gc.step(time.monotonic())
            except Exception:  # noqa: BLE001 - the clock must keep ticking
                self.problems.error("summit.hub.tick_failed", exc_info=True)

    def _presence(self, now: float) -> None:
        # Attendance: every second, the connections of this second's slot hand over their
        # time; with disconnects' last seconds, written in one small transaction.
        self._slot = (self._slot + 1) % ATTENDANCE_SLOTS
        stalled: list[Conn] = []
        for room in self.rooms.values():
            for conn in room.conns:
                if conn.slot == self._slot:
                    self._take_beat(conn)
                since = conn.sending_since
                if since is not None and now - since > SEND_STALL_SECONDS:
                    stalled.append(conn)
        for conn in stalled:
            conn.too_slow("send_stalled")
        if not self._checking and now - self._last_check >= SEQ_CHECK_SECONDS:
            self._last_check = now
            self.keep(self._loop().create_task(self._check_seqs()))
        if self._beats and not self._flushing:
            # Disconnects' last seconds: written within about a second, in one transaction.
            self.keep(self._loop().create_task(self._flush_attendance()))
        for state in list(self.summits.values()):
            counts = {key: len(self.rooms[key].conns) for key in state.rooms if key in self.rooms}
            if counts and self.broker.connected:
                msg = protocol.encode({"p": {"pid": self.pid, "n": counts}})
                self.keep(self._loop().create_task(self._publish_quietly(
                    channel(live_service.summit_channel_key(state.summit_id)), msg)))
            for pid, (at, _counts) in list(state.presence.items()):
                if now - at > 10 * PRESENCE_FRESH:
                    del state.presence[pid]
        for room in list(self.rooms.values()):
            if room.idle_since is not None and now - room.idle_since > ROOM_IDLE_SECONDS:
                self._close_room(room)
        for summit_id, state in list(self.summits.items()):
            if not state.rooms and state.ready.is_set() and summit_id not in {
                    r.ref.summit_id for r in self.rooms.values()} and not self._opening:
                if state.task is not None:
                    state.task.cancel()
                del self.summits[summit_id]

    async def _publish_quietly(self, chan: str, msg: str) -> None:
        try:
            await self.broker.publish(chan, msg)
        except Exception as exc:  # noqa: BLE001 - presence is best effort
            self.problems.warning("summit.hub.presence_failed", error=repr(exc))

    async def _flush_attendance(self, *, final: bool = False) -> None:
        if final:
            for room in self.rooms.values():
                for conn in room.conns:
                    conn.heartbeat()
                    self._take_beat(conn)
        beats, self._beats = self._beats, []
        if not beats:
            return
        self._flushing = True
        try:
            await anyio.to_thread.run_sync(self._write_beats, beats, limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - keep them for the next try
            self.problems.warning("summit.hub.attendance_failed", error=repr(exc))
            self._beats.extend(beats)
        finally:
            self._flushing = False

    def _write_beats(self, beats: list[Beat]) -> None:
        with self.db.transaction(write=True) as session:
            record_heartbeats(session, beats)

    def muted(self, summit_id: int, session_id: int, user_id: int) -> int | None:
        """Seconds left of a mute (a large number for an indefinite one), or None."""
        state = self.summits.get(summit_id)
        if state is None:
            return None
        now = dt.datetime.now(dt.UTC).timestamp()
        until = state.muted_until(session_id, user_id, now)
        if until is None:
            return None
        return 86_400 if until == float("inf") else max(1, int(until - now + 0.999))
