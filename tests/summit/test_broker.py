"""The summit's broker: in one process, and across processes over Redis and PostgreSQL.

The cross-process tests start a second Python process that subscribes through its own broker;
this process publishes; the other must print the message. Redis (127.0.0.1:6379, or
``SHANJU_TEST_REDIS_URL``) and PostgreSQL (``SHANJU_TEST_PG_URL``) are mandatory in CI and
skipped with the reason outside it when unreachable.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable

import pytest

from shanju.summit import broker as broker_module
from shanju.summit.broker import (
    QUEUE_SIZE,
    Broker,
    BrokerError,
    BrokerUnavailable,
    MemoryBroker,
    PostgresBroker,
    RedisBroker,
    broker_from_url,
)
from tests.conftest import IN_CI

REDIS_URL = os.environ.get("SHANJU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("SHANJU_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test").replace(
                            "postgresql+psycopg://", "postgresql://", 1)


def _reachable(make: Callable[[], Broker]) -> str | None:
    async def probe() -> None:
        broker = make()
        await asyncio.wait_for(broker.start(), 5)
        try:
            await broker.wait_connected(5)  # start() itself returns while the broker is away
        finally:
            await broker.stop()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return f"{type(exc).__name__}: {exc}"
    return None


BACKENDS = {"redis": lambda: RedisBroker(REDIS_URL), "postgresql": lambda: PostgresBroker(PG_URL)}
URLS = {"redis": REDIS_URL, "postgresql": PG_URL}


def redis_url_of_its_own() -> str:
    """``REDIS_URL`` in a namespace of its own: servers that meet through it hear no other
    test's rooms (another pytest-xdist worker's, another checkout's on the same Redis)."""
    sep = "&" if "?" in REDIS_URL else "?"
    return f"{REDIS_URL}{sep}namespace=test{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["redis", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    problem = _reachable(BACKENDS[name])
    if problem:
        if IN_CI:
            pytest.fail(f"{name} is mandatory in CI and unreachable: {problem}")
        pytest.skip(f"{name} unreachable: {problem}")
    return name


def test_memory_broker_delivers_to_every_local_subscriber() -> None:
    async def run() -> None:
        broker = MemoryBroker()
        await broker.start()
        async with broker.subscribe("room:1") as a, broker.subscribe("room:1") as b, \
                broker.subscribe("room:2") as other:
            await broker.publish("room:1", "你好")
            assert await a.get() == "你好" and await b.get() == "你好"
            assert other.queue.empty()
        await broker.stop()

    asyncio.run(run())


def test_a_slow_subscriber_loses_messages_instead_of_slowing_others() -> None:
    async def run() -> None:
        broker = MemoryBroker()
        await broker.start()
        async with broker.subscribe("room:1") as slow:
            for i in range(QUEUE_SIZE + 5):
                await broker.publish("room:1", str(i))
            assert slow.dropped == 5 and slow.queue.qsize() == QUEUE_SIZE
        await broker.stop()

    asyncio.run(run())


@pytest.mark.parametrize("channel", ["", "Room", "room 1", "x" * 61, "room;drop"])
def test_bad_channel_names_are_refused(channel: str) -> None:
    async def run() -> None:
        broker = MemoryBroker()
        await broker.start()
        with pytest.raises(BrokerError):
            await broker.publish(channel, "x")
        await broker.stop()

    asyncio.run(run())


def test_brokers_by_url() -> None:
    assert isinstance(broker_from_url("memory://"), MemoryBroker)
    assert isinstance(broker_from_url("redis://127.0.0.1:6379/0"), RedisBroker)
    assert isinstance(broker_from_url("postgresql+psycopg://postgres@h/db"), PostgresBroker)
    with pytest.raises(BrokerError):
        broker_from_url("amqp://x")


def test_a_stopped_broker_refuses_to_publish() -> None:
    with pytest.raises(BrokerError):
        asyncio.run(MemoryBroker().publish("room:1", "x"))


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from shanju.core.logging import configure_logging
    from shanju.summit.broker import broker_from_url

    configure_logging(stream=sys.stderr)  # standard output is the test's protocol

    async def main(url, channel, count):
        broker = broker_from_url(url)
        await broker.start()
        async with broker.subscribe(channel) as messages:
            print("ready", flush=True)
            for _ in range(count):
                print("got " + await asyncio.wait_for(messages.get(), 30), flush=True)
        await broker.stop()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def test_a_message_published_in_one_process_reaches_another(backend: str) -> None:
    channel = f"room:{uuid.uuid4().hex[:12]}"
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, URLS[backend], channel, "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            child.kill()
            _out, err = child.communicate()
            pytest.fail(f"the subscribing process did not start: {err[-2000:]}")

        async def publish() -> None:
            broker = BACKENDS[backend]()
            await broker.start()
            await broker.publish(channel, "第一条")
            await broker.publish(channel, '{"type": "question", "id": 7}')
            await broker.stop()

        asyncio.run(publish())
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.splitlines() == ["got 第一条", 'got {"type": "question", "id": 7}']
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_redis_namespaces_keep_deployments_apart() -> None:
    # Redis channels are global to the server: two deployments on one Redis must not hear
    # each other's rooms unless they share a namespace.
    problem = _reachable(BACKENDS["redis"])
    if problem:
        if IN_CI:
            pytest.fail(f"redis is mandatory in CI and unreachable: {problem}")
        pytest.skip(f"redis unreachable: {problem}")
    sep = "&" if "?" in REDIS_URL else "?"
    ns = uuid.uuid4().hex[:8]

    async def run() -> None:
        a = RedisBroker(f"{REDIS_URL}{sep}namespace=a{ns}")
        a_too = RedisBroker(f"{REDIS_URL}{sep}namespace=a{ns}")
        b = RedisBroker(f"{REDIS_URL}{sep}namespace=b{ns}")
        assert "namespace" not in a.url and a.prefix == f"a{ns}:"
        for broker in (a, a_too, b):
            await broker.start()
        async with a.subscribe("room:1") as heard_a, b.subscribe("room:1") as heard_b:
            await a_too.publish("room:1", "同一个部署")
            assert await asyncio.wait_for(heard_a.get(), 5) == "同一个部署"
            await asyncio.sleep(0.3)
            assert heard_b.queue.empty()
        for broker in (a, a_too, b):
            await broker.stop()

    asyncio.run(run())
    with pytest.raises(BrokerError):
        RedisBroker("redis://127.0.0.1:6379/0?namespace=Bad Name")


def test_postgres_refuses_an_oversized_notification() -> None:
    problem = _reachable(BACKENDS["postgresql"])
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)

    async def run() -> None:
        broker = PostgresBroker(PG_URL)
        await broker.start()
        try:
            with pytest.raises(BrokerError):
                await broker.publish("room:1", "x" * 8_000)
        finally:
            await broker.stop()

    asyncio.run(run())


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/x"])
def test_a_broker_that_is_away_starts_degraded_and_never_makes_anyone_wait(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: the process must still start, serve and say so.
    monkeypatch.setattr(broker_module, "START_WAIT", 0.5)

    async def run() -> None:
        broker = broker_from_url(url)
        start = time.monotonic()
        await broker.start()
        assert time.monotonic() - start < 2
        assert not broker.connected and broker.status()["state"] in ("connecting", "down")
        assert "error" in broker.status()
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await broker.publish("room:1", "x")
        async with broker.subscribe("room:1"):  # recorded, subscribed once connected
            pass
        with pytest.raises(BrokerUnavailable):
            await broker.wait_connected(0.2)
        assert time.monotonic() - start < 1
        await broker.stop()
        assert broker.status()["state"] == "stopped"

    asyncio.run(run())


def test_the_postgres_broker_reconnects_after_its_connections_are_terminated() -> None:
    problem = _reachable(BACKENDS["postgresql"])
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"shanju-broker-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in PG_URL else "?"

    async def run() -> None:
        import psycopg  # noqa: PLC0415

        broker = PostgresBroker(f"{PG_URL}{sep}application_name={name}")
        other = PostgresBroker(PG_URL)
        back = asyncio.Event()
        broker.on_reconnect(back.set)
        await broker.start()
        await other.start()
        try:
            async with broker.subscribe("room:1") as heard:
                await other.publish("room:1", "之前")
                assert await asyncio.wait_for(heard.get(), 5) == "之前"
                async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as c:
                    cur = await c.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = %s", (name,))
                    row = await cur.fetchone()
                    assert row is not None and row[0] == 2  # listener and notifier
                await asyncio.wait_for(back.wait(), 10)
                assert broker.status()["state"] == "up" and broker.reconnects == 1
                # Subscribed again: heard, and it can publish too.
                await other.publish("room:1", "之后")
                assert await asyncio.wait_for(heard.get(), 5) == "之后"
                await broker.publish("room:1", "自己")
                assert await asyncio.wait_for(heard.get(), 5) == "自己"
        finally:
            await broker.stop()
            await other.stop()

    asyncio.run(run())
