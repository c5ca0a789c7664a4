"""Group commit of the live rooms (summit/writer.py), on SQLite and PostgreSQL.

Batches are formed deterministically: a first action that blocks in its transaction (on a
``threading.Event``) holds the writer while the others queue; released, the writer takes
everything queued in one batch. Transactions are counted by the writer's own counter, which
its worker thread bumps as it opens one: a test reads the counter only once the blocking
action has said (another event) that its thread is inside its transaction, so the blocker's
own transaction is never counted as one of the batch's, however late that thread starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.summit import live_service as live
from shanju.summit.live_service import Outcome, RoomRef
from shanju.summit.models import (
    SummitChatMessage,
    SummitPollVote,
    SummitQuestion,
    SummitQuestionVote,
)
from shanju.summit.writer import LiveWriter, WriterClosed, merge_messages
from tests.factories import make_user
from tests.summit.live_support import World, add_people, join, make_world, serve


def ref(db: Database, key: str) -> RoomRef:
    with db.transaction(write=False) as s:
        room = live.resolve_room(s, key)
    assert room is not None
    return room


def run(db: Database, fn: Any, **kwargs: Any) -> Outcome:
    with db.transaction() as s:
        out: Outcome = fn(s, **kwargs)
    return out


def blocker(session: Session, *, gate: threading.Event,
            entered: threading.Event | None = None) -> Outcome:
    del session
    if entered is not None:
        entered.set()  # inside the transaction, which the writer has counted already
    if not gate.wait(20):
        raise RuntimeError("the gate was never opened")
    return Outcome(ack={"blocked": True})


async def inside(entered: threading.Event) -> None:
    """Wait (off the event loop) until a blocker's thread is inside its transaction."""
    if not await asyncio.to_thread(entered.wait, 20):
        raise AssertionError("the writer never entered the blocking action")


class Harness:
    """A writer whose published messages are kept."""

    def __init__(self, db: Database, **kwargs: Any) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.writer = LiveWriter(db, self._publish, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()

    async def _publish(self, key: str, msg: dict[str, Any]) -> None:
        self.published.append((key, msg))

    async def hold(self) -> asyncio.Task[Outcome]:
        """Start a blocking action and wait until the writer's thread is inside it: its
        transaction open and counted, nothing queued behind it."""
        self.entered.clear()
        task = asyncio.ensure_future(self.writer.submit(
            blocker, {"gate": self.gate, "entered": self.entered}))
        await inside(self.entered)
        assert self.writer.queued == 0
        return task

    async def batch(self, calls: list[tuple[Any, dict[str, Any]]]) -> list[Any]:
        """Submit ``calls`` while the writer is held, then let them go as one batch."""
        held = await self.hold()
        before = dict(self.writer.stats)
        tasks = [asyncio.ensure_future(self.writer.submit(fn, kw)) for fn, kw in calls]
        while self.writer.queued < len(calls):
            await asyncio.sleep(0.005)
        self.published.clear()
        self.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert (await held).ack == {"blocked": True}
        self.gate.clear()
        self.delta = {k: self.writer.stats[k] - before[k] for k in before}
        return results


def asked_and_approved(db: Database, w: World, room: RoomRef) -> int:
    qid: int = run(db, live.ask_question, room=room, user_id=w.attendee_a, name="张*",
                   body="问题？").ack["id"]
    run(db, live.moderate, room=room, actor_id=w.moderator,
        frame={"t": "mod", "action": "q_approve", "question": qid})
    return qid


def open_poll(db: Database, w: World, room: RoomRef) -> tuple[int, list[int]]:
    made = run(db, live.moderate, room=room, actor_id=w.moderator,
               frame={"t": "mod", "action": "poll_create", "question": "选哪个？",
                      "options": ["甲", "乙"]})
    pid: int = made.ack["poll"]
    opened = run(db, live.moderate, room=room, actor_id=w.moderator,
                 frame={"t": "mod", "action": "poll_open", "poll": pid})
    options = [o["id"] for o in opened.messages[0][1]["e"][0]["p"]["options"]]
    return pid, options


def go(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro
    return asyncio.run(main())


def test_many_actions_of_many_people_commit_in_one_transaction(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    qid = asked_and_approved(db, w, room)
    pid, options = open_poll(db, w, room)
    with db.transaction() as s:
        people = [make_user(s).id for _ in range(30)]
    calls: list[tuple[Any, dict[str, Any]]] = []
    for i, user in enumerate(people):
        calls.append((live.post_chat, {"room": room, "user_id": user, "name": "某*",
                                       "body": f"第{i}条"}))
        calls.append((live.upvote, {"room": room, "user_id": user, "question_id": qid}))
        calls.append((live.vote, {"room": room, "user_id": user, "poll_id": pid,
                                  "option_id": options[i % 2]}))

    async def main() -> tuple[Harness, list[Any]]:
        h = Harness(db)
        h.writer.start()
        try:
            return h, await h.batch(calls)
        finally:
            await h.writer.stop()

    h, results = go(main())
    assert all(isinstance(r, Outcome) for r in results), results
    assert h.delta["transactions"] == 1 and h.delta["batches"] == 1
    assert h.writer.stats["largest"] == len(calls) == 90
    # Upvotes counted one by one, in order, inside the one transaction.
    assert [r.ack["upvotes"] for r in results[1::3]] == list(range(1, 31))
    # One broker message for the room: every event and vote of the batch, in order.
    assert [k for k, _ in h.published] == [w.stage]
    msg = h.published[0][1]
    assert [e["m"]["body"] for e in msg["e"] if e["k"] == "chat"] == [f"第{i}条"
                                                                     for i in range(30)]
    assert len(msg["v"]) == 60
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitChatMessage)) == 30
        assert s.get_one(SummitQuestion, qid).upvotes == 30
        assert s.scalar(select(func.count()).select_from(SummitPollVote)) == 30


def test_a_refused_action_in_a_batch_fails_alone(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    qid = asked_and_approved(db, w, room)
    pid, options = open_poll(db, w, room)
    calls: list[tuple[Any, dict[str, Any]]] = [
        (live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*", "body": "一"}),
        (live.upvote, {"room": room, "user_id": w.attendee_b, "question_id": qid}),
        # The same person again, in the same batch: the primary key refuses it.
        (live.upvote, {"room": room, "user_id": w.attendee_b, "question_id": qid}),
        (live.vote, {"room": room, "user_id": w.attendee_b, "poll_id": pid,
                     "option_id": options[0]}),
        (live.vote, {"room": room, "user_id": w.attendee_b, "poll_id": pid,
                     "option_id": options[1]}),
        (live.upvote, {"room": room, "user_id": w.attendee_a, "question_id": 999_999}),
        # A moderator's action, audited in the batch's transaction; then one refused.
        (live.moderate, {"room": room, "actor_id": w.moderator,
                         "frame": {"t": "mod", "action": "q_answering", "question": qid}}),
        (live.moderate, {"room": room, "actor_id": w.moderator,
                         "frame": {"t": "mod", "action": "q_approve", "question": qid}}),
        (live.upvote, {"room": room, "user_id": w.attendee_a, "question_id": qid}),
        (live.post_chat, {"room": room, "user_id": w.attendee_b, "name": "李*", "body": "二"}),
    ]

    async def main() -> tuple[Harness, list[Any]]:
        h = Harness(db)
        h.writer.start()
        try:
            return h, await h.batch(calls)
        finally:
            await h.writer.stop()

    h, results = go(main())
    assert h.delta["transactions"] == 1 and h.delta["fallbacks"] == 0
    answers = [r.code if isinstance(r, DomainError) else r.ack for r in results]
    assert answers[0]["status"] == "visible"
    assert answers[1] == {"question": qid, "upvotes": 1}
    assert answers[2] == "already_voted"
    assert answers[3] == {"poll": pid, "option": options[0]}
    assert answers[4] == "already_voted"
    assert answers[5] == "not_found"
    assert answers[6] == {"question": qid, "status": "answering"}
    assert answers[7] == "wrong_status"
    assert answers[8] == {"question": qid, "upvotes": 2}
    assert answers[9]["status"] == "visible"
    with db.transaction(write=False) as s:
        assert sorted(s.scalars(select(SummitChatMessage.body))) == ["一", "二"]
        q = s.get_one(SummitQuestion, qid)
        assert (q.upvotes, q.status.value) == (2, "answering")
        assert s.scalar(select(func.count()).select_from(SummitQuestionVote)) == 2
        assert s.scalar(select(func.count()).select_from(SummitPollVote)) == 1
        assert "summit.question.answering" in s.scalars(select(AuditEntry.action)).all()
    # Only what was stored is published.
    events = h.published[0][1]["e"]
    assert [e["k"] for e in events] == ["chat", "question", "poll", "question", "question",
                                        "chat"]


def test_a_failed_batch_is_retried_action_by_action(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    calls_seen: list[str] = []

    def flaky(session: Session, **kwargs: Any) -> Outcome:
        # The database fails the first time (a lock timeout, say): the whole batch.
        calls_seen.append("flaky")
        if calls_seen.count("flaky") == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return live.post_chat(session, **kwargs)

    def broken(session: Session, **kwargs: Any) -> Outcome:
        del session, kwargs
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    def chat(body: str) -> tuple[Any, dict[str, Any]]:
        return (live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*",
                                 "body": body})

    calls = [chat("一"), (flaky, {"room": room, "user_id": w.attendee_b, "name": "李*",
                                  "body": "二"}),
             chat("三"), (broken, {}), chat("四")]

    async def main() -> tuple[Harness, list[Any]]:
        h = Harness(db)
        h.writer.start()
        try:
            return h, await h.batch(calls)
        finally:
            await h.writer.stop()

    h, results = go(main())
    assert h.delta["fallbacks"] == 1
    assert h.delta["transactions"] == 1 + len(calls)  # the failed batch, then one each
    assert [type(r).__name__ for r in results] == ["Outcome"] * 3 + ["OperationalError",
                                                                     "Outcome"]
    # Nothing lost, nothing doubled; the ids are those the answers gave.
    with db.transaction(write=False) as s:
        stored = dict(s.execute(select(SummitChatMessage.id, SummitChatMessage.body)).all())
    assert sorted(stored.values()) == ["一", "三", "二", "四"]
    assert {r.ack["id"] for r in results if isinstance(r, Outcome)} == set(stored)
    # Published once each.
    chats = [e for _, msg in h.published for e in msg.get("e", ())]
    assert sorted(e["m"]["body"] for e in chats) == ["一", "三", "二", "四"]


def test_stop_writes_what_is_queued_and_refuses_what_comes_later(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)

    async def main() -> list[Any]:
        h = Harness(db)
        h.writer.start()
        held = await h.hold()
        tasks = [asyncio.ensure_future(h.writer.submit(
            live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*",
                             "body": f"{i}"})) for i in range(5)]
        while h.writer.queued < 5:
            await asyncio.sleep(0.005)
        stopping = asyncio.ensure_future(h.writer.stop())
        await asyncio.sleep(0)
        with pytest.raises(WriterClosed):
            await h.writer.submit(live.post_chat, {})
        h.gate.set()
        await stopping
        await held
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = go(main())
    assert all(isinstance(r, Outcome) for r in results)
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitChatMessage)) == 5


def test_stop_answers_a_backlog_it_cannot_write_in_time(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)

    async def main() -> tuple[Outcome, list[Any]]:
        h = Harness(db, drain_seconds=0.05)
        h.writer.start()
        held = await h.hold()
        tasks = [asyncio.ensure_future(h.writer.submit(
            live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*",
                             "body": f"{i}"})) for i in range(5)]
        while h.writer.queued < 5:
            await asyncio.sleep(0.005)
        stopping = asyncio.ensure_future(h.writer.stop())
        while not h.writer._abandon:  # noqa: SLF001 - the drain time is over
            await asyncio.sleep(0.005)
        h.gate.set()  # the batch being written still finishes and is answered
        await stopping
        return await held, await asyncio.gather(*tasks, return_exceptions=True)

    first, results = go(main())
    assert first.ack == {"blocked": True}
    assert all(isinstance(r, WriterClosed) for r in results), results
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitChatMessage)) == 0


def test_a_cancelled_caller_gets_an_answer_not_a_traceback(db: Database) -> None:
    """uvicorn cancels the handlers that outlive its graceful shutdown: an action still
    queued is not written (WriterClosed), one being written is answered with its result."""
    w = make_world(db)
    room = ref(db, w.stage)

    async def main() -> tuple[Any, Any]:
        h = Harness(db)
        h.writer.start()
        held = asyncio.ensure_future(h.writer.submit(blocker, {"gate": h.gate}))
        while h.writer.stats["batches"] == 0:
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(h.writer.submit(
            live.post_chat, {"room": room, "user_id": w.attendee_a, "name": "张*",
                             "body": "排队"}))
        while h.writer.queued < 1:
            await asyncio.sleep(0.005)
        held.cancel()
        queued.cancel()
        await asyncio.sleep(0.01)
        h.gate.set()
        results = await asyncio.gather(held, queued, return_exceptions=True)
        await h.writer.stop()
        return results[0], results[1]

    held, queued = go(main())
    assert isinstance(held, Outcome) and held.ack == {"blocked": True}
    assert isinstance(queued, WriterClosed)
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitChatMessage)) == 0


def test_merge_messages_keeps_each_channels_order() -> None:
    a, b = Outcome(), Outcome()
    a.room("s1", everyone=[{"k": "chat", "id": 1}], votes=[["q", 1, 2]])
    a.messages.append(("summit1", {"x": [{"k": "ban", "user": 3}]}))
    b.room("s1", moderators=[{"k": "held", "id": 2}], everyone=[{"k": "chat", "id": 3}])
    b.room("r5", everyone=[{"k": "settings"}])
    b.messages.append(("s9", {}))
    assert merge_messages([a, b]) == [
        ("s1", {"e": [{"k": "chat", "id": 1}, {"k": "chat", "id": 3}], "v": [["q", 1, 2]],
                "m": [{"k": "held", "id": 2}]}),
        ("summit1", {"x": [{"k": "ban", "user": 3}]}),
        ("r5", {"e": [{"k": "settings"}]}),
    ]


def test_frames_of_many_connections_share_one_transaction(db: Database,
                                                         tmp_path: Path) -> None:
    """End to end: chats from several connections, queued while the writer is busy, are
    written in one transaction; each connection gets its own ack and everyone the chats."""
    w = make_world(db)
    people = add_people(db, w, 6)
    with serve(db, tmp_path, tick_ms=50) as server:
        async def main() -> None:
            clients = [await join(server, w.token(u), w.stage) for u in people]
            hubs = server.hubs()
            gate, entered = threading.Event(), threading.Event()
            loop = hubs.loop
            held = asyncio.run_coroutine_threadsafe(
                hubs.writer.submit(blocker, {"gate": gate, "entered": entered}), loop)
            await inside(entered)
            assert server.call(lambda: hubs.writer.queued) == 0
            before = server.call(lambda: dict(hubs.writer.stats))
            for i, c in enumerate(clients):
                await c.send(ref=f"c{i}", t="chat", body=f"消息{i}")
            while server.call(lambda: hubs.writer.queued) < len(clients):
                await asyncio.sleep(0.01)
            gate.set()
            acks = [await c.reply(f"c{i}") for i, c in enumerate(clients)]
            assert all(a["t"] == "ack" and a["status"] == "visible" for a in acks), acks
            held.result(5)
            after = server.call(lambda: dict(hubs.writer.stats))
            assert after["transactions"] - before["transactions"] == 1
            assert after["largest"] == len(clients)
            seen = set()
            while len(seen) < len(clients):
                e = await clients[0].event(
                    lambda e: e["k"] == "chat" and e["m"]["body"] not in seen)
                seen.add(e["m"]["body"])
            for c in clients:
                await c.ws.close()

        asyncio.run(main())
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitChatMessage)) == 6


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_shutdown_with_a_backlog_answers_without_tracebacks(db: Database,
                                                             tmp_path: Path) -> None:
    """uvicorn stops with posts queued behind a busy writer: after its graceful-shutdown
    timeout it cancels the handlers; they end quietly (no "Exception in ASGI application"),
    and what was acknowledged is exactly what was stored."""
    w = make_world(db)
    people = add_people(db, w, 5)
    records = _Records()
    uvicorn_log = logging.getLogger("uvicorn.error")
    gate = threading.Event()
    try:
        with serve(db, tmp_path, tick_ms=50) as server:
            uvicorn_log.addHandler(records)  # after uvicorn configured its logging

            async def main() -> list[dict[str, Any] | None]:
                clients = [await join(server, w.token(u), w.stage) for u in people]
                hubs_now = server.hubs()
                held = asyncio.run_coroutine_threadsafe(
                    hubs_now.writer.submit(blocker, {"gate": gate}), hubs_now.loop)
                while server.call(lambda: hubs_now.writer.stats["batches"]) == 0:
                    await asyncio.sleep(0.01)
                for i, c in enumerate(clients):
                    await c.send(ref=f"c{i}", t="chat", body=f"停机{i}")
                while server.call(lambda: hubs_now.writer.queued) < len(clients):
                    await asyncio.sleep(0.01)
                server.server.config.timeout_graceful_shutdown = 0.3
                server.server.should_exit = True
                deadline = time.monotonic() + 10
                while not any("graceful shutdown exceeded" in m for m in records.messages):
                    assert time.monotonic() < deadline, records.messages
                    await asyncio.sleep(0.02)
                gate.set()
                with contextlib.suppress(Exception):  # answered, or refused as the loop ends
                    held.result(10)
                answers: list[dict[str, Any] | None] = []
                for i, c in enumerate(clients):
                    try:
                        answers.append(await c.reply(f"c{i}", timeout=1))
                    except Exception:  # noqa: BLE001 - closed (1012) before an answer
                        answers.append(None)
                return answers

            answers = asyncio.run(main())
            loop = server.app.state.live.loop
            deadline = time.monotonic() + 10
            while not loop.is_closed() and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        gate.set()
        uvicorn_log.removeHandler(records)
    assert not [m for m in records.messages if "Exception in ASGI application" in m]
    acked = {a["id"] for a in answers if a is not None and a["t"] == "ack"}
    refused = [a for a in answers if a is not None and a["t"] == "error"]
    assert all(a["code"] == "server_busy" for a in refused), refused
    with db.transaction(write=False) as s:
        stored = set(s.scalars(select(SummitChatMessage.id)))
    assert acked <= stored  # every ack is true
    # Nothing queued was written after its handler was told server_busy.
    assert len(stored) <= len(people) - len(refused)
