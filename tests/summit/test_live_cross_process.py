"""Two server PROCESSES, one database, one broker: what happens on one reaches the other.

On SQLite the servers share a database file and talk over Redis; on PostgreSQL they share the
database and talk over PostgreSQL LISTEN/NOTIFY. Redis and PostgreSQL are mandatory in CI
(see test_broker.py) and skipped with the reason outside it when unreachable.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shanju.core.db import Database
from shanju.summit.broker import PostgresBroker, RedisBroker
from tests.conftest import IN_CI
from tests.summit.live_support import SECRET, Server, join, make_world
from tests.summit.test_broker import REDIS_URL, _reachable

SERVER = textwrap.dedent(
    """
    import socket, sys
    from pathlib import Path
    import uvicorn
    from shanju.app import create_app
    from shanju.core.config import Settings

    database_url, broker_url, secret, tmp = sys.argv[1:5]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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


def broker_url_for(db: Database) -> str:
    if db.is_sqlite:
        problem = _reachable(lambda: RedisBroker(REDIS_URL))
        url = REDIS_URL
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
    procs = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", SERVER, db.url, broker, SECRET, str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        running = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("port "):
                proc.kill()
                pytest.fail(f"a server did not start: {proc.communicate()[1][-3000:]}")
            port = int(line.split()[1])
            running.append(Server(url=f"ws://127.0.0.1:{port}/summit/live",
                                  base=f"http://127.0.0.1:{port}", app=None, server=None))  # type: ignore[arg-type]
        yield running
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                _out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _out, err = proc.communicate()
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
