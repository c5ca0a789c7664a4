"""``shanju bench summit``: thousands of live-room WebSocket clients against real servers.

What runs:

- a throw-away database (a temporary SQLite file, or an empty database given with
  ``--database-url``) seeded in bulk with a published summit, one live session and N people
  with approved registrations (one precomputed password hash for all), and a live token for
  each, signed with the secret the servers use;
- K uvicorn server processes serving the app as ``shanju serve`` does
  (``ws="websockets-sansio"``, lifespan on, no per-message deflate), each on
  its own port; with K > 1 the rooms meet through Redis (``--broker-url``);
- ⌈N / 1,000⌉ client processes, each one asyncio loop of raw WebSocket connections (the
  ``websockets`` library's sans-I/O client on asyncio transports: a browser's frames — with
  ``permessage-deflate`` offered as browsers do — for a fraction of the client CPU of a full
  client), connected round-robin over the servers at a bounded rate (500/s in all by default,
  no SYN floods).

Every client joins the session's stage room ``s<id>``. Once all have joined (or failed), the
load runs for ``duration`` seconds: chat, questions, upvotes at per-person rates (exponential
gaps, so a Poisson stream per process), heartbeats every 20 s, one moderator who opens a poll
and approves questions (4/s at most), and votes from part of the room once the poll opens.

Latency is publish-to-receive fan-out: each chat message carries its send time
(``time.time()``; all processes are on this machine), and every client records
receive − send for each chat message in its batches, into a histogram of whole milliseconds
merged across processes. ``connected`` counts clients that got ``welcome``; ``failed`` those
that could not connect or join, or were closed by the server (4008, 4009, …) during the run.
Server memory is VmRSS of the server processes, before the clients connect and at the peak.

The last line printed is one JSON object (see :func:`run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import queue
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# A throw-away key for a throw-away database, random: its servers run with production
# settings, which refuse a short or guessable key.
SECRET_KEY = secrets.token_urlsafe(48)
CLIENTS_PER_PROCESS = 1_000
CONNECT_TIMEOUT = 15.0  # TCP connect + WebSocket handshake
JOIN_TIMEOUT = 30.0  # from the handshake to ``welcome``
DRAIN_SECONDS = 2.0  # after the load: batches still on their way (8 ticks of 250 ms)
MODERATOR_APPROVALS_PER_S = 4.0  # under the moderators' bucket (5/s)
CHAT_MARK = "#bench@"  # a chat body "#bench@<send time> …" carries its send time
# Most clients read their batches with these (C speed) instead of parsing the JSON: one
# "observer" connection per process (and the moderator) parses every frame in full.
_BATCH = re.compile(rb'\{\s*"t"\s*:\s*"batch"')
_CHAT_EVENT = re.compile(rb'"k"\s*:\s*"chat"')
_STAMP = re.compile(rb"#bench@(\d+\.\d+)")
LIVE_PATH = "/summit/live"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Load:
    """What the clients do during the run (rates are per person, in mean seconds between
    two actions of the same person)."""

    duration: float = 30.0
    chat_every: float = 120.0
    ask_every: float = 600.0
    upvote_every: float = 60.0
    heartbeat_every: float = 20.0
    # Share of the room that votes once the moderator opens the poll, and within how long.
    vote_share: float = 0.5
    vote_window: float = 20.0


# --- setup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What the seeded database holds."""

    summit_id: int
    session_id: int
    moderator_id: int
    attendee_ids: list[int]
    # Each person's browser session (web_sessions.id): live tokens name one.
    web_sessions: dict[int, int] = dataclasses.field(default_factory=dict)


def seed(database: Any, *, people: int, session_id: int, summit_id: int | None = None) -> World:
    """A published summit (id ``summit_id``, or the next one) with one live keynote (id
    ``session_id``), a platform reviewer who
    organizes it (the moderator), and ``people`` attendees with approved registrations —
    inserted in bulk, all with one precomputed password hash."""
    from sqlalchemy import insert, select

    from shanju.accounts.models import Role, User, WebSession
    from shanju.core.clock import today_cn, utcnow
    from shanju.core.security import hash_password
    from shanju.summit.models import (
        RegistrationKind,
        RegistrationStatus,
        SessionKind,
        SessionStatus,
        Summit,
        SummitRegistration,
        SummitSession,
        SummitStatus,
    )

    now, today = utcnow(), today_cn()
    password_hash = hash_password("bench-password")
    with database.transaction() as s:
        summit = Summit(id=summit_id, slug=f"bench-{session_id}", title="基准测试云峰会",
                        tagline="bench",
                        starts_on=today, ends_on=today, status=SummitStatus.PUBLISHED)
        s.add(summit)
        s.flush()
        s.add(SummitSession(id=session_id, summit_id=summit.id, kind=SessionKind.KEYNOTE,
                            title="主论坛：互联网公益的下一个十年",
                            starts_at=now - dt.timedelta(hours=1),
                            ends_at=now + dt.timedelta(hours=3), status=SessionStatus.LIVE))
        moderator = User(email=f"moderator-{session_id}@bench.invalid", display_name="主持人",
                         password_hash=password_hash, role=Role.REVIEWER)
        s.add(moderator)
        s.flush()
        prefix = f"p{session_id}-"
        for start in range(0, people, 5_000):
            s.execute(insert(User), [
                {"email": f"{prefix}{i}@bench.invalid", "display_name": f"参会者{i}",
                 "password_hash": password_hash, "role": Role.DONOR, "is_active": True,
                 "created_at": now}
                for i in range(start, min(people, start + 5_000))])
        attendee_ids = list(s.scalars(select(User.id).where(
            User.email.like(f"{prefix}%")).order_by(User.id)))
        for start in range(0, len(attendee_ids), 5_000):
            s.execute(insert(SummitRegistration), [
                {"summit_id": summit.id, "user_id": uid, "kind": RegistrationKind.AUDIENCE,
                 "status": RegistrationStatus.APPROVED, "decided_at": now, "created_at": now}
                for uid in [*attendee_ids[start:start + 5_000],
                            *([moderator.id] if start == 0 else [])]])
        # A signed-in browser session per person: the live rooms check that it lasts.
        expires = now + dt.timedelta(days=1)
        people_ids = [moderator.id, *attendee_ids]
        for start in range(0, len(people_ids), 5_000):
            s.execute(insert(WebSession), [
                {"token_hash": hashlib.sha256(f"bench-{session_id}-{uid}".encode()).hexdigest(),
                 "user_id": uid, "created_at": now, "expires_at": expires}
                for uid in people_ids[start:start + 5_000]])
        wanted = set(people_ids)
        web_sessions = {
            uid: sid for uid, sid in s.execute(
                select(WebSession.user_id, WebSession.id).where(WebSession.expires_at == expires)
            ) if uid in wanted}
        return World(summit_id=summit.id, session_id=session_id, moderator_id=moderator.id,
                     attendee_ids=attendee_ids, web_sessions=web_sessions)


def live_tokens(world: World, clients: int, secret: str = SECRET_KEY) -> list[str]:
    """One live token per client: the first is the moderator's, the rest attendees'."""
    from shanju.core.masking import mask_name
    from shanju.summit import tokens

    issued = [tokens.issue(secret, user_id=world.moderator_id, summit_id=world.summit_id,
                           role="moderator", name=mask_name("主持人"),
                           session_id=world.web_sessions[world.moderator_id])]
    issued += [tokens.issue(secret, user_id=uid, summit_id=world.summit_id, role="attendee",
                            name=mask_name(f"参会者{n}"), session_id=world.web_sessions[uid])
               for n, uid in enumerate(world.attendee_ids[:clients - 1])]
    return issued


# --- process hygiene ------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1_048_576)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _die_with_parent() -> None:
    """Get SIGTERM when the benchmark's process dies (even by SIGKILL): no orphans."""
    parent = int(os.environ.get("SHANJU_BENCH_PARENT", "0"))
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:  # it died before prctl
        os._exit(1)


def runqueue_wait_seconds(pid: int) -> float:
    """Time a process's threads were ready to run but waited for a CPU (schedstat)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return 0.0
    return total / 1e9


def listen_overflows() -> int:
    """The machine's count of connections dropped because a listen queue was full."""
    try:
        head, values = Path("/proc/net/netstat").read_text().splitlines()[:2]
        return int(dict(zip(head.split(), values.split(), strict=True))["ListenOverflows"])
    except (OSError, ValueError, KeyError):
        return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS, KiB); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# --- the server processes ---------------------------------------------------------------------


def serve(port: int) -> None:
    """One server process (``python -m shanju.bench.summit server PORT``): the app as
    ``shanju serve`` runs it, settings from the environment."""
    _die_with_parent()
    raise_fd_limit()
    import uvicorn

    uvicorn.run("shanju.app:create_app", factory=True, host="127.0.0.1", port=port,
                ws="websockets-sansio", ws_per_message_deflate=False, lifespan="on",
                log_level="warning", access_log=False,
                server_header=False, timeout_graceful_shutdown=10)


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# --- the client processes ---------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """One live-room client: a sans-I/O WebSocket client on an asyncio transport."""

    def __init__(self, swarm: Swarm, token: str, port: int, moderator: bool) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        self.swarm = swarm
        self.token = token
        self.moderator = moderator
        self.ws = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{port}{LIVE_PATH}"),
            # As browsers offer it; memLevel 5 as the websockets client does by default.
            extensions=[ClientPerMessageDeflateFactory(
                client_max_window_bits=True, compress_settings={"memLevel": 5})]
            if swarm.deflate else None,
            max_size=2**20)
        self.transport: asyncio.Transport | None = None
        self.state = "connecting"  # → joining → open → closed
        self.failed = False
        self.upvoted: set[int] = set()
        self.refs = 0
        self.sent_at: dict[str, float] = {}  # ref → send time of frames awaiting an answer

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a stream transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = time.time()
        self.swarm.bytes_received += len(data)
        self.ws.receive_data(data)
        self._flush()
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.handshake_exc is not None:
                    self.swarm.fail(self, f"handshake_{event.status_code}")
                    continue
                self.state = "joining"
                self.send({"t": "join", "token": self.token, "room": self.swarm.room})
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                payload = event.data
                self.swarm.on_text(
                    self, payload if isinstance(payload, bytes) else bytes(payload), now)
        if self.ws.close_expected() and self.transport is not None:
            asyncio.get_running_loop().call_later(5, self.transport.abort)

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self.swarm.on_closed(self, self.ws.close_code)

    # sending
    def send(self, frame: dict[str, Any]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.ws.send_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode())
        self._flush()

    def ref(self, kind: str) -> str:
        self.refs += 1
        return f"{kind}{self.refs}"

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        from websockets.protocol import State

        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        else:
            self.transport.abort()

    def _flush(self) -> None:
        if self.transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()


class Swarm:
    """One client process: its connections, the load it sends, what it measures."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.room: str = config["room"]
        self.ports: list[int] = config["ports"]
        self.specs: list[tuple[str, bool]] = [(t, bool(m)) for t, m in config["clients"]]
        self.connect_rate: float = config["connect_rate"]
        self.deflate: bool = config["deflate"]
        self.load = Load(**config["load"])
        self.rng = random.Random(config["seed"])  # noqa: S311 - a workload, not a secret
        self.conns: list[Conn] = []
        self.observer: Conn | None = None  # parses every frame: questions, polls
        self.open: list[Conn] = []
        self.connected = 0
        self.failures: Counter[str] = Counter()
        self.latency: Counter[int] = Counter()  # whole milliseconds → count
        self.ack_latency: Counter[int] = Counter()  # a posting frame → its ack
        self.sent: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.chat_received = 0
        self.batches = 0
        self.bytes_received = 0
        self.chat_visible = 0
        self.approved: list[int] = []
        self.approved_set: set[int] = set()
        self.polls_seen: set[int] = set()
        self.pending: deque[int] = deque()
        self.pending_seen: set[int] = set()
        self.running = False
        self.closing = False
        self.settled = asyncio.Event()
        self.vote_timers: list[asyncio.TimerHandle] = []

    # --- what the connections report
    def fail(self, conn: Conn, why: str) -> None:
        if not conn.failed:
            conn.failed = True
            self.failures[why] += 1
            if conn in self.open:
                self.open.remove(conn)
            if conn is self.observer:
                self.observer = self.open[0] if self.open else None
            self._check_settled()
        if conn.transport is not None:
            conn.transport.abort()

    def on_closed(self, conn: Conn, code: int | None) -> None:
        if conn.state in ("connecting", "joining"):
            self.fail(conn, f"join_closed_{code}" if code else "join_connection_lost")
        elif conn.state == "open" and not self.closing:
            self.fail(conn, f"closed_{code}" if code else "connection_lost")
        conn.state = "closed"

    def on_text(self, conn: Conn, data: bytes, now: float) -> None:
        if conn is not self.observer and not conn.moderator and _BATCH.match(data):
            self.batches += 1
            self.chat_received += len(_CHAT_EVENT.findall(data))
            latency = self.latency
            for stamp in _STAMP.findall(data):
                latency[max(0, int((now - float(stamp)) * 1000))] += 1
            return
        msg = json.loads(data)
        kind = msg.get("t")
        if kind == "batch":
            self.batches += 1
            for event in msg.get("events", ()):
                k = event.get("k")
                if k == "chat":
                    self.chat_received += 1
                    body = event["m"]["body"]
                    if body.startswith(CHAT_MARK):
                        with contextlib.suppress(ValueError):
                            sent = float(body[len(CHAT_MARK):body.index(" ")])
                            self.latency[max(0, int((now - sent) * 1000))] += 1
                elif k == "question":
                    self._question(event["q"])
                elif k == "poll":
                    self._poll(event["p"])
                elif k == "pending" and conn.moderator:
                    self._pending(event["q"])
        elif kind == "ack":
            ref = str(msg.get("ref") or "?")
            self.acks[ref[0]] += 1
            posted = conn.sent_at.pop(ref, None)
            if posted is not None:
                self.ack_latency[max(0, int((now - posted) * 1000))] += 1
            if ref[0] == "c" and msg.get("status") == "visible":
                self.chat_visible += 1
            elif ref.startswith("mpc") and self.running:  # the poll was created: open it
                poll = msg.get("poll", msg.get("id"))
                conn.send({"t": "mod", "action": "poll_open", "poll": poll,
                           "ref": conn.ref("mpo")})
        elif kind == "welcome":
            if conn.state == "joining":
                conn.state = "open"
                self.connected += 1
                self.open.append(conn)
                if self.observer is None:
                    self.observer = conn
                state = msg.get("state") or {}
                for q in state.get("questions", ()):
                    self._question(q)
                for p in state.get("polls", ()):
                    self._poll(p)
                if conn.moderator:
                    for q in state.get("pending", ()):
                        self._pending(q)
                self._check_settled()
        elif kind == "error":
            code = str(msg.get("code"))
            self.errors[code] += 1
            conn.sent_at.pop(str(msg.get("ref")), None)
            if conn.state == "joining":
                self.fail(conn, f"join_{code}")

    def _question(self, q: dict[str, Any]) -> None:
        qid = q.get("id")
        if not isinstance(qid, int):
            return
        if q.get("status") in ("approved", "answering"):
            if qid not in self.approved_set:
                self.approved_set.add(qid)
                self.approved.append(qid)
        elif qid in self.approved_set:
            self.approved_set.discard(qid)
            self.approved.remove(qid)

    def _poll(self, p: dict[str, Any]) -> None:
        pid = p.get("id")
        if p.get("status") != "open" or not isinstance(pid, int) or pid in self.polls_seen:
            return
        self.polls_seen.add(pid)
        options = [o["id"] for o in p.get("options", ())]
        if not options or not self.running:
            return
        loop = asyncio.get_running_loop()
        voters = self.rng.sample(self.open, int(len(self.open) * self.load.vote_share))
        for conn in voters:
            frame = {"t": "vote", "poll": pid, "option": self.rng.choice(options)}
            self.vote_timers.append(loop.call_later(
                self.rng.uniform(0, self.load.vote_window), self._send, conn, "v", frame))

    def _pending(self, q: dict[str, Any]) -> None:
        qid = q.get("id")
        if isinstance(qid, int) and q.get("status", "pending") == "pending" \
                and qid not in self.pending_seen:
            self.pending_seen.add(qid)
            self.pending.append(qid)

    def _check_settled(self) -> None:
        if self.connected + sum(self.failures.values()) >= len(self.specs):
            self.settled.set()

    def _send(self, conn: Conn, kind: str, frame: dict[str, Any]) -> None:
        if conn.state != "open" or conn.failed:
            return
        frame["ref"] = ref = conn.ref(kind)
        self.sent[kind] += 1
        if kind != "h":  # heartbeats get no answer
            conn.sent_at[ref] = time.time()
        conn.send(frame)

    # --- connecting
    async def connect_all(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = []
        for n, (token, moderator) in enumerate(self.specs):
            delay = started + n / self.connect_rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = Conn(self, token, self.ports[n % len(self.ports)], moderator)
            self.conns.append(conn)
            tasks.append(asyncio.create_task(self._connect(conn)))
        await asyncio.gather(*tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled.wait(), JOIN_TIMEOUT)
        for conn in self.conns:
            if conn.state != "open" and not conn.failed:
                # No handshake answer yet, or no welcome after the join frame.
                self.fail(conn, "timeout_handshake" if conn.state == "connecting"
                          else "timeout_welcome")

    async def _connect(self, conn: Conn) -> None:
        loop = asyncio.get_running_loop()
        port = conn.ws.uri.port
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, "127.0.0.1", port),
                                   CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            name = type(exc).__name__ if isinstance(exc, TimeoutError) else (
                f"OSError_{exc.errno}")
            self.fail(conn, f"connect_{name}")

    # --- the load
    async def _poisson(self, every: float, act: Callable[[Conn], None]) -> None:
        """Each open connection acts once per ``every`` seconds on average."""
        while True:
            if not self.open or every <= 0:
                await asyncio.sleep(0.1)
                continue
            await asyncio.sleep(self.rng.expovariate(len(self.open) / every))
            if self.open:
                act(self.rng.choice(self.open))

    def _chat(self, conn: Conn) -> None:
        n = self.sent["c"] + 1
        body = f"{CHAT_MARK}{time.time():.6f} 大家好，第{n}条：公益让世界更美好"
        self._send(conn, "c", {"t": "chat", "body": body})

    def _ask(self, conn: Conn) -> None:
        self._send(conn, "q", {"t": "ask", "body": "请问嘉宾：数字公益如何让乡村儿童受益？"})

    def _upvote(self, conn: Conn) -> None:
        choices = [q for q in self.approved[-50:] if q not in conn.upvoted]
        if choices:
            question = self.rng.choice(choices)
            conn.upvoted.add(question)
            self._send(conn, "u", {"t": "upvote", "question": question})

    async def _heartbeats(self) -> None:
        """Every open connection beats once per ``heartbeat_every`` seconds, spread evenly."""
        while True:
            conns = list(self.open)
            if not conns or self.load.heartbeat_every <= 0:
                await asyncio.sleep(0.1)
                continue
            step = self.load.heartbeat_every / len(conns)
            for conn in conns:
                await asyncio.sleep(step)
                self._send(conn, "h", {"t": "hb"})

    async def _moderate(self, moderator: Conn) -> None:
        self._send(moderator, "mpc", {
            "t": "mod", "action": "poll_create", "question": "你最关注哪个公益领域？",
            "options": ["乡村教育", "医疗救助", "环境保护", "应急救灾"]})
        while True:
            await asyncio.sleep(1 / MODERATOR_APPROVALS_PER_S)
            if self.pending:
                self._send(moderator, "ma", {"t": "mod", "action": "q_approve",
                                             "question": self.pending.popleft()})

    async def run_load(self) -> None:
        self.running = True
        load = self.load
        tasks = [asyncio.create_task(c) for c in (
            self._poisson(load.chat_every, self._chat),
            self._poisson(load.ask_every, self._ask),
            self._poisson(load.upvote_every, self._upvote),
            self._heartbeats())]
        moderators = [c for c in self.open if c.moderator]
        if moderators:
            tasks.append(asyncio.create_task(self._moderate(moderators[0])))
        await asyncio.sleep(load.duration)
        self.running = False
        for task in tasks:
            task.cancel()
        for timer in self.vote_timers:
            timer.cancel()
        await asyncio.sleep(DRAIN_SECONDS)

    def result(self) -> dict[str, Any]:
        return {
            "ev": "result", "connected": self.connected, "failed": sum(self.failures.values()),
            "open": len(self.open), "failures": dict(self.failures),
            "latency_ms": {str(k): v for k, v in self.latency.items()},
            "ack_latency_ms": {str(k): v for k, v in self.ack_latency.items()},
            "unanswered": sum(len(c.sent_at) for c in self.conns),
            "sent": dict(self.sent), "acks": dict(self.acks), "errors": dict(self.errors),
            "chat_visible": self.chat_visible, "chat_received": self.chat_received,
            "batches": self.batches, "bytes_received": self.bytes_received,
            "cpu_s": round(time.process_time(), 2), "rss_kib": rss_kib(os.getpid()),
        }


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _client_main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    swarm = Swarm(json.loads(await reader.readline()))

    async def report() -> None:
        while True:
            _emit({"ev": "progress", "connected": swarm.connected,
                   "failed": sum(swarm.failures.values()), "chat_received": swarm.chat_received})
            await asyncio.sleep(0.5)

    reporter = asyncio.create_task(report())
    await swarm.connect_all()
    _emit({"ev": "ready", "connected": swarm.connected, "failed": sum(swarm.failures.values()),
           "batches": swarm.batches})
    command = (await reader.readline()).strip()
    if command == b"go":
        await swarm.run_load()
    swarm.closing = True
    reporter.cancel()
    _emit(swarm.result())
    for conn in swarm.conns:
        conn.close()
    deadline = loop.time() + 5
    while loop.time() < deadline and any(c.state != "closed" for c in swarm.conns):
        await asyncio.sleep(0.05)


def client_process() -> None:
    """One client process (``python -m shanju.bench.summit client``): its configuration is the
    first line on stdin, then ``go`` starts the load; the report is JSON lines on stdout."""
    _die_with_parent()
    raise_fd_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.run(_client_main())
        return
    asyncio.run(_client_main())  # pragma: no cover - uvloop comes with uvicorn[standard]


# --- the run ----------------------------------------------------------------------------------


class _Children:
    """The processes the benchmark started; every one is stopped on the way out."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: list[subprocess.Popen[bytes]] = []
        self.clients: list[subprocess.Popen[bytes]] = []
        self.lines: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self._files: list[Any] = []

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SHANJU_BENCH_PARENT": str(os.getpid())}

    def start_server(self, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"server-{len(self.servers)}.log").open("wb")
        self._files.append(log)
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "shanju.bench.summit", "server", str(port)],
            env={**self._env(), **env}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        self.servers.append(proc)
        return proc

    def start_client(self, config: dict[str, Any]) -> subprocess.Popen[bytes]:
        index = len(self.clients)
        log = (self.folder / f"client-{index}.log").open("wb")
        self._files.append(log)
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "shanju.bench.summit", "client"], env=self._env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        self.clients.append(proc)
        if proc.stdin is None or proc.stdout is None:  # pragma: no cover - both are pipes
            raise RuntimeError("no pipes to the client process")
        threading.Thread(target=self._read, args=(index, proc.stdout), daemon=True).start()
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        proc.stdin.flush()
        return proc

    def _read(self, index: int, stream: Any) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self.lines.put((index, json.loads(line)))
        self.lines.put((index, None))

    def tell_clients(self, command: str) -> None:
        for proc in self.clients:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(command.encode() + b"\n")
                    proc.stdin.flush()

    def check_servers(self) -> None:
        for n, proc in enumerate(self.servers):
            if proc.poll() is not None:
                raise RuntimeError(f"server {n} exited with {proc.returncode}: "
                                   f"{self.tail(f'server-{n}.log')}")

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.folder / name).read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Clients first (they may already have finished), then the servers (graceful:
        SIGTERM, then SIGKILL after 20 s)."""
        for procs, grace in ((self.clients, 5.0), (self.servers, 20.0)):
            for proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for proc in procs:
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
        for f in self._files:
            f.close()


def _redis_reachable(url: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                      timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if reply.startswith((b"+PONG", b"-NOAUTH")) else f"answered {reply[:40]!r}"


def _percentile(histogram: Counter[int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = min(total, max(1, math.ceil(q * total)))
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return float(ms)
    return float(max(histogram))  # pragma: no cover - unreachable


def run(  # noqa: PLR0912, PLR0915 - one linear script of phases
    *,
    clients: int,
    servers: int = 1,
    load: Load | None = None,
    database_url: str | None = None,
    broker_url: str | None = None,
    connect_rate: float = 500.0,
    clients_per_process: int = CLIENTS_PER_PROCESS,
    deflate: bool = True,
    keep_logs: bool = False,
    progress: Progress | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seed, serve, connect, load, measure, stop; return the report (``clients``,
    ``servers``, ``connected``, ``failed``, ``p50_ms``, ``p99_ms``, ``server_rss_mib``,
    ``kib_per_connection``, ``messages_sent``, ``messages_received``, ``machine``, …)."""
    from shanju.bench.common import machine
    from shanju.core.db import Database
    from shanju.core.migrations import create_schema
    from shanju.payments.emulators.wechatpay import WeChatPayEmulatorKeys
    from shanju.payments.wechatpay import DEFAULT_BASE_URL as DEFAULT_WECHATPAY_URL

    load = load or Load()
    say = on_phase or (lambda _msg: None)
    tick = progress or (lambda _phase, _done, _total: None)
    if broker_url is None:
        broker_url = "redis://127.0.0.1:6379/0" if servers > 1 else "memory://"
    if broker_url.startswith("memory") and servers > 1:
        raise ValueError("several servers need a shared broker (redis:// or postgresql://)")
    if broker_url.startswith("redis") and (problem := _redis_reachable(broker_url)):
        raise RuntimeError(f"Redis at {broker_url} is not reachable ({problem})")
    raise_fd_limit()
    folder = Path(tempfile.mkdtemp(prefix="shanju-bench-summit-"))
    children = _Children(folder)
    database = Database(database_url or f"sqlite:///{folder / 'bench.sqlite3'}")
    ok_to_clean = False
    started = time.perf_counter()
    try:
        say("Migrating and seeding the database")
        create_schema(database)
        # Random summit and session ids: rooms (summit:s<session>) and a summit's bans and
        # presence (summit:summit<id>) are broker channels, and a shared Redis's channels are
        # not per database — two runs (or a run and a test) at once must not hear each other.
        world = seed(database, people=max(0, clients - 1),
                     session_id=random.randint(100_000, 999_999),  # noqa: S311
                     summit_id=random.randint(100_000, 999_999))  # noqa: S311
        tokens = live_tokens(world, clients)
        say(f"Starting {servers} server(s)")
        ports = [_free_port() for _ in range(servers)]
        # Production starts only with a real payment provider: WeChat Pay with the emulator's
        # keys (its real https URL, never called: nobody pays during this bench).
        payments = WeChatPayEmulatorKeys.in_directory(folder / "wechatpay-keys").environ(
            DEFAULT_WECHATPAY_URL)
        env = {**payments, "DATABASE_URL": database.url, "SHANJU_SECRET_KEY": SECRET_KEY,
               "SHANJU_ENVIRONMENT": "production", "SHANJU_SUMMIT_BROKER_URL": broker_url,
               "SHANJU_BASE_URL": f"http://127.0.0.1:{ports[0]}",
               "SHANJU_UPLOAD_DIR": str(folder / "uploads"),
               "SHANJU_TRANSPARENCY_KEY_FILE": str(folder / "transparency.key"),
               "SHANJU_TRANSPARENCY_CHECKPOINT_SECONDS": "0"}
        procs = [children.start_server(port, env) for port in ports]
        deadline = time.monotonic() + 120  # importing the app is slow on a busy machine
        for port in ports:
            while not _healthy(port):
                children.check_servers()
                if time.monotonic() > deadline:
                    raise RuntimeError("the servers did not start within 120 s")
                time.sleep(0.1)
        rss_before = sum(rss_kib(p.pid) for p in procs)
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        wait_before = sum(runqueue_wait_seconds(p.pid) for p in procs)
        rss_peak = rss_before

        def sample_rss() -> None:
            nonlocal rss_peak
            rss_peak = max(rss_peak, sum(rss_kib(p.pid) for p in procs))

        # Client processes: contiguous shares; each spreads its clients over the servers.
        count = max(1, math.ceil(clients / clients_per_process))
        shares = [list(range(clients))[n::count] for n in range(count)]
        say(f"Connecting {clients:,} clients from {count} process(es)")
        connect_started = time.perf_counter()
        overflows = listen_overflows()
        for n, share in enumerate(shares):
            offset = n % servers  # so that one-client processes still use every server
            children.start_client({
                "room": f"s{world.session_id}", "ports": ports[offset:] + ports[:offset],
                "clients": [(tokens[i], i == 0) for i in share],
                "connect_rate": connect_rate / count, "deflate": deflate,
                "load": asdict(load), "seed": 1_000 + n})
        del tokens
        status: dict[int, dict[str, Any]] = {}
        results: dict[int, dict[str, Any]] = {}
        ready: set[int] = set()
        connect_deadline = time.monotonic() + clients / connect_rate + JOIN_TIMEOUT + 90

        def pump(until: Callable[[], bool], deadline: float, phase: str) -> None:
            last = 0.0
            while not until():
                try:
                    index, message = children.lines.get(timeout=0.25)
                except queue.Empty:
                    message = {}
                    index = -1
                if message is None:
                    if index not in results:
                        raise RuntimeError(f"client process {index} exited early: "
                                           f"{children.tail(f'client-{index}.log')}")
                elif message.get("ev") == "result":
                    results[index] = message
                elif message.get("ev") == "ready":
                    ready.add(index)
                    status[index] = message
                elif message.get("ev") == "progress":
                    status[index] = message
                children.check_servers()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out while {phase}")
                now = time.monotonic()
                if now - last >= 0.5:
                    last = now
                    sample_rss()
                    if phase == "connecting":
                        tick(phase, sum(s.get("connected", 0) + s.get("failed", 0)
                                        for s in status.values()), clients)

        pump(lambda: len(ready) == count, connect_deadline, "connecting")
        connect_seconds = time.perf_counter() - connect_started
        tick("connecting", clients, clients)
        connected_at_go = sum(s["connected"] for s in status.values())
        batches_at_go = sum(s.get("batches", 0) for s in status.values())
        rss_connected = sum(rss_kib(p.pid) for p in procs)
        sample_rss()
        cpu_go = [cpu_seconds(p.pid) for p in procs]
        cpu_connect = sum(cpu_go) - sum(cpu_before)
        wait_go = sum(runqueue_wait_seconds(p.pid) for p in procs)
        say(f"Load for {load.duration:g} s")
        children.tell_clients("go")
        go = time.monotonic()

        def loaded() -> bool:
            tick("running", min(int(time.monotonic() - go), int(load.duration)),
                 int(load.duration))
            return len(results) == count

        pump(loaded, go + load.duration + DRAIN_SECONDS + 60, "running the load")
        cpu_run = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu_go, strict=True))
        overflows = listen_overflows() - overflows
        wait_run = sum(runqueue_wait_seconds(p.pid) for p in procs) - wait_go
        load_seconds = time.monotonic() - go
        say("Stopping")
        ok_to_clean = True
    finally:
        children.stop()
        database.dispose()
        # What the servers logged (warnings and errors only): the last lines go in the report.
        server_log = [line for n in range(len(children.servers))
                      for line in children.tail(f"server-{n}.log", 10).splitlines()]
        if ok_to_clean and not keep_logs:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"Logs kept in {folder}")

    def total(key: str) -> int:
        return sum(int(r.get(key, 0)) for r in results.values())

    def merged(key: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for r in results.values():
            out.update(r.get(key, {}))
        return out

    histogram: Counter[int] = Counter()
    acks: Counter[int] = Counter()
    for r in results.values():
        histogram.update({int(k): v for k, v in r["latency_ms"].items()})
        acks.update({int(k): v for k, v in r["ack_latency_ms"].items()})
    connected, failed = total("connected"), total("failed")
    sent = merged("sent")
    names = {"c": "chat", "q": "ask", "u": "upvote", "v": "vote", "h": "heartbeat",
             "mpc": "poll_create", "ma": "approve"}
    messages = {names.get(k, k): v for k, v in sorted(sent.items())}
    chat_visible, received = total("chat_visible"), total("chat_received")
    expected = chat_visible * connected_at_go
    rss_growth = max(0, rss_peak - rss_before)
    frames = total("batches") - batches_at_go
    return {
        "benchmark": "summit",
        "clients": clients,
        "servers": servers,
        "client_processes": count,
        "broker": broker_url.split(":", 1)[0],
        "db": database.engine.dialect.name,
        "deflate": deflate,
        "connected": connected,
        "failed": failed,
        "failures": dict(merged("failures")),
        "p50_ms": _percentile(histogram, 0.50),
        "p90_ms": _percentile(histogram, 0.90),
        "p99_ms": _percentile(histogram, 0.99),
        "max_ms": float(max(histogram)) if histogram else None,
        "latency_samples": sum(histogram.values()),
        "messages_sent": sum(sent.values()),
        "messages": messages,
        "chat_visible": chat_visible,
        "messages_received": received,
        "deliveries_expected": expected,
        "delivered_ratio": round(received / expected, 4) if expected else None,
        "batches_received": total("batches"),
        "batches_during_load": total("batches") - batches_at_go,
        "bytes_received": total("bytes_received"),
        "acks": sum(merged("acks").values()),
        # Posting frames (chat, ask, upvote, vote, mod) to their ack: the write path alone.
        "ack_p50_ms": _percentile(acks, 0.50),
        "ack_p99_ms": _percentile(acks, 0.99),
        "unanswered": total("unanswered"),
        "errors": dict(merged("errors")),
        "duration_s": load.duration,
        "load_seconds": round(load_seconds, 2),
        "connect_seconds": round(connect_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "server_rss_before_mib": round(rss_before / 1024, 1),
        "server_rss_connected_mib": round(rss_connected / 1024, 1),
        "server_rss_mib": round(rss_peak / 1024, 1),
        "kib_per_connection": round(rss_growth / connected, 1) if connected else None,
        "server_cpu_connect_s": round(cpu_connect, 2),
        "server_cpu_s": round(cpu_run, 2),
        # Time the servers' threads were ready to run but waited for a CPU taken by other
        # processes (the clients', or anyone's on a shared machine): large means the
        # latencies measure the machine, not the server.
        "server_runqueue_wait_connect_s": round(wait_go - wait_before, 2),
        "server_runqueue_wait_s": round(wait_run, 2),
        "server_cpu_percent": round(100 * cpu_run / load_seconds, 1) if load_seconds else None,
        # Server CPU per frame a client received during the load: comparable across runs on
        # a machine busy with other work, where latencies are not.
        "server_cpu_us_per_frame": round(cpu_run / frames * 1e6, 1) if frames else None,
        # Connections the kernel dropped because a server's accept queue was full (the whole
        # machine's count, from /proc/net/netstat): the client retries after 1, 3, 7… s.
        "listen_overflows": overflows,
        "client_cpu_s": round(sum(float(r.get("cpu_s", 0)) for r in results.values()), 2),
        "client_rss_mib": round(total("rss_kib") / 1024, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "server_log": server_log[-20:],
        "rates": asdict(load),
        "connect_rate": connect_rate,
        "ok": failed == 0 and connected == clients,
        "machine": machine(),
    }


def main(argv: list[str]) -> None:
    """``python -m shanju.bench.summit server PORT`` | ``client`` (the benchmark's children)."""
    if argv[:1] == ["server"] and len(argv) == 2:
        serve(int(argv[1]))
    elif argv == ["client"]:
        client_process()
    else:
        raise SystemExit("usage: python -m shanju.bench.summit server PORT | client")


if __name__ == "__main__":
    main(sys.argv[1:])
