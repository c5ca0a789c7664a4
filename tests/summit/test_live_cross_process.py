"""Two server PROCESSES, one database, one broker: what happens on one reaches the other.

On SQLite the servers share a database file and talk over Redis; on PostgreSQL they share the
database and talk over PostgreSQL LISTEN/NOTIFY. Redis and PostgreSQL are mandatory in CI
(see test_broker.py) and skipped with the reason outside it when unreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shanju.core.db import Database
from shanju.summit.broker import PostgresBroker, RedisBroker
from tests.conftest import IN_CI
from tests.summit.faults import ServerProcess, start_servers, stop_servers
from tests.summit.live_support import Server, join, make_world
from tests.summit.test_broker import _reachable, redis_url_of_its_own


def broker_url_for(db: Database) -> str:
    if db.is_sqlite:
        url = redis_url_of_its_own()
        problem = _reachable(lambda: RedisBroker(url))
    else:
        url = db.url.replace("postgresql+psycopg://", "postgresql://", 1)
        problem = _reachable(lambda: PostgresBroker(url))
    if problem:
        if IN_CI:
            pytest.fail(f"the broker is mandatory in CI and unreachable: {problem}")
        pytest.skip(f"broker unreachable: {problem}")
    return url


@pytest.fixture
def servers(db: Database, tmp_path: Path) -> Iterator[list[Server]]:
    broker = broker_url_for(db)
    procs = [ServerProcess(f"server{i}", database_url=db.url, broker_url=broker,
                           directory=tmp_path) for i in range(2)]
    try:
        try:
            start_servers(procs)
        except RuntimeError as exc:
            pytest.fail(f"a server did not start: {exc}")
        yield [proc.as_server() for proc in procs]
    finally:
        stop_servers(procs)
    for proc in procs:
        err = proc.stderr()
        assert "Traceback" not in err, err[-3000:]


async def join_when_up(server: Server, token: str, room: str):  # type: ignore[no-untyped-def]
    for _ in range(100):
        try:
            return await join(server, token, room)
        except OSError:
            await asyncio.sleep(0.1)
    return await join(server, token, room)


def test_a_message_posted_on_one_server_reaches_a_client_of_another(
    db: Database, servers: list[Server]
) -> None:
    world = make_world(db)
    a_server, b_server = servers

    async def run() -> None:
        a = await join_when_up(a_server, world.token(world.attendee_a), world.stage)
        b = await join_when_up(b_server, world.token(world.attendee_b, name="李*"), world.stage)
        m = await join_when_up(a_server, world.token(world.moderator, role="moderator"),
                               world.stage)
        # The live count sums both processes' reports.
        await a.event(lambda e: e["k"] == "count" and e["n"] == 3, timeout=10)
        await b.event(lambda e: e["k"] == "count" and e["n"] == 3, timeout=10)
        ack = await a.request("c1", t="chat", body="来自A服务器")
        got = await b.event(lambda e: e["k"] == "chat", timeout=10)
        assert got["m"] == {**got["m"], "id": ack["id"], "body": "来自A服务器", "name": "张*"}
        # Q&A across: asked on B, approved on A, upvoted on B, seen on A.
        asked = await b.request("q", t="ask", body="跨进程？")
        await m.event(lambda e: e["k"] == "pending" and e["q"]["id"] == asked["id"], timeout=10)
        await m.request("ap", t="mod", action="q_approve", question=asked["id"])
        await b.event(lambda e: e["k"] == "question" and e["q"]["id"] == asked["id"],
                      timeout=10)
        await b.request("u", t="upvote", question=asked["id"])
        await a.event(lambda e: e["k"] == "question" and e["q"]["upvotes"] == 1, timeout=10)
        # A ban on A closes the person's connection on B.
        await m.request("ban", t="mod", action="ban", user=world.attendee_b, reason="x")
        assert await b.closed(timeout=10) == 4003
        for c in (a, m):
            await c.ws.close()

    asyncio.run(run())
