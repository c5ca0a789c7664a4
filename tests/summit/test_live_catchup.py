"""No acknowledged message is lost (issue 13): numbered changes, local delivery, catch-up.

Every stored live change gets its channel's next sequence number in the transaction that
stores it (``live_service.stamp``). A process shows its own changes without the broker, and
one that misses a broker message (publish failed, broker away, reconnect) sees the stored
number ahead of what it applied and reloads the room from the database. The in-process
tests here run two hubs on one database with *separate* memory brokers: nothing crosses
between them but the database, the worst a broker can do.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shanju.core.db import Database
from shanju.summit import hub as hub_module
from shanju.summit import live_service as live
from shanju.summit import protocol
from shanju.summit.broker import BrokerUnavailable, MemoryBroker
from shanju.summit.hub import Conn, LiveHubs
from shanju.summit.live_service import Outcome
from shanju.summit.models import SummitLiveSeq
from tests.summit.live_support import make_world
from tests.summit.test_hub import FakeSocket, chat, identity, make_room, question, snapshot
from tests.summit.test_live_writer import Harness, go, ref

# --- numbers, in one room (no database) ------------------------------------------------------


def test_a_numbered_message_is_applied_once_and_a_hole_is_seen() -> None:
    _hubs, room = make_room(seq=4)
    assert room.receive({"s": 5, "e": [chat(1)]}) is True
    assert room.receive({"s": 5, "e": [chat(1)]}) is False  # its own, back from the broker
    assert room.receive({"s": 3, "e": [chat(9)]}) is False  # covered by the snapshot
    assert 9 not in room.chat
    assert room.receive({"s": 7, "e": [chat(3)]}) is True  # 6 is missing
    assert (room.seq, room.ahead) == (5, {7})
    # Behind the stored number: at the first check it may be in flight; at the second not.
    assert room.behind(7, waiting=True) is False
    assert room.behind(7, waiting=True) is True
    # With the broker away nothing can arrive: at once.
    assert room.behind(7, waiting=False) is True
    assert room.receive({"s": 6, "e": [chat(2)]}) is True
    assert (room.seq, room.ahead) == (7, set())
    assert room.behind(7, waiting=True) is False
    assert list(room.chat) == [1, 3, 2]


def test_an_older_settings_change_never_undoes_a_newer_one() -> None:
    _hubs, room = make_room()
    room.receive({"s": 2, "e": [{"k": "settings", "paused": False}]})  # resumed
    room.receive({"s": 1, "e": [{"k": "settings", "paused": True}]})  # paused, arriving late
    assert room.settings["paused"] is False


def test_a_reload_catches_up_and_takes_back_what_was_removed_meanwhile() -> None:
    async def main() -> None:
        hubs, room = make_room(seq=2, chat=[chat(1)["m"], chat(2)["m"]],
                               questions=[question(5, 1), question(6, 0)])
        socket = FakeSocket()
        conn = Conn(identity(10), socket.send, socket.close)
        hubs.join(room, conn)
        # Applied at 9, after the snapshot below was read: a reload must not take it back.
        room.receive({"s": 9, "e": [chat(8)]})
        room.flush()
        stored = snapshot(
            seq=5,  # 3..5 were missed: message 2 deleted, question 6 rejected, 3 posted, paused
            chat=[chat(1)["m"], chat(3)["m"]], questions=[question(5, 4)],
            settings={"paused": True, "slow": 0, "premoderated": False})
        room.reconcile(stored)
        assert list(room.chat) == [1, 8, 3]
        assert room.questions[5]["upvotes"] == 4 and room.questions[6]["status"] == "rejected"
        assert room.settings["paused"] is True
        assert (room.seq, room.ahead) == (5, {9})
        events = [(e["k"], e.get("id") or (e.get("m") or e.get("q") or {}).get("id"))
                  for e in room.pending.values()]
        assert ("chat_removed", 2) in events and ("chat", 3) in events
        assert ("question", 5) in events
        assert not any(k == "chat" and i in (1, 8) for k, i in events)  # nothing twice
        room.flush()
        await asyncio.sleep(0.01)
        frames = [f for f in socket.sent if '"t":"batch"' in f]
        assert frames and frames[-1].startswith('{"t":"batch","seq":5,')
        conn.drop(1000, send_close=False)

    asyncio.run(main())


# --- the writer numbers what it stores ------------------------------------------------------


def test_each_transaction_numbers_the_channels_it_touched(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)

    def post(body: str) -> tuple[Any, dict[str, Any]]:
        return (live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*",
                                 "body": body})

    async def main() -> Harness:
        h = Harness(db)
        h.writer.start()
        try:
            await h.batch([post("一"), post("二")])  # one transaction: one number
            await h.writer.submit(*post("三"))  # another
        finally:
            await h.writer.stop()
        return h

    h = go(main())
    numbers = [msg["s"] for key, msg in h.published if key == w.stage]
    with db.transaction(write=False) as s:
        stored = s.scalar(select(SummitLiveSeq.seq).where(SummitLiveSeq.channel == w.stage))
        snap = live.snapshot(s, w.stage)
    assert numbers[-2:] == [numbers[-2], numbers[-2] + 1] and stored == numbers[-1]
    assert snap is not None and snap.seq == stored


def test_a_single_action_is_retried_after_a_database_error(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    attempts: list[int] = []

    def flaky(session: Session, **kwargs: Any) -> Outcome:
        attempts.append(1)
        if len(attempts) == 1:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return live.post_chat(session, **kwargs)

    async def main() -> tuple[Harness, Outcome]:
        h = Harness(db)
        h.writer.start()
        try:
            out = await h.writer.submit(flaky, {"room": room, "user_id": w.attendee_a,
                                                "name": "张*", "body": "再试一次"})
        finally:
            await h.writer.stop()
        return h, out

    h, out = go(main())
    assert len(attempts) == 2 and h.writer.stats["fallbacks"] == 1
    assert out.ack["id"] > 0 and [m for _, m in h.published if m.get("e")]


# --- two processes that share nothing but the database --------------------------------------


class DeadBroker(MemoryBroker):
    """A broker whose every publish fails (as during an outage), still 'running'."""

    @property
    def connected(self) -> bool:
        return False

    async def _publish(self, channel: str, message: str) -> None:
        raise BrokerUnavailable("the broker is away")


async def until(check: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_the_database_carries_what_the_broker_lost(db: Database,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    w = make_world(db)

    async def main() -> None:
        a = LiveHubs(db=db, broker=DeadBroker(), tick_ms=50)
        b = LiveHubs(db=db, broker=MemoryBroker(), tick_ms=50)  # hears nothing from a
        await a.start()
        await b.start()
        try:
            room_a = await a.open_room(w.stage)
            room_b = await b.open_room(w.stage)
            assert room_a is not None and room_b is not None
            ref_ = room_a.ref
            posted = await a.writer.submit(live.post_chat, {
                "room": ref_, "user_id": w.attendee_a, "name": "张*", "body": "广播断了"})
            mid = posted.ack["id"]
            # Its own process shows it at once: applied before the answer.
            assert mid in room_a.chat and a.stats["publish_failed"] >= 1
            # The other finds the stored number ahead and reloads (the broker is up there,
            # so after two checks: within about two seconds).
            took = await until(lambda: mid in room_b.chat, 5)
            assert took < 4
            # Taken back meanwhile: deleted on a, gone on b too.
            await a.writer.submit(live.moderate, {
                "room": ref_, "actor_id": w.moderator,
                "frame": {"t": "mod", "action": "chat_delete", "message": mid}})
            await until(lambda: mid not in room_b.chat, 5)
            # A ban on a reaches b's summit state the same way.
            await a.writer.submit(live.moderate, {
                "room": ref_, "actor_id": w.moderator,
                "frame": {"t": "mod", "action": "ban", "user": w.attendee_b, "reason": "x"}})
            await until(lambda: w.attendee_b in b.summits[w.summit_id].bans, 5)
            assert b.stats["reloads"] >= 3
            assert room_b.seq == room_a.seq
        finally:
            await a.stop()
            await b.stop()

    with caplog.at_level(logging.WARNING):
        go(main())


def test_a_room_opens_and_works_while_the_broker_is_away(db: Database) -> None:
    w = make_world(db)

    async def main() -> None:
        hubs = LiveHubs(db=db, broker=DeadBroker(), tick_ms=50)
        await hubs.start()
        try:
            room = await asyncio.wait_for(hubs.open_room(w.stage), 5)
            assert room is not None
            socket = FakeSocket()
            conn = Conn(identity(w.attendee_a), socket.send, socket.close)
            conn.offer(room.welcome(conn))
            hubs.join(room, conn)
            out = await hubs.writer.submit(live.post_chat, {
                "room": room.ref, "user_id": w.attendee_a, "name": "张*", "body": "还在"})
            await until(lambda: any(f'"id":{out.ack["id"]}' in f for f in socket.sent), 5)
            assert '"seq":' in socket.sent[0]  # the welcome says how far the room is
            assert hubs.status()["broker"]["state"] == "up"  # a memory broker always is
            conn.drop(1000, send_close=False)
        finally:
            await hubs.stop()

    go(main())


def test_opening_a_room_is_bounded(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world(db)
    monkeypatch.setattr(hub_module, "OPEN_TIMEOUT", 0.3)

    async def main() -> None:
        hubs = LiveHubs(db=db, broker=MemoryBroker(), tick_ms=50)
        await hubs.start()
        loads = 0
        finished = threading.Event()

        def slow_load(key: str) -> Any:
            nonlocal loads
            loads += 1
            if loads == 1:
                try:
                    time.sleep(1.0)  # the database does not answer in time
                    return LiveHubs._load_snapshot(hubs, key)  # noqa: SLF001
                finally:
                    finished.set()
            return LiveHubs._load_snapshot(hubs, key)  # noqa: SLF001

        hubs._load_snapshot = slow_load  # type: ignore[method-assign]  # noqa: SLF001
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await hubs.open_room(w.stage)
            assert time.monotonic() - start < 0.9
            room = await hubs.open_room(w.stage)  # the next join tries again
            assert room is not None
        finally:
            # The abandoned load still runs in its thread: let it end before the database
            # is closed.
            await asyncio.to_thread(finished.wait, 5)
            await hubs.stop()

    go(main())


# --- slow clients -----------------------------------------------------------------------------


def test_a_stalled_send_drops_the_client_once_counted_and_logged(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(hub_module, "SEND_STALL_SECONDS", 0.05)

    async def main() -> None:
        hubs, room = make_room()
        hubs.loop = asyncio.get_running_loop()
        stuck = FakeSocket(stuck=True)
        conn = Conn(identity(1), stuck.send, stuck.close)
        hubs.join(room, conn)
        room.apply_message({"e": [chat(1)]})
        room.flush()
        await asyncio.sleep(0.1)  # the send is blocked (the socket's buffers are full)
        hubs._presence(time.monotonic())  # noqa: SLF001 - the clock's once-a-second work
        assert conn.closing == protocol.CLOSE_TOO_SLOW
        hubs._presence(time.monotonic())  # noqa: SLF001
        assert hubs.stats["dropped_slow"] == 1
        for task in list(hubs._closers) + list(hubs._tasks):  # noqa: SLF001
            task.cancel()

    asyncio.run(main())
    out = capsys.readouterr().out
    assert out.count("summit.hub.slow_client_dropped") == 1 and "send_stalled" in out
