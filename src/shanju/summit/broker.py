"""The summit's message broker: publish on a channel, every subscriber in every process gets it.

A small interface of our own (the ``broadcaster`` package is archived), with three
implementations behind one local fan-out:

- :class:`MemoryBroker` — one process (the default; tests, the demo);
- :class:`RedisBroker` — Redis pub/sub, for several processes or machines;
- :class:`PostgresBroker` — PostgreSQL ``LISTEN``/``NOTIFY``, for several processes on the
  database the platform already runs (no Redis needed). Payloads are limited to 7,900 bytes
  there (PostgreSQL's ``NOTIFY`` limit is 8,000).

Each broker keeps *one* upstream subscription per channel per process however many local
subscribers it has, and delivers each message to every local subscriber's queue. A slow local
subscriber whose queue is full loses the message (``dropped`` counts it) rather than slowing the
others: the live rooms coalesce and resend state, so a dropped update is superseded.

Usage::

    broker = RedisBroker("redis://127.0.0.1:6379/0")
    await broker.start()
    async with broker.subscribe("room:42") as messages:
        await broker.publish("room:42", "hello")
        print(await messages.get())
    await broker.stop()
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

QUEUE_SIZE = 1_000  # per local subscriber
PG_MAX_PAYLOAD = 7_900  # bytes; PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more
_CHANNEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789:_-.")


class BrokerError(RuntimeError):
    """The broker cannot take this channel or message, or is not running."""


def check_channel(channel: str) -> str:
    """Return ``channel`` if it is a valid channel name (lowercase ``[a-z0-9:_.-]``, ≤ 60)."""
    if not 0 < len(channel) <= 60 or not set(channel) <= _CHANNEL_CHARS:
        raise BrokerError(f"invalid channel name {channel!r}")
    return channel


@dataclass(eq=False)  # identity: each subscriber is its own set member
class Subscription:
    """A local subscriber's queue of messages on one channel."""

    channel: str
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0

    async def get(self) -> str:
        """The next message (waits)."""
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while True:
            yield await self.queue.get()


class Broker(abc.ABC):
    """Publish/subscribe across processes; subclasses move messages between processes."""

    def __init__(self) -> None:
        self._local: dict[str, set[Subscription]] = {}
        self._running = False
        self._reader: asyncio.Task[None] | None = None  # a subclass's upstream reader

    async def start(self) -> None:
        """Connect (idempotent)."""
        self._running = True

    async def stop(self) -> None:
        """Disconnect; local subscribers stop receiving."""
        self._running = False
        self._local.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every subscriber of ``channel``, in every process."""
        check_channel(channel)
        if not self._running:
            raise BrokerError("the broker is not started")
        await self._publish(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Receive the channel's messages while the context is open."""
        check_channel(channel)
        if not self._running:
            raise BrokerError("the broker is not started")
        sub = Subscription(channel)
        subs = self._local.setdefault(channel, set())
        first = not subs
        subs.add(sub)
        try:
            if first:
                await self._listen(channel)
            yield sub
        finally:
            subs.discard(sub)
            if not subs and self._local.get(channel) is subs:
                del self._local[channel]
                if self._running:
                    await self._unlisten(channel)

    def deliver(self, channel: str, message: str) -> None:
        """Hand a message that arrived for ``channel`` to this process's subscribers."""
        for sub in list(self._local.get(channel, ())):
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.dropped += 1

    @abc.abstractmethod
    async def _publish(self, channel: str, message: str) -> None: ...

    async def _listen(self, channel: str) -> None:  # noqa: B027 - optional hook
        """Start receiving ``channel`` from other processes."""

    async def _unlisten(self, channel: str) -> None:  # noqa: B027 - optional hook
        """Stop receiving ``channel``."""


class MemoryBroker(Broker):
    """Within one process only."""

    async def _publish(self, channel: str, message: str) -> None:
        self.deliver(channel, message)


class RedisBroker(Broker):
    """Redis pub/sub: one connection publishes, one pub/sub connection listens.

    Redis channels are global to the server (not per database number), so deployments that
    share one Redis set a namespace in the URL, ``redis://host:6379/0?namespace=shanju-prod``:
    every channel is then ``<namespace>:<channel>`` on the wire.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        namespace = "".join(v for k, v in query if k == "namespace")
        if namespace:
            check_channel(namespace)
        self.prefix = f"{namespace}:" if namespace else ""
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "namespace"])
        self.url = urllib.parse.urlunsplit(parts._replace(query=rest))
        self._redis: Any = None
        self._pubsub: Any = None

    async def start(self) -> None:
        if self._running:
            return
        import redis.asyncio as aioredis  # noqa: PLC0415 - only when Redis is configured

        self._redis = aioredis.Redis.from_url(self.url, decode_responses=True)
        await self._redis.ping()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        self._pubsub = self._redis = None

    async def _publish(self, channel: str, message: str) -> None:
        await self._redis.publish(self.prefix + channel, message)

    async def _listen(self, channel: str) -> None:
        await self._pubsub.subscribe(self.prefix + channel)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def _unlisten(self, channel: str) -> None:
        await self._pubsub.unsubscribe(self.prefix + channel)

    async def _read(self) -> None:
        while self._running:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except Exception:  # noqa: BLE001 - keep listening; log and retry
                log.warning("summit.broker.redis_read_failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if msg is not None and msg.get("type") == "message":
                self.deliver(str(msg["channel"])[len(self.prefix):], str(msg["data"]))


class PostgresBroker(Broker):
    """PostgreSQL LISTEN/NOTIFY: one autocommit connection listens, another notifies."""

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self.conninfo = conninfo
        self._listener: Any = None
        self._notifier: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._running:
            return
        import psycopg  # noqa: PLC0415

        self._listener = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        self._notifier = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        await super().start()
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        await super().stop()
        for conn in (self._listener, self._notifier):
            if conn is not None:
                await conn.close()
        self._listener = self._notifier = None

    async def _publish(self, channel: str, message: str) -> None:
        if len(message.encode()) > PG_MAX_PAYLOAD:
            raise BrokerError(f"a PostgreSQL notification carries at most {PG_MAX_PAYLOAD} bytes")
        async with self._lock:
            await self._notifier.execute("SELECT pg_notify(%s, %s)", (channel, message))

    async def _listen(self, channel: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        await self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def _unlisten(self, channel: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        await self._listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))

    async def _read(self) -> None:
        while self._running:
            try:
                async for note in self._listener.notifies(timeout=1.0):
                    self.deliver(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep listening; log and retry
                log.warning("summit.broker.pg_read_failed", exc_info=True)
                await asyncio.sleep(0.5)


def broker_from_url(url: str) -> Broker:
    """``memory://``, ``redis://host:port/db`` or ``postgresql://…`` → the broker for it."""
    if url in ("", "memory://"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://")):
        return RedisBroker(url)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresBroker(url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise BrokerError(f"no broker for {url!r} (memory://, redis://, postgresql://)")
