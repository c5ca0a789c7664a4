"""Who may stay in the live rooms: one process's revocation sweep and join check.

A live token is checked by its signature alone (``tokens.py``). What a signature cannot know
— that its browser session was signed out or has expired, that the account was deactivated,
that a moderator is no longer one of the summit's organizers — each process learns from the
database every ``summit_live_sweep_seconds`` (2 s), in a few queries whatever the number of
connections:

- **The sweep** reads, for every browser session behind this process's connections, whether
  it still signs its user in and the user's current role (``accounts.signed_in_sessions``, in
  chunks of :data:`CHUNK` ids), and the host organization of their summits. A connection whose
  session no longer signs in is sent ``session_ended`` and closed with **4011**; a moderator
  who no longer organizes the summit loses the moderator's rights at once and is closed with
  **4012** ``role_changed`` (the page fetches a new token and comes back as what they are now,
  with the name that goes with it); a connection whose token has less than half of its life
  left is sent a renewed one (``{"t":"token"}``), so an open connection outlives its first
  token only while its session lasts. A connection whose token has expired anyway (the
  sweep could not reach the database) is closed with 4001 ``token_expired``.
- **A join** costs no query when its session was checked within the last two sweeps (a
  reconnect, or a second tab); a session not checked lately is checked together with every
  other join of the same moment (one query per batch, one batch at a time), so a storm of
  3,000 joins is a handful of queries, not 3,000. A join is thus refused at most two sweeps
  after its session ended.
- **Being in a live room is using the site**: sessions are subject to the idle timeouts of
  ADR 0022 (30 minutes for staff), and a moderator may run the console for hours without
  loading a page. So every session the sweep finds still signed in has its activity recorded
  (``accounts.do_touch_sessions``), at most once a minute per session, in one short write
  transaction per sweep — best effort: a busy database skips it, and the session is then
  checked against its idle timeout like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import structlog
from sqlalchemy.exc import SQLAlchemyError

from shanju.accounts.service import (
    DEFAULT_IDLE,
    IdleTimeouts,
    SignedIn,
    do_touch_sessions,
    signed_in_sessions,
)
from shanju.core.db import Database
from shanju.summit import protocol, tokens
from shanju.summit.access import organizes, summit_hosts

if TYPE_CHECKING:
    from shanju.summit.hub import Conn

log = structlog.get_logger(__name__)

TOUCH_SECONDS = 60.0  # record a connected session's activity at most this often
CHUNK = 1000  # ids per query (SQLite allows 32,766 parameters; PostgreSQL 65,535)
GATHER_SECONDS = 0.01  # a join check waits this long for the other joins of the moment

SESSION_ENDED = "session_ended"
ROLE_CHANGED = "role_changed"
TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an error code
MESSAGES = {
    SESSION_ENDED: "your sign-in has ended; sign in again to join the live rooms",
    ROLE_CHANGED: "your role at this summit has changed; join again",
    TOKEN_EXPIRED: "the live token has expired",
}
CLOSE_CODES = {
    SESSION_ENDED: protocol.CLOSE_SESSION_ENDED,
    ROLE_CHANGED: protocol.CLOSE_ROLE_CHANGED,
    TOKEN_EXPIRED: protocol.CLOSE_BAD_TOKEN,
}


@dataclass
class Checked:
    """What the database said at one moment (``at``: monotonic seconds)."""

    at: float
    sessions: dict[int, SignedIn] = field(default_factory=dict)
    hosts: dict[int, int | None] = field(default_factory=dict)


class LiveAuth:
    """The revocation sweep and join check of one process's live hubs."""

    def __init__(self, db: Database, *, secret: str, token_seconds: int,
                 sweep_seconds: float, idle: IdleTimeouts = DEFAULT_IDLE) -> None:
        self.db = db
        self.idle = idle
        # Session id -> when this process last recorded its activity (monotonic).
        self.touched: dict[int, float] = {}
        self.secret = secret
        self.token_seconds = token_seconds
        self.sweep_seconds = sweep_seconds
        self.fresh_seconds = 2 * sweep_seconds
        # Session id -> (checked at, its state or None: it no longer signs in).
        self.sessions: dict[int, tuple[float, SignedIn | None]] = {}
        # Summit id -> (checked at, host organization id).
        self.hosts: dict[int, tuple[float, int | None]] = {}
        self.limiter: anyio.CapacityLimiter | None = None
        self._want_sessions: set[int] = set()
        self._want_summits: set[int] = set()
        self._batch: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"sweeps": 0, "join_checks": 0, "revoked": 0, "downgraded": 0,
                      "renewed": 0, "failed": 0}

    # -- the database ---------------------------------------------------------------------

    def _load(self, session_ids: set[int], summit_ids: set[int]) -> Checked:
        checked = Checked(at=time.monotonic())
        with self.db.transaction(write=False) as session:
            ids = sorted(session_ids)
            for start in range(0, len(ids), CHUNK):
                checked.sessions.update(signed_in_sessions(
                    session=session, session_ids=ids[start:start + CHUNK], idle=self.idle))
            checked.hosts = summit_hosts(session, summit_ids)
        self._touch(checked)
        return checked

    def _touch(self, checked: Checked) -> None:
        """Record activity on the still signed-in sessions not touched in the last minute."""
        due = sorted(sid for sid in checked.sessions
                     if self.touched.get(sid, -TOUCH_SECONDS) <= checked.at - TOUCH_SECONDS)
        if not due:
            return
        try:
            with self.db.transaction(write=True) as session:
                for start in range(0, len(due), CHUNK):
                    do_touch_sessions(session=session, session_ids=due[start:start + CHUNK])
        except (SQLAlchemyError, TimeoutError) as exc:
            log.warning("summit.live_auth.touch_failed", sessions=len(due), error=str(exc))
            return
        for sid in due:
            self.touched[sid] = checked.at

    async def _check(self, session_ids: set[int], summit_ids: set[int]) -> None:
        checked = await anyio.to_thread.run_sync(self._load, session_ids, summit_ids,
                                                 limiter=self.limiter)
        for sid in session_ids:
            self.sessions[sid] = (checked.at, checked.sessions.get(sid))
        for summit_id in summit_ids:
            self.hosts[summit_id] = (checked.at, checked.hosts.get(summit_id))

    # -- joins ----------------------------------------------------------------------------

    async def admit(self, identity: tokens.LiveIdentity) -> str | None:
        """None if the token's person may join now, else why not (``session_ended``,
        ``role_changed``). Raises if the database cannot be asked."""
        stale = time.monotonic() - self.fresh_seconds
        known = self.sessions.get(identity.session_id)
        host = self.hosts.get(identity.summit_id)
        if known is None or known[0] < stale or host is None or host[0] < stale:
            await self._batched(identity.session_id, identity.summit_id)
        return self.problem(identity)

    async def _batched(self, session_id: int, summit_id: int) -> None:
        self._want_sessions.add(session_id)
        self._want_summits.add(summit_id)
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            task = loop.create_task(self._run_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(batch)

    async def _run_batch(self, batch: asyncio.Future[None]) -> None:
        # One batch at a time: the joins that come while one is read wait for the next.
        async with self._lock:
            await asyncio.sleep(GATHER_SECONDS)
            sessions, summits = self._want_sessions, self._want_summits
            self._want_sessions, self._want_summits = set(), set()
            if self._batch is batch:
                self._batch = None
            self.stats["join_checks"] += 1
            try:
                await self._check(sessions, summits)
            except asyncio.CancelledError:
                batch.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - each join answers server_busy
                self.stats["failed"] += 1
                if not batch.done():
                    batch.set_exception(exc)
                    batch.exception()  # marked retrieved: a join may have gone meanwhile
                return
            if not batch.done():
                batch.set_result(None)

    def stop(self) -> None:
        """Cancel the join checks in flight."""
        for task in list(self._tasks):
            task.cancel()

    def problem(self, identity: tokens.LiveIdentity) -> str | None:
        """Why this identity may not be in the live rooms by what was last read, or None."""
        known = self.sessions.get(identity.session_id)
        state = None if known is None else known[1]
        if state is None or state.user_id != identity.user_id:
            return SESSION_ENDED
        if identity.is_moderator:
            host = self.hosts.get(identity.summit_id)
            if host is None or not organizes(state.role, state.organization_id, host[1]):
                return ROLE_CHANGED
        return None

    # -- the sweep ------------------------------------------------------------------------

    async def run(self, connections: Callable[[], Iterable[Conn]]) -> None:
        """Sweep every ``sweep_seconds`` until cancelled; ``connections()`` lists the
        process's connections."""
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep(list(connections()))
            except Exception:  # noqa: BLE001 - the sweep must keep running
                log.exception("summit.live_auth.sweep_failed")

    async def sweep(self, conns: list[Conn]) -> None:
        """Check the sessions behind ``conns`` and act on what changed (see the module)."""
        conns = [c for c in conns if c.closing is None]
        self.stats["sweeps"] += 1
        checked = True
        if conns:
            try:
                await self._check({c.identity.session_id for c in conns},
                                  {c.identity.summit_id for c in conns})
            except Exception as exc:  # noqa: BLE001 - judged again at the next sweep
                checked = False
                self.stats["failed"] += 1
                log.warning("summit.live_auth.check_failed", error=repr(exc))
        now = tokens.now()
        for conn in conns:
            if conn.closing is not None:
                continue
            if checked:
                problem = self.problem(conn.identity)
                if problem is not None:
                    self.refuse(conn, problem)
                    continue
                if conn.identity.expires - now < self.token_seconds / 2:
                    self.renew(conn, now)
            if conn.identity.expires < now:
                self.refuse(conn, TOKEN_EXPIRED)
        self._forget(time.monotonic() - self.fresh_seconds)

    def refuse(self, conn: Conn, problem: str) -> None:
        """Close a connection that may no longer be in its room (``problem``'s close code)."""
        if problem == ROLE_CHANGED:
            conn.demote()  # at once: no moderator's frame passes from now on
            self.stats["downgraded"] += 1
        elif problem == SESSION_ENDED:
            self.stats["revoked"] += 1
        conn.offer(protocol.error(problem, MESSAGES[problem]))
        conn.drop(CLOSE_CODES[problem])

    def renew(self, conn: Conn, now: float) -> None:
        token, identity = tokens.renew(self.secret, conn.identity, ttl=self.token_seconds,
                                       at=now)
        conn.identity = identity
        self.stats["renewed"] += 1
        conn.offer(protocol.encode({"t": "token", "token": token, "expires": identity.expires,
                                    "ttl": self.token_seconds}))

    def _forget(self, stale: float) -> None:
        for cache in (self.sessions, self.hosts):
            for key in [k for k, (at, _v) in cache.items() if at < stale]:
                del cache[key]
        for key in [k for k, at in self.touched.items() if at < stale - TOUCH_SECONDS]:
            del self.touched[key]

