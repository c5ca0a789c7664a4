"""The room hubs (summit/hub.py): coalescing, idempotent state, moderators' extras, slow
clients dropped (4009) while the others still receive, presence across processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from shanju.core.db import Database
from shanju.summit import protocol
from shanju.summit.broker import MemoryBroker
from shanju.summit.hub import QUEUE_FRAMES, Conn, LiveHubs, Room, SummitState
from shanju.summit.live_service import RoomRef, RoomSnapshot
from shanju.summit.tokens import LiveIdentity
from tests.summit.live_support import Client, join, make_world, serve

KEY = "s1"


def snapshot(**overrides: Any) -> RoomSnapshot:
    data: dict[str, Any] = {
        "ref": RoomRef(KEY, "stage", 1, 1), "title": "主论坛", "video_url": None,
        "capacity": None, "settings": {"paused": False, "slow": 0, "premoderated": False},
        "chat": [], "held": [], "questions": [], "polls": [], "rooms": [], "bans": set(),
        "mutes": {}, "question_votes": {}, "poll_votes": {},
    }
    data.update(overrides)
    return RoomSnapshot(**data)


def make_room(**overrides: Any) -> tuple[LiveHubs, Room]:
    hubs = LiveHubs(db=None, broker=MemoryBroker(), tick_ms=250)  # type: ignore[arg-type]
    room = Room(hubs, snapshot(**overrides))
    hubs.rooms[KEY] = room
    hubs.summits[1] = SummitState(1)
    hubs.summits[1].rooms.add(KEY)
    return hubs, room


class FakeSocket:
    """What a connection writes to: records frames; ``stuck`` never returns from a send."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None
        self.stuck = stuck
        self.never = asyncio.Event()

    async def send(self, frame: str) -> None:
        if self.stuck:
            await self.never.wait()
        self.sent.append(frame)

    async def close(self, code: int) -> None:
        if self.stuck:
            await self.never.wait()
        self.closed = code


def identity(user: int, role: str = "attendee") -> LiveIdentity:
    return LiveIdentity(user_id=user, summit_id=1, role=role, name="张*",  # type: ignore[arg-type]
                        organization_id=None, expires=2**31)


def question(qid: int, upvotes: int, status: str = "approved") -> dict[str, Any]:
    return {"id": qid, "name": "张*", "body": "问", "status": status, "upvotes": upvotes,
            "voted": None, "at": "2026-11-29T00:00:00Z"}


def chat(mid: int) -> dict[str, Any]:
    return {"k": "chat", "m": {"id": mid, "user": 1, "name": "张*", "body": f"#{mid}",
                               "at": "2026-11-29T00:00:00Z"}}


def test_many_updates_within_a_tick_are_one_batch_with_the_latest_state() -> None:
    async def run() -> None:
        hubs, room = make_room(questions=[question(3, 0)])
        sockets = [FakeSocket() for _ in range(3)]
        conns = [Conn(identity(10 + i), s.send, s.close) for i, s in enumerate(sockets)]
        for conn in conns:
            hubs.join(room, conn)
        counts = list(range(1, 41))
        counts.reverse()  # arrival order does not matter: counters only grow
        for n in counts[::2] + counts[1::2]:
            room.apply_message({"e": [{"k": "question", "q": question(3, n)}]})
        for mid in (7, 8, 9):
            room.apply_message({"e": [chat(mid)]})
        room.apply_message({"e": [chat(8)]})  # a duplicate changes nothing
        assert room.flush() == 3
        await asyncio.sleep(0.01)
        assert all(len(s.sent) == 1 for s in sockets)
        frame = json.loads(sockets[0].sent[0])
        questions = [e for e in frame["events"] if e["k"] == "question"]
        assert [q["q"]["upvotes"] for q in questions] == [40]
        assert [e["m"]["id"] for e in frame["events"] if e["k"] == "chat"] == [7, 8, 9]
        # Encoded once: every connection got the very same string.
        assert len({id(s.sent[0]) for s in sockets}) == 1
        # Nothing new: no frame.
        room.apply_message({"e": [{"k": "question", "q": question(3, 12)}]})
        assert room.flush() == 0
        for conn in conns:
            conn.drop(1000, send_close=False)

    asyncio.run(run())


def test_statuses_only_move_forward_and_moderators_get_their_extras() -> None:
    async def run() -> None:
        hubs, room = make_room()
        attendee, moderator = FakeSocket(), FakeSocket()
        hubs.join(room, Conn(identity(1), attendee.send, attendee.close))
        hubs.join(room, Conn(identity(2, "moderator"), moderator.send, moderator.close))
        room.apply_message({"m": [{"k": "pending", "q": question(5, 0, "pending")}]})
        room.flush()
        await asyncio.sleep(0.01)
        assert attendee.sent == []
        assert json.loads(moderator.sent[0])["events"][0]["k"] == "pending"
        room.apply_message({"e": [{"k": "question", "q": question(5, 0, "answering")}]})
        room.apply_message({"e": [{"k": "question", "q": question(5, 2, "approved")}]})  # late
        room.apply_message({"m": [{"k": "pending", "q": question(5, 0, "pending")}]})  # late
        room.flush()
        await asyncio.sleep(0.01)
        (event,) = json.loads(attendee.sent[0])["events"]
        assert (event["q"]["status"], event["q"]["upvotes"]) == ("answering", 2)
        assert json.loads(moderator.sent[1]) == json.loads(attendee.sent[0])
        # A removed message does not come back with a late copy.
        room.apply_message({"e": [chat(4)]})
        room.apply_message({"e": [{"k": "chat_removed", "id": 4}]})
        room.apply_message({"e": [chat(4)]})
        room.flush()
        assert list(room.chat) == []
        welcome = json.loads(room.welcome(next(iter(room.conns))))
        assert welcome["state"]["count"] == 2

    asyncio.run(run())


def test_a_client_that_does_not_read_is_dropped_and_the_others_still_receive() -> None:
    async def run() -> None:
        hubs, room = make_room()
        slow, fast = FakeSocket(stuck=True), FakeSocket()
        slow_conn = Conn(identity(1), slow.send, slow.close)
        fast_conn = Conn(identity(2), fast.send, fast.close)
        hubs.join(room, slow_conn)
        hubs.join(room, fast_conn)
        ticks = QUEUE_FRAMES + 5
        for mid in range(1, ticks + 1):
            room.apply_message({"e": [chat(mid)]})
            room.flush()
            await asyncio.sleep(0)  # the writers run between ticks
        assert slow_conn.closing == protocol.CLOSE_TOO_SLOW
        assert slow_conn not in room.conns
        await asyncio.sleep(0.01)
        assert len(fast.sent) == ticks and fast_conn.closing is None
        assert slow_conn.writer_task is not None and slow_conn.writer_task.cancelled()
        fast_conn.drop(1000, send_close=False)
        for task in hubs._closers:  # noqa: SLF001 - the stuck close is abandoned
            task.cancel()

    asyncio.run(run())


def test_presence_from_other_processes_is_summed_while_fresh() -> None:
    hubs, room = make_room()
    state = hubs.summits[1]
    now = time.monotonic()
    state.presence["other-1"] = (now, {KEY: 100, "r9": 4})
    state.presence["other-2"] = (now - 10, {KEY: 50})  # stale
    state.presence[hubs.pid] = (now, {KEY: 999})  # our own report: ignored
    assert hubs.count(KEY, now) == 100
    assert hubs.count("r9", now) == 4
    room.refresh_counts(now)
    assert room.pending[("count", 0)] == {"k": "count", "n": 100}


def test_a_slow_real_client_gets_4009(tmp_path: Path, sqlite_template: Path) -> None:
    """Over real sockets: a client that stops reading is closed with 4009 once it reads
    again; a reading client in the same room keeps receiving."""
    path = tmp_path / "hub.sqlite3"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    world = make_world(database)
    with serve(database, tmp_path, tick_ms=10) as server:
        async def run() -> None:
            reader = await join(server, world.token(world.attendee_a), world.stage)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", int(server.base.rsplit(":", 1)[1])))
            # max_queue=1: the client library stops reading the socket once one frame waits.
            slow_ws = await connect(server.url, sock=sock, max_queue=1)
            slow = Client(slow_ws)
            await slow.send(t="join", token=world.token(world.attendee_b), room=world.stage)
            hubs = server.hubs()
            # Random text: the connection is compressed (permessage-deflate).
            rng = random.Random(5)
            bodies = ["".join(chr(0x4E00 + rng.randrange(20_000)) for _ in range(500))
                      for _ in range(300)]
            ids = itertools.count(1_000_000)

            def flood() -> None:
                room = hubs.rooms[world.stage]
                for body in bodies:
                    room.apply_message({"e": [{"k": "chat", "m": {
                        "id": next(ids), "user": 1, "name": "张*", "body": body,
                        "at": "2026-11-29T00:00:00Z"}}]})

            def conns() -> int:
                return len(hubs.rooms[world.stage].conns)

            deadline = time.monotonic() + 10
            while server.call(conns) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 30
            while server.call(conns) == 2 and time.monotonic() < deadline:
                server.call(flood)
                await reader.drain(0.02)
                reader.frames.clear()
            assert server.call(conns) == 1
            # It reads again: what was sent, then the close code.
            slow_closed = asyncio.create_task(slow.closed(timeout=30))
            # The reading client is still there and receives.
            reader.frames.clear()
            server.call(flood)
            await reader.event(lambda e: e["k"] == "chat")
            assert await slow_closed == protocol.CLOSE_TOO_SLOW
            await reader.ws.close()

        asyncio.run(run())
    database.dispose()


def test_the_clock_can_pace_the_cycle_collector() -> None:
    import gc  # noqa: PLC0415

    from shanju.summit.hub import GC_FULL_SECONDS, GcPacer  # noqa: PLC0415

    pacer = GcPacer()
    pacer.step(time.monotonic())  # off: nothing happens
    assert gc.isenabled()
    pacer.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        pacer.step(pacer.last_full + GC_FULL_SECONDS)  # a full pass is due
        assert gc.get_count()[2] == 0
    finally:
        pacer.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
