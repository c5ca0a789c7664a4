"""The live gateway end to end: a real uvicorn server, ``websockets`` clients, a real database.

Covers the issue's "Done when" for abuse: a banned attendee cannot post and cannot come back;
a flooding client is slowed (``rate_limited``) then dropped (4008); an oversized or malformed
frame gets an error and changes nothing (rows and room state compared before and after).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from shanju.core.db import Database
from shanju.summit import gateway
from shanju.summit.models import (
    SummitAttendance,
    SummitChatMessage,
    SummitPoll,
    SummitQuestion,
    SummitSanction,
    SummitSession,
)
from tests.summit.live_support import Client, Server, World, join, make_world, refused_join, serve


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, keywords="违禁词")


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[Server]:
    with serve(db, tmp_path, tick_ms=50) as running:
        yield running


def rows(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as s:
        return {m.__name__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (SummitChatMessage, SummitQuestion, SummitPoll, SummitSanction)}


def room_state(server: Server, key: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        room = server.hubs().rooms[key]
        return json.loads(json.dumps({
            "chat": list(room.chat), "held": list(room.held), "questions": room.questions,
            "polls": room.polls, "settings": room.settings}))
    result: dict[str, Any] = server.call(read)
    return result


def test_join_welcome_and_chat_reach_everyone(server: Server, world: World) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        state = a.welcome["state"]
        assert a.welcome["you"] == {"user": world.attendee_a, "name": "张*", "role": "attendee"}
        assert state["room"]["kind"] == "stage" and state["count"] == 1
        assert state["rooms"][0]["key"] == world.breakout and "held" not in state
        b = await join(server, world.token(world.attendee_b, name="李*"), world.stage)
        assert b.welcome["state"]["count"] == 2
        assert await a.event(lambda e: e["k"] == "count" and e["n"] == 2)
        ack = await a.request("c1", t="chat", body="  大家好  ")
        assert ack["status"] == "visible"
        got = await b.event(lambda e: e["k"] == "chat")
        assert got["m"]["body"] == "大家好" and got["m"]["name"] == "张*"
        # A later joiner gets it from the room's memory.
        m = await join(server, world.token(world.moderator, role="moderator"), world.stage)
        assert [c["body"] for c in m.welcome["state"]["chat"]] == ["大家好"]
        assert m.welcome["state"]["held"] == [] and m.welcome["state"]["pending"] == []
        # A second join on the same connection is refused.
        assert (await a.request("j", t="join", token="x", room=world.stage))["code"] == \
            "already_joined"
        for c in (a, b, m):
            await c.ws.close()

    asyncio.run(run())


def test_join_refusals(server: Server, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        frame, code = await refused_join(server, world.token(world.attendee_a) + "x", world.stage)
        assert (frame["code"], code) == ("bad_token", 4001)
        expired = world.token(world.attendee_a, ttl=-10)
        assert (await refused_join(server, expired, world.stage))[1] == 4001
        other = world.token(world.attendee_a, summit_id=world.other_summit_id)
        frame, code = await refused_join(server, other, world.stage)
        assert (frame["code"], code) == ("room_not_found", 4004)
        frame, code = await refused_join(server, world.token(world.attendee_a), "s99999")
        assert (frame["code"], code) == ("room_not_found", 4004)
        ws = await connect(server.url)
        first = Client(ws)
        await first.send(t="chat", body="hi")
        assert (await first.recv())["code"] == "not_joined"
        assert await first.closed() == 4001
        monkeypatch.setattr(gateway, "JOIN_TIMEOUT", 0.3)
        silent = Client(await connect(server.url))
        assert (await silent.recv())["code"] == "bad_token"
        assert await silent.closed() == 4001

    asyncio.run(run())


def test_the_origin_is_checked(server: Server, world: World) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            await connect(server.url, origin="http://evil.example")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        ok = await join(server, world.token(world.attendee_a), world.stage,
                        origin=server.base)
        await ok.ws.close()

    asyncio.run(run())


def test_a_full_room_refuses_attendees_but_not_moderators(db: Database, tmp_path: Path) -> None:
    world = make_world(db, capacity=1)
    with serve(db, tmp_path) as server:
        async def run() -> None:
            a = await join(server, world.token(world.attendee_a), world.stage)
            frame, code = await refused_join(server, world.token(world.attendee_b), world.stage)
            assert (frame["code"], code) == ("room_full", 4029)
            m = await join(server, world.token(world.moderator, role="moderator"), world.stage)
            await a.ws.close()
            await m.ws.close()

        asyncio.run(run())


def test_the_moderation_flow(server: Server, world: World, db: Database) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        b = await join(server, world.token(world.attendee_b, name="李*"), world.stage)
        m = await join(server, world.token(world.moderator, role="moderator", name="王*"),
                       world.stage)
        ack = await a.request("q1", t="ask", body="如何透明？")
        assert ack["status"] == "pending"
        qid = ack["id"]
        pending = await m.event(lambda e: e["k"] == "pending")
        assert pending["q"]["id"] == qid and pending["q"]["body"] == "如何透明？"
        # Attendees do not see it: a marker message reaches b with nothing before it.
        await m.request("mark", t="chat", body="marker")
        await b.event(lambda e: e["k"] == "chat" and e["m"]["body"] == "marker")
        assert not [e for e in b.events() if e["k"] in ("pending", "question")]
        assert (await a.request("x", t="mod", action="q_approve", question=qid))["code"] == \
            "not_moderator"
        assert (await m.request("ap", t="mod", action="q_approve", question=qid))[
            "status"] == "approved"
        seen = await b.event(lambda e: e["k"] == "question" and e["q"]["id"] == qid)
        assert seen["q"]["status"] == "approved" and seen["q"]["upvotes"] == 0
        assert (await b.request("u1", t="upvote", question=qid))["upvotes"] == 1
        assert (await b.request("u2", t="upvote", question=qid))["code"] == "already_voted"
        await a.event(lambda e: e["k"] == "question" and e["q"]["upvotes"] == 1)
        # b comes back: the welcome says what b voted.
        await b.ws.close()
        b2 = await join(server, world.token(world.attendee_b), world.stage)
        (q,) = b2.welcome["state"]["questions"]
        assert (q["id"], q["upvotes"], q["voted"]) == (qid, 1, True)
        await m.request("ans", t="mod", action="q_answering", question=qid)
        await a.event(lambda e: e["k"] == "question" and e["q"]["status"] == "answering")
        for c in (a, b2, m):
            await c.ws.close()

    asyncio.run(run())
    with db.transaction(write=False) as s:
        assert s.scalars(select(SummitQuestion.upvotes)).all() == [1]


def test_polls_show_live_results(server: Server, world: World) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        b = await join(server, world.token(world.attendee_b), world.stage)
        m = await join(server, world.token(world.moderator, role="moderator"), world.stage)
        created = await m.request("p", t="mod", action="poll_create", question="明年在哪？",
                                  options=["北京", "杭州", "深圳"])
        pid = created["poll"]
        draft = await m.event(lambda e: e["k"] == "poll")
        assert draft["p"]["status"] == "draft"
        await m.request("o", t="mod", action="poll_open", poll=pid)
        opened = await a.event(lambda e: e["k"] == "poll" and e["p"]["status"] == "open")
        assert not [e for e in a.events() if e["k"] == "poll" and e["p"]["status"] == "draft"]
        option = opened["p"]["options"][1]["id"]
        assert (await a.request("v", t="vote", poll=pid, option=option))["option"] == option
        result = await b.event(lambda e: e["k"] == "poll" and e["p"]["total"] == 1)
        assert [o["votes"] for o in result["p"]["options"]] == [0, 1, 0]
        await b.request("v", t="vote", poll=pid, option=option)
        await a.event(lambda e: e["k"] == "poll" and e["p"]["total"] == 2)
        await m.request("c", t="mod", action="poll_close", poll=pid)
        await b.event(lambda e: e["k"] == "poll" and e["p"]["status"] == "closed")
        assert (await m.request("v", t="vote", poll=pid, option=option))["code"] == "not_open"
        for c in (a, b, m):
            await c.ws.close()

    asyncio.run(run())


def test_keyword_premoderation(server: Server, world: World) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        m = await join(server, world.token(world.moderator, role="moderator"), world.stage)
        ack = await a.request("c", t="chat", body="这里有违禁词")
        assert ack["status"] == "held"
        held = await m.event(lambda e: e["k"] == "held")
        assert held["m"]["id"] == ack["id"]
        await m.request("ok", t="mod", action="chat_approve", message=ack["id"])
        shown = await a.event(lambda e: e["k"] == "chat")
        assert shown["m"]["id"] == ack["id"]
        await m.request("del", t="mod", action="chat_delete", message=ack["id"])
        assert (await a.event(lambda e: e["k"] == "chat_removed"))["id"] == ack["id"]
        assert room_state(server, world.stage)["chat"] == []
        for c in (a, m):
            await c.ws.close()

    asyncio.run(run())


def test_slow_mode_pause_and_mute(server: Server, world: World) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        b = await join(server, world.token(world.attendee_b), world.breakout)
        m = await join(server, world.token(world.moderator, role="moderator"), world.stage)
        await m.request("s", t="mod", action="slow", seconds=60)
        # The setting reaches the breakout room too.
        await b.event(lambda e: e["k"] == "settings" and e["slow"] == 60)
        assert (await a.request("1", t="chat", body="一"))["status"] == "visible"
        slow = await a.request("2", t="chat", body="二")
        assert slow["code"] == "slow_mode" and 55 <= slow["retry_after"] <= 60
        assert (await m.request("m1", t="chat", body="主持人"))["status"] == "visible"
        assert (await m.request("m2", t="chat", body="不受限"))["status"] == "visible"
        await m.request("s0", t="mod", action="slow", seconds=0)
        await m.request("p", t="mod", action="pause")
        await a.event(lambda e: e["k"] == "settings" and e["paused"])
        assert (await a.request("3", t="chat", body="三"))["code"] == "paused"
        assert (await b.request("3", t="chat", body="三"))["code"] == "paused"
        await m.request("r", t="mod", action="resume")
        await a.event(lambda e: e["k"] == "settings" and not e["paused"])
        assert (await a.request("4", t="chat", body="四"))["status"] == "visible"
        assert (await b.request("6", t="ask", body="能问吗"))["code"] == "invalid"  # breakout
        await m.request("mu", t="mod", action="mute", user=world.attendee_b, minutes=5)
        await asyncio.sleep(0.2)  # the mute travels through the broker
        muted = await b.request("5", t="chat", body="五")
        assert muted["code"] == "muted" and 240 <= muted["retry_after"] <= 300
        await m.request("um", t="mod", action="unmute", user=world.attendee_b)
        for _ in range(50):
            reply = await b.request("7", t="chat", body="七")
            if reply["t"] == "ack":
                break
            await asyncio.sleep(0.1)
        assert reply["status"] == "visible"
        for c in (a, b, m):
            await c.ws.close()

    asyncio.run(run())


def test_a_banned_attendee_is_dropped_cannot_post_or_come_back(
    server: Server, world: World, db: Database
) -> None:
    async def run() -> None:
        a_stage = await join(server, world.token(world.attendee_a), world.stage)
        a_room = await join(server, world.token(world.attendee_a), world.breakout)
        m = await join(server, world.token(world.moderator, role="moderator"), world.breakout)
        assert (await a_stage.request("c", t="chat", body="before"))["status"] == "visible"
        await m.request("b", t="mod", action="ban", user=world.attendee_a, reason="广告")
        assert await a_stage.closed() == 4003
        assert await a_room.closed() == 4003
        frame, code = await refused_join(server, world.token(world.attendee_a), world.stage)
        assert (frame["code"], code) == ("banned", 4003)
        # Unbanned, they may come back.
        await m.request("u", t="mod", action="unban", user=world.attendee_a)
        for _ in range(50):
            try:
                again = await join(server, world.token(world.attendee_a), world.stage)
                break
            except (AssertionError, Exception):  # noqa: BLE001 - refused while it travels
                await asyncio.sleep(0.1)
        assert (await again.request("c2", t="chat", body="after"))["status"] == "visible"
        await again.ws.close()
        await m.ws.close()

    asyncio.run(run())
    with db.transaction(write=False) as s:
        assert s.scalars(select(SummitChatMessage.body).order_by(SummitChatMessage.id)).all() \
            == ["before", "after"]


def test_a_flooding_client_is_slowed_then_dropped(server: Server, world: World) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        for i in range(5):
            assert (await a.request(f"ok{i}", t="chat", body=f"消息{i}"))["t"] == "ack"
        limited = await a.request("x", t="chat", body="too many")
        assert limited["code"] == "rate_limited" and limited["retry_after"] >= 1
        for i in range(20):
            await a.send(t="chat", body=f"flood {i}", ref=f"f{i}")
        assert await a.closed() == 4008
        # Frames of any kind, more than 50 a second: dropped too.
        b = await join(server, world.token(world.attendee_b), world.stage)
        # 120: even split across a second's boundary, one second holds more than 50.
        for _ in range(120):
            await b.send(t="hb")
        assert await b.closed() == 4008

    asyncio.run(run())
    assert server.call(lambda: len(server.hubs().rooms[world.stage].conns)) == 0


def test_oversized_or_malformed_frames_get_an_error_and_change_nothing(
    server: Server, world: World, db: Database
) -> None:
    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        b = await join(server, world.token(world.attendee_b), world.stage)
        await a.request("c", t="chat", body="已有")
        await b.event(lambda e: e["k"] == "chat")
        b.frames.clear()
        before_rows, before_state = rows(db), room_state(server, world.stage)
        big = json.dumps({"t": "chat", "body": "好" * 1400, "ref": "big"}, ensure_ascii=False)
        await a.ws.send(big)
        assert (await a.error())["code"] == "too_large"
        for text, code in [("{not json", "malformed"), ("[1]", "malformed"),
                           ('{"t":"nope","ref":"n"}', "unknown_type"),
                           ('{"t":"chat","body":"","ref":"e"}', "invalid"),
                           ('{"t":"upvote","question":"1"}', "invalid")]:
            await a.ws.send(text)
            assert (await a.error())["code"] == code
        await a.ws.send(b'{"t":"chat","body":"\xff\xfe"}')
        assert (await a.error())["code"] == "malformed"
        assert rows(db) == before_rows
        assert room_state(server, world.stage) == before_state
        await b.drain(0.3)  # several ticks: nothing was broadcast
        assert not [e for e in b.events() if e["k"] != "count"]
        # Still connected and working.
        assert (await a.request("ok", t="chat", body="好的"))["status"] == "visible"
        # Beyond 64 KiB the connection is closed (1009).
        await a.ws.send("x" * (64 * 1024 + 1))
        assert await a.closed() == 1009
        await b.ws.close()

    asyncio.run(run())


def test_breakout_counts_and_attendance(server: Server, world: World, db: Database) -> None:
    async def run() -> None:
        stage = await join(server, world.token(world.moderator, role="moderator"), world.stage)
        r1 = await join(server, world.token(world.attendee_a), world.breakout)
        r2 = await join(server, world.token(world.attendee_b), world.breakout)
        rooms = await stage.event(lambda e: e["k"] == "rooms" and e["rooms"][0]["count"] == 2)
        assert rooms["rooms"][0]["key"] == world.breakout
        await asyncio.sleep(1.1)
        await r1.send(t="hb")
        await r1.send(t="chat", body="hb first", ref="x")
        await r1.reply("x")
        await r1.ws.close()
        await stage.event(lambda e: e["k"] == "rooms" and e["rooms"][0]["count"] == 1)
        await r2.ws.close()
        await stage.ws.close()

    asyncio.run(run())
    deadline = time.monotonic() + 10
    while True:
        with db.transaction(write=False) as s:
            seconds = s.scalar(select(SummitAttendance.seconds).where(
                SummitAttendance.session_id == world.session_id,
                SummitAttendance.user_id == world.attendee_a))
        if seconds is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seconds is not None and seconds >= 1


def test_settings_changed_elsewhere_are_not_lost(server: Server, world: World,
                                                 db: Database) -> None:
    """A room opened after a change loads it; the hubs' memory is not a second source."""
    with db.transaction() as s:
        s.get_one(SummitSession, world.session_id).slow_mode_seconds = 10

    async def run() -> None:
        a = await join(server, world.token(world.attendee_a), world.stage)
        assert a.welcome["state"]["settings"]["slow"] == 10
        await a.ws.close()

    asyncio.run(run())


def test_stopping_the_hubs_closes_connections_with_1001_and_writes_attendance(
    db: Database, world: World, tmp_path: Path
) -> None:
    with serve(db, tmp_path) as server:
        async def run() -> None:
            a = await join(server, world.token(world.attendee_a), world.stage)
            await asyncio.sleep(1.1)
            await a.send(t="hb")
            await a.request("c", t="chat", body="bye")  # the heartbeat has been read
            hubs = server.hubs()
            assert hubs is not None and hubs.loop is not None
            stopped = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(hubs.stop(), hubs.loop))
            assert await a.closed() == 1001
            await stopped

        asyncio.run(run())
    with db.transaction(write=False) as s:
        seconds = s.scalar(select(SummitAttendance.seconds).where(
            SummitAttendance.user_id == world.attendee_a))
    assert seconds is not None and seconds >= 1


def test_attendance_is_written_while_connected(
    server: Server, world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shanju.summit import hub  # noqa: PLC0415

    monkeypatch.setattr(hub, "ATTENDANCE_SLOTS", 1)  # every connection, every second

    def seconds() -> int | None:
        with db.transaction(write=False) as s:
            return s.scalar(select(SummitAttendance.seconds).where(
                SummitAttendance.user_id == world.attendee_b))

    async def run() -> None:
        b = await join(server, world.token(world.attendee_b), world.stage)
        await asyncio.sleep(1.1)
        await b.send(t="hb")
        deadline = time.monotonic() + 10
        while seconds() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (seconds() or 0) >= 1
        await b.ws.close()

    asyncio.run(run())
