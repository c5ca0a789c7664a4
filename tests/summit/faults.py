"""The fault tests' harness: server processes, private brokers, and clients like the browser's.

- :class:`ServerProcess` — one ``shanju serve``-like process (uvicorn, lifespan on) on a
  loopback port the harness picks: start, wait until ``/healthz`` answers, SIGKILL, start
  again on the same port. Its output goes to files (a server that logs a traceback per batch
  in an outage would otherwise fill a pipe and block).
- :class:`PrivateRedis` and :class:`PrivatePostgres` — a broker the test owns: started on a
  free port, stopped and started again on the SAME port. Never the shared Redis (6379) or
  PostgreSQL (5432): stopping those would break every other test. PostgreSQL refuses to run
  as root, so under root (as in CI) its processes run as the ``postgres`` OS user, in
  directories chowned to it.
- :class:`LiveClient` — a protocol client that behaves like ``static/js/summit-live.js``:
  joins with a live token, sends heartbeats, reconnects with backoff after a close (to its
  home server, or to the other one when its home refuses connections, as a load balancer
  would send it), keeps the room's chat by id from ``welcome`` and ``batch`` frames, and
  records what it saw per connection (to find a chat id received twice on one connection)
  and which of its posts were acknowledged.
- :class:`Crowd` — a room's clients (listeners and posting moderators spread over the
  servers) and the checks of issue 13: every acknowledged post in every client's model, no
  duplicate on a connection, every join answered.

Times are ``time.monotonic()`` seconds; reports give them relative to the fault's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from shanju.accounts.models import Role
from shanju.core.db import Database
from tests.conftest import IN_CI
from tests.summit.live_support import SECRET, Server, World, add_people

BOUND = 10.0  # seconds: what issue 13 allows after a fault (delivery, join answers)


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> NoReturn:
    """A tool the fault tests need is missing: fail in CI, skip (with the reason) elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (mandatory in CI)")
    pytest.skip(reason)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- server processes ------------------------------------------------------------------------

# One server process, as ``shanju serve`` runs the app (uvicorn, lifespan on: the broker and
# the hubs start with it). Arguments: database url, broker url, secret, a directory of its
# own files, the port. It dies with the test process (PR_SET_PDEATHSIG): no orphans.
SERVER = textwrap.dedent(
    """
    import ctypes, signal, socket, sys
    from pathlib import Path
    import uvicorn
    from shanju.app import create_app
    from shanju.core.config import Settings

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    database_url, broker_url, secret, tmp, port = sys.argv[1:6]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(port)))
    port = sock.getsockname()[1]
    settings = Settings(
        environment="test", database_url=database_url, secret_key=secret,
        base_url=f"http://127.0.0.1:{port}", summit_broker_url=broker_url, summit_tick_ms=50,
        upload_dir=Path(tmp) / "uploads",
        transparency_key_file=Path(tmp) / f"transparency-{port}.key",
        transparency_checkpoint_seconds=0,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, ws="websockets-sansio", lifespan="on",
                                           log_level="warning"))
    print(f"port {port}", flush=True)
    server.run(sockets=[sock])
    """
)


@dataclass
class Health:
    """One ``GET /healthz``: the status (None: no answer) and, if JSON, the body."""

    at: float
    status: int | None
    body: str
    error: str = ""

    @property
    def json_status(self) -> str | None:
        """``status`` of a JSON body (``ok``, ``degraded``), None for a plain one."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        return str(data.get("status")) if isinstance(data, dict) else None


class ServerProcess:
    """A server process on a fixed loopback port (see :data:`SERVER`)."""

    def __init__(self, name: str, *, database_url: str, broker_url: str, directory: Path,
                 port: int | None = None) -> None:
        self.name = name
        self.database_url = database_url
        self.broker_url = broker_url
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = directory / f"{name}.out"  # structlog's lines (stdout)
        self.err = directory / f"{name}.err"
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/summit/live"

    def as_server(self) -> Server:
        """For ``live_support.join``."""
        return Server(url=self.ws_url, base=self.base, app=None, server=None)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process (on the same port as before); see :meth:`wait_ready`.

        Call it from the main thread, not a worker's (``asyncio.to_thread``): the process
        gets SIGTERM when the thread that spawned it ends (PR_SET_PDEATHSIG)."""
        assert not self.alive, f"{self.name} is running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.out.open("ab") as out, self.err.open("ab") as err:
            marker = f"--- start {self.starts} on port {self.port} ---\n".encode()
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
            self.proc = subprocess.Popen(  # our own interpreter and script
                [sys.executable, "-c", SERVER, self.database_url, self.broker_url, SECRET,
                 str(self.directory), str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until ``/healthz`` answers 200; RuntimeError (with the log) if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"server {self.name} exited (code {code}) before it "
                                   f"served /healthz:\n{self.log_tail()}")
            if health(self.base, timeout=1.0).status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"server {self.name} did not serve /healthz within {timeout:.0f} s:"
                           f"\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (no shutdown at all: its clients see their connections reset)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def log_lines(self) -> int:
        """Lines the process has logged so far (stdout and stderr)."""
        return sum(p.read_text(errors="replace").count("\n") for p in (self.out, self.err)
                   if p.exists())

    def log_tail(self, chars: int = 3000) -> str:
        return f"[stdout]\n{_tail(self.out, chars)}\n[stderr]\n{_tail(self.err, chars)}"


def start_servers(servers: Sequence[ServerProcess], timeout: float = 60.0) -> None:
    """Start several at once (they import the app in parallel), wait until all answer."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready(timeout)


def stop_servers(servers: Sequence[ServerProcess], timeout: float = 20.0) -> None:
    """SIGTERM them all; SIGKILL what still runs after ``timeout`` (for all together)."""
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
    deadline = time.monotonic() + timeout
    for server in servers:
        server.stop(max(0.1, deadline - time.monotonic()))


def health(base: str, *, timeout: float = 5.0, path: str = "/healthz") -> Health:
    """``GET base+path`` (blocking: from async code, call it in a thread)."""
    at = time.monotonic()
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as response:  # noqa: S310
            return Health(at, response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Health(at, exc.code, exc.read().decode(errors="replace"))
    except (OSError, ValueError) as exc:
        return Health(at, None, "", f"{type(exc).__name__}: {exc}")


# --- private brokers ---------------------------------------------------------------------------


class PrivateRedis:
    """``redis-server`` on a port of its own, without persistence: stop() loses nothing the
    live rooms keep there (pub/sub only)."""

    kind = "redis"

    def __init__(self, directory: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.exe = str(exe)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start on this broker's port (the same every time); return once it answers PING."""
        assert not self.alive
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"redis-server exited:\n{_tail(self.log)}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout:.0f} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM and wait: its clients' connections are closed, new ones refused."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def terminate_connections(self) -> int:
        return 0  # not a fault of Redis the issue asks for

    def close(self) -> None:
        self.stop()


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
            candidates.append(Path(out))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                     if x.isdigit()], reverse=True)
    candidates += [Path(p) for p in versions]
    for path in candidates:
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    return None


def _pg_user() -> tuple[int, int] | None:
    """(uid, gid) of the ``postgres`` OS user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root, PostgreSQL needs the 'postgres' OS user, and there is none")
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    os.chown(path, *owner)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), *owner, follow_symlinks=False)


def _as_owner(owner: tuple[int, int] | None) -> dict[str, Any]:
    """Popen arguments that run a command as ``owner`` (the ``postgres`` user under root;
    like ``runuser -u postgres --`` without a process in between, so that our signals reach
    PostgreSQL itself)."""
    if owner is None:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": []}


def initdb(directory: Path) -> Path:
    """A fresh cluster's data directory in ``directory`` (trust authentication, user
    ``postgres``); ``directory`` is made accessible to the user PostgreSQL runs as."""
    bindir = pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL's initdb/postgres are not installed (pg_config --bindir, "
                    "/usr/lib/postgresql/*/bin)")
    owner = _pg_user()
    directory.mkdir(parents=True, exist_ok=True)
    _chown_tree(directory, owner)
    data = directory / "data"
    result = subprocess.run(
        [str(bindir / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data), "-E", "UTF8",
         "--locale=C", "--no-sync"],
        capture_output=True, text=True, timeout=120, cwd=directory, check=False,
        **_as_owner(owner))
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return data


def private_tmpdir(prefix: str) -> Path:
    """A directory outside pytest's (root-only) tmp tree, so that ``postgres`` may enter it."""
    return Path(tempfile.mkdtemp(prefix=prefix))


class PrivatePostgres:
    """A PostgreSQL cluster of its own (the broker's ``LISTEN``/``NOTIFY``), made from a
    template data directory (``initdb`` once per test session) copied into ``directory``."""

    kind = "postgresql"

    def __init__(self, directory: Path, template: Path) -> None:
        bindir = pg_bindir()
        assert bindir is not None  # the template was made with it
        self.postgres = bindir / "postgres"
        self.owner = _pg_user()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.data = directory / "data"
        # cp -a keeps the owner (and the 0700 mode PostgreSQL insists on).
        subprocess.run(["cp", "-a", str(template), str(self.data)], check=True, timeout=60)  # noqa: S607
        _chown_tree(directory, self.owner)
        self.port = free_port()
        self.log = directory / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start on this cluster's port (the same every time); return once it accepts
        connections."""
        assert not self.alive
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.postgres), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.directory), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "shared_buffers=16MB"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.directory, **_as_owner(self.owner))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"postgres exited:\n{_tail(self.log)}")
            if self._accepts():
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not accept connections within {timeout:.0f} s")

    def _accepts(self) -> bool:
        import psycopg  # noqa: PLC0415

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected at once) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def terminate_connections(self) -> int:
        """``pg_terminate_backend`` every client backend but our own; how many."""
        return terminate_backends(self.url, every_database=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


PrivateBroker = PrivateRedis | PrivatePostgres


def terminate_backends(url: str, *, every_database: bool = False) -> int:
    """``pg_terminate_backend`` each backend of ``url``'s database (of every database with
    ``every_database``) except the one asking; how many were terminated."""
    import psycopg  # noqa: PLC0415

    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    where = "" if every_database else "AND datname = current_database()"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' {where}"
        ).fetchone()
    return int(row[0]) if row else 0


# --- clients -------------------------------------------------------------------------------------

HEARTBEAT_SECONDS = 20.0  # summit-live.js HEARTBEAT_MS
# summit-live.js backs off 1, 2, 4 ... 30 s (each with jitter: half to all of it). The cap
# here is lower, so that a fault test's 10 s bound measures the server and not how long a
# client happened to sleep after its fourth refused join.
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 4.0
# summit-live.js waits for a join's answer as long as the socket stays open; this client
# gives up after this long (recording "no answer") so that a test ends.
JOIN_GIVE_UP = 20.0
FATAL_CLOSES = {4003: "banned", 4004: "room_not_found", 4011: "session_ended"}
FATAL_ERRORS = {"banned", "room_not_found", "session_ended", "not_registered"}


@dataclass
class JoinAttempt:
    """One try to get into a room: connect, send ``join``, the first answer.

    ``outcome``: ``welcome``; ``error:<code>`` (then the server closes); ``close:<code>``
    (closed without a frame); ``refused`` (no connection: the server is down — a load
    balancer sends the client elsewhere); ``no_answer`` (nothing within the wait)."""

    client: str
    server: str
    room: str
    sent: float
    answered: float | None = None
    outcome: str = "pending"
    gave_up: float | None = None  # when a ``no_answer`` stopped waiting

    def describe(self, origin: float) -> str:
        if self.answered is not None:
            took = f"after {self.answered - self.sent:.1f} s"
        elif self.gave_up is not None:
            took = f"(waited {self.gave_up - self.sent:.1f} s)"
        else:
            took = f"(still waiting after {time.monotonic() - self.sent:.1f} s)"
        return (f"{self.client} → {self.room} on {self.server} at {self.sent - origin:+.1f} s: "
                f"{self.outcome} {took}")


@dataclass
class Connection:
    """One WebSocket connection that got its ``welcome``."""

    server: str
    opened: float
    welcome_ids: list[int] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)  # chat ids in batch frames, in order
    closed: float | None = None
    close_code: int | None = None


@dataclass
class Post:
    """A chat message a client sent, and its answer: ``ack`` (with the message id and its
    status), ``error:<code>``, or None (no answer: the connection went away first)."""

    client: str
    ref: str
    body: str
    sent: float
    outcome: str | None = None
    answered: float | None = None
    id: int | None = None
    status: str | None = None


class LiveClient:
    """A browser-like client of one room (see the module's doc)."""

    def __init__(self, name: str, servers: Sequence[ServerProcess], *, home: int,
                 token: Callable[[], str], room: str, post_every: float | None = None) -> None:
        self.name = name
        self.servers = servers
        self.home = home
        self.new_token = token
        self.token = token()
        self.room = room
        self.post_every = post_every
        self.posting = False
        self.model: dict[int, dict[str, Any]] = {}  # chat id -> message
        self.connections: list[Connection] = []
        self.joins: list[JoinAttempt] = []
        self.posts: dict[str, Post] = {}
        self.fatal: str | None = None
        self.ws: ClientConnection | None = None
        self.joined = False
        self.first_joined: float | None = None  # the first welcome
        self.attempt = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sent = 0

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name=f"client-{self.name}"))
        if self.post_every is not None:
            self._tasks.append(asyncio.create_task(self._post(), name=f"poster-{self.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)

    # -- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while self.fatal is None:
            await self._connect_once()
            if self.fatal is not None:
                return
            self.attempt += 1
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (self.attempt - 1))
            await asyncio.sleep(delay / 2 + random.random() * delay / 2)

    def join_frame(self) -> dict[str, Any]:
        """What summit-live.js sends first (a resume position would go here)."""
        return {"t": "join", "token": self.token, "room": self.room}

    async def _open(self) -> tuple[ClientConnection, JoinAttempt] | None:
        """A connection to the home server, else (refused) to the next one."""
        order = [self.home, *(i for i in range(len(self.servers)) if i != self.home)]
        for i in order:
            server = self.servers[i]
            attempt = JoinAttempt(self.name, server.name, self.room, time.monotonic())
            self.joins.append(attempt)
            try:
                ws = await connect(server.ws_url, open_timeout=10, close_timeout=2,
                                   max_queue=None)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                attempt.answered = time.monotonic()
                attempt.outcome = f"refused:{type(exc).__name__}"
                continue
            return ws, attempt
        return None

    async def _connect_once(self) -> None:
        opened = await self._open()
        if opened is None:
            return
        ws, attempt = opened
        self.ws = ws
        try:
            await ws.send(json.dumps(self.join_frame()))
            attempt.sent = time.monotonic()
            try:
                raw = await asyncio.wait_for(ws.recv(), JOIN_GIVE_UP)
            except TimeoutError:
                attempt.outcome, attempt.gave_up = "no_answer", time.monotonic()
                return
            except ConnectionClosed:
                attempt.answered = time.monotonic()
                attempt.outcome = f"close:{ws.close_code}"
                self._closed(ws.close_code)
                return
            attempt.answered = time.monotonic()
            frame = json.loads(raw)
            if frame.get("t") == "error":
                code = str(frame.get("code"))
                attempt.outcome = f"error:{code}"
                if code in FATAL_ERRORS:
                    self.fatal = code
                elif code in ("token_expired", "bad_token", "role_changed"):
                    self.token = self.new_token()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.wait_closed(), 5)
                return
            if frame.get("t") != "welcome":
                attempt.outcome = f"unexpected:{frame.get('t')}"
                return
            attempt.outcome = "welcome"
            await self._live(ws, frame, attempt.server)
        finally:
            self.joined = False
            self.ws = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    async def _live(self, ws: ClientConnection, welcome: dict[str, Any], server: str) -> None:
        conn = Connection(server, time.monotonic())
        self.connections.append(conn)
        for m in welcome.get("state", {}).get("chat", []):
            conn.welcome_ids.append(m["id"])
            self.model[m["id"]] = m
        self.attempt = 0
        self.joined = True
        if self.first_joined is None:
            self.first_joined = conn.opened
        beat = asyncio.create_task(self._heartbeat(ws))
        try:
            async for raw in ws:
                self._receive(conn, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            beat.cancel()
            self.joined = False
            conn.closed = time.monotonic()
            conn.close_code = ws.close_code
        self._closed(ws.close_code)

    def _closed(self, code: int | None) -> None:
        if code in FATAL_CLOSES:
            self.fatal = FATAL_CLOSES[code]
        elif code in (4001, 4012):
            self.token = self.new_token()

    async def _heartbeat(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                await ws.send('{"t":"hb"}')

    def _receive(self, conn: Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "batch":
            for event in frame.get("events", ()):
                if event.get("k") == "chat":
                    m = event["m"]
                    conn.batch_ids.append(m["id"])
                    self.model[m["id"]] = m
        elif kind in ("ack", "error"):
            post = self.posts.get(str(frame.get("ref")))
            if post is not None and post.outcome is None:
                post.answered = time.monotonic()
                if kind == "ack":
                    post.outcome, post.id, post.status = "ack", frame.get("id"), frame.get("status")
                else:
                    post.outcome = f"error:{frame.get('code')}"
        elif kind == "token" and isinstance(frame.get("token"), str):
            self.token = frame["token"]

    async def _post(self) -> None:
        assert self.post_every is not None
        while True:
            await asyncio.sleep(self.post_every)
            ws = self.ws
            if not self.posting or not self.joined or ws is None:
                continue
            self._sent += 1
            ref = f"{self.name}-{self._sent}"
            post = Post(self.name, ref, f"{ref} 你好", time.monotonic())
            self.posts[ref] = post
            try:
                await ws.send(json.dumps({"t": "chat", "ref": ref, "body": post.body},
                                         ensure_ascii=False))
            except ConnectionClosed:
                post.outcome = "offline"

    # -- what it saw ------------------------------------------------------------------------

    def duplicates(self) -> list[tuple[int, int, int]]:
        """(connection index, chat id, times) for each id received more than once in one
        connection's batch frames."""
        found = []
        for i, conn in enumerate(self.connections):
            for mid, times in Counter(conn.batch_ids).items():
                if times > 1:
                    found.append((i, mid, times))
        return found


# --- a room full of clients, and the checks of issue 13 ------------------------------------------


def _ranges(ids: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` → ``3–5, 9`` (at most a few ranges)."""
    out: list[str] = []
    ordered = sorted(ids)
    start = prev = ordered[0] if ordered else 0
    for mid in [*ordered[1:], None]:
        if mid is not None and mid == prev + 1:
            prev = mid
            continue
        out.append(f"{start}–{prev}" if start != prev else str(start))
        if mid is not None:
            start = prev = mid
    return ", ".join(out[:6]) + (" …" if len(out) > 6 else "")


class Crowd:
    """Listeners and posters in one room, spread over the servers (round robin)."""

    def __init__(self, clients: list[LiveClient], origin: float | None = None) -> None:
        self.clients = clients
        self.origin = origin if origin is not None else time.monotonic()
        self.fault_end = float("inf")  # set by a test once the fault is over
        self.probes: list[JoinAttempt] = []

    @classmethod
    def gather(cls, db: Database, world: World, servers: Sequence[ServerProcess], *,
               room: str, listeners: int, posters: int, post_every: float = 0.2) -> Crowd:
        """``listeners`` attendees and ``posters`` moderators (a moderator's token bucket,
        20 and 5/s, takes a post every 0.2 s; an attendee's, 5 and 1/s, would not)."""
        clients = []
        for i, uid in enumerate(add_people(db, world, listeners)):
            clients.append(LiveClient(
                f"l{i}", servers, home=i % len(servers), room=room,
                token=lambda uid=uid: world.token(uid, name="听*")))  # type: ignore[misc]
        for i, uid in enumerate(add_people(db, world, posters, role=Role.REVIEWER)):
            clients.append(LiveClient(
                f"p{i}", servers, home=(i + 1) % len(servers), room=room, post_every=post_every,
                token=lambda uid=uid: world.token(uid, role="moderator", name="主*")))  # type: ignore[misc]
        return cls(clients)

    @property
    def posters(self) -> list[LiveClient]:
        return [c for c in self.clients if c.post_every is not None]

    def start(self) -> None:
        for client in self.clients:
            client.start()

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.clients))

    def posting(self, on: bool) -> None:
        for client in self.posters:
            client.posting = on

    def t(self, at: float) -> str:
        return f"{at - self.origin:+.1f} s"

    async def wait_joined(self, timeout: float) -> list[str]:
        """Until every client is in the room; the problems at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.joined for c in self.clients):
                return []
            await asyncio.sleep(0.1)
        out = [c.name for c in self.clients if not c.joined]
        return [f"{len(out)} of {len(self.clients)} clients not in the room after "
                f"{timeout:.0f} s: {', '.join(out[:10])}"] if out else []

    async def settle(self, timeout: float = 5.0) -> None:
        """Until every sent post has an answer, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.outcome is not None for c in self.posters for p in c.posts.values()):
                return
            await asyncio.sleep(0.1)

    def posts(self) -> list[Post]:
        return [p for c in self.posters for p in c.posts.values()]

    def acknowledged(self) -> dict[int, Post]:
        """Shown posts the server acknowledged, by message id."""
        return {p.id: p for p in self.posts()
                if p.outcome == "ack" and p.id is not None and p.status == "visible"}

    def missing(self) -> dict[str, set[int]]:
        """For each client, acknowledged ids not in its model: every one acknowledged after
        it first joined (a ``welcome`` holds only the last 50 messages, so older ones are
        not owed to a client that joined late)."""
        acked = self.acknowledged()
        out = {}
        for c in self.clients:
            since = c.first_joined if c.first_joined is not None else -float("inf")
            owed = {mid for mid, p in acked.items() if (p.answered or 0) >= since}
            out[c.name] = owed - c.model.keys()
        return out

    async def wait_delivered(self, deadline: float) -> list[str]:
        """Until every client is in the room with every acknowledged post in its model, or
        ``deadline``; the problems then."""
        while True:
            missing = self.missing()
            if all(c.joined for c in self.clients) and not any(missing.values()):
                return []
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        problems = []
        out = [c.name for c in self.clients if not c.joined]
        if out:
            problems.append(f"{len(out)} of {len(self.clients)} clients not connected at the "
                            f"deadline: {', '.join(out[:10])}")
        acked = self.acknowledged()
        lacking = {name: ids for name, ids in missing.items() if ids}
        if lacking:
            every = set.union(*lacking.values())
            nobody = set.intersection(*missing.values()) if len(lacking) == len(missing) \
                else set()
            when = sorted(acked[i].answered or 0 for i in every)
            after = sum(1 for i in every if (acked[i].answered or 0) > self.fault_end)
            problems.append(
                f"{len(lacking)} of {len(self.clients)} clients miss acknowledged posts at "
                f"the deadline: {len(every)} of {len(acked)} acknowledged posts missing "
                f"somewhere ({len(nobody)} reached no client), acknowledged between "
                f"{self.t(when[0])} and {self.t(when[-1])} ({after} after the fault "
                f"ended at {self.t(self.fault_end)}); ids {_ranges(sorted(every))}; "
                f"worst client {max(lacking, key=lambda n: len(lacking[n]))} misses "
                f"{max(len(v) for v in lacking.values())}")
        return problems

    def duplicate_problems(self) -> list[str]:
        found = [(c.name, *d) for c in self.clients for d in c.duplicates()]
        if not found:
            return []
        sample = "; ".join(f"{name} connection {i}: id {mid} ×{times}"
                           for name, i, mid, times in found[:5])
        return [f"{len(found)} chat ids received twice within one connection: {sample}"]

    def join_problems(self, *, since: float, fault_end: float) -> list[str]:
        """Joins tried from ``since`` on (clients' reconnections and probes): each must be
        answered within :data:`BOUND` s, or succeed within :data:`BOUND` s of the fault's end.
        A refused connection (the server is down) is the load balancer's to route: skipped."""
        late = []
        now = time.monotonic()
        attempts = [a for c in self.clients for a in c.joins] + self.probes
        for a in attempts:
            if a.sent < since or a.outcome.startswith("refused"):
                continue
            if a.outcome == "pending" and (now - a.sent <= BOUND or now <= fault_end + BOUND):
                continue  # still within its bound
            if a.answered is not None and (
                    a.answered - a.sent <= BOUND
                    or (a.outcome == "welcome" and a.answered <= fault_end + BOUND)):
                continue
            late.append(a.describe(self.origin))
        if not late:
            return []
        return [f"{len(late)} joins not answered in time: " + "; ".join(late[:6])]

    async def probe(self, server: ServerProcess, token: str, room: str,
                    wait: float = JOIN_GIVE_UP) -> JoinAttempt:
        """One join (connect, ``join``, the first answer), kept for :meth:`join_problems`."""
        attempt = JoinAttempt(f"probe-{room}", server.name, room, time.monotonic())
        self.probes.append(attempt)
        try:
            ws = await connect(server.ws_url, open_timeout=10, close_timeout=2)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            attempt.answered = time.monotonic()
            attempt.outcome = f"refused:{type(exc).__name__}"
            return attempt
        try:
            await ws.send(json.dumps({"t": "join", "token": token, "room": room}))
            attempt.sent = time.monotonic()
            raw = await asyncio.wait_for(ws.recv(), wait)
            attempt.answered = time.monotonic()
            frame = json.loads(raw)
            attempt.outcome = ("welcome" if frame.get("t") == "welcome"
                               else f"error:{frame.get('code')}")
        except TimeoutError:
            attempt.outcome, attempt.gave_up = "no_answer", time.monotonic()
        except ConnectionClosed:
            attempt.answered = time.monotonic()
            attempt.outcome = f"close:{ws.close_code}"
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
        return attempt

    def summary(self) -> str:
        """What happened, in a few lines (for a failure's message)."""
        posts = self.posts()
        kinds = Counter("no answer" if p.outcome is None else p.outcome.split(":")[0]
                        for p in posts)
        errors = Counter(p.outcome for p in posts if p.outcome and p.outcome.startswith("error"))
        reconnects = sum(max(0, len(c.connections) - 1) for c in self.clients)
        probes = "; ".join(a.describe(self.origin) for a in self.probes)
        return (f"posts: {len(posts)} sent, {kinds.get('ack', 0)} acknowledged, "
                f"{dict(errors) or 'no errors'}, {kinds.get('no answer', 0)} unanswered, "
                f"{kinds.get('offline', 0)} not sent (connection gone); "
                f"{len(self.clients)} clients, {reconnects} reconnections; "
                f"probes: {probes or 'none'}")
