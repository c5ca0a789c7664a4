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
others.

**A broker is best effort, and says so.** Pub/sub keeps nothing: a message published while a
process is disconnected never reaches it. The network brokers therefore never make their
callers wait for the network: ``start()`` returns even when the broker is away (the process
serves *degraded*), ``subscribe()`` only records the channel, and ``publish()`` fails at once
(:class:`BrokerUnavailable`) while disconnected. A supervisor task per broker connects,
subscribes every channel, reads, and on any failure closes its connections and connects again
with backoff (0.2 s doubling to 5 s), for as long as the process runs; every time it is
connected again it calls the ``on_reconnect`` callbacks, so that what was missed can be loaded
from the database (the live rooms do: see ``hub.py``). ``status()`` says ``up``, ``connecting``
or ``down`` (for ``/healthz``). State changes are logged once each, not once per failed read.

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
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

QUEUE_SIZE = 1_000  # per local subscriber
PG_MAX_PAYLOAD = 7_900  # bytes; PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more
_CHANNEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789:_-.")
CONNECT_TIMEOUT = 3.0  # seconds for one connection attempt (connect, subscribe everything)
START_WAIT = 3.0  # start(): how long to wait for the first connection before serving degraded
PUBLISH_TIMEOUT = 2.0  # one publish; longer: the connection is given up and made again
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
READ_SLICE = 0.25  # seconds a read waits before looking whether it should stop


class BrokerError(RuntimeError):
    """The broker cannot take this channel or message, or is not running."""


class BrokerUnavailable(BrokerError):
    """The broker is not connected now (it reconnects by itself); nothing was sent."""


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

    kind = "memory"

    def __init__(self) -> None:
        self._local: dict[str, set[Subscription]] = {}
        self._running = False
        self._reconnect_callbacks: list[Callable[[], None]] = []

    @property
    def connected(self) -> bool:
        """Messages published now reach the other processes."""
        return self._running

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: ``{"kind", "state": up|connecting|down|stopped, ...}``."""
        return {"kind": self.kind, "state": "up" if self._running else "stopped"}

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) every time the broker is connected again
        after a gap, and after the first connection of a broker that started disconnected:
        messages of that gap are lost and must be caught up from elsewhere."""
        self._reconnect_callbacks.append(callback)

    async def start(self) -> None:
        """Connect (idempotent)."""
        self._running = True

    async def wait_connected(self, timeout: float) -> None:  # noqa: ARG002 - at once here
        """Return once connected; :class:`BrokerUnavailable` after ``timeout`` seconds."""
        if not self._running:
            raise BrokerError("the broker is not started")

    async def stop(self) -> None:
        """Disconnect; local subscribers stop receiving."""
        self._running = False
        self._local.clear()

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every subscriber of ``channel``, in every process.

        Raises :class:`BrokerUnavailable` at once while the broker is disconnected."""
        check_channel(channel)
        if not self._running:
            raise BrokerError("the broker is not started")
        await self._publish(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Receive the channel's messages while the context is open. Never waits for the
        network: while disconnected, the channel is subscribed upstream once connected."""
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


class NetworkBroker(Broker):
    """A broker over connections that can fail: the supervisor that keeps them (see the
    module's doc). Subclasses say how to connect, subscribe, read and publish."""

    def __init__(self) -> None:
        super().__init__()
        self.state = "stopped"  # connecting | up | down | stopped
        self.since = time.monotonic()  # of the current state
        self.reconnects = 0
        self.last_error: str | None = None
        self._upstream: set[str] = set()  # channels subscribed on the current connection
        self._up = asyncio.Event()
        self._broken: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ever_up = False

    @property
    def connected(self) -> bool:
        return self.state == "up"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "state": self.state,
                               "for_s": round(time.monotonic() - self.since, 1),
                               "reconnects": self.reconnects}
        if self.state != "up" and self.last_error:
            out["error"] = self.last_error
        return out

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._set_state("connecting")
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"summit-broker-{self.kind}")
        with contextlib.suppress(BrokerUnavailable):
            await self.wait_connected(START_WAIT)

    async def wait_connected(self, timeout: float) -> None:
        await super().wait_connected(timeout)
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the {self.kind} broker is not connected: {self.last_error}") from None

    async def stop(self) -> None:
        await super().stop()
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()
        self._set_state("stopped")

    async def publish(self, channel: str, message: str) -> None:
        check_channel(channel)
        if not self._running:
            raise BrokerError("the broker is not started")
        if self.state != "up":
            raise BrokerUnavailable(f"the {self.kind} broker is {self.state}")
        try:
            await asyncio.wait_for(self._publish(channel, message), PUBLISH_TIMEOUT)
        except BrokerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: reconnect, tell the caller
            self._break(exc)
            raise BrokerUnavailable(f"the {self.kind} broker failed: {exc!r}") from exc

    async def _listen(self, channel: str) -> None:
        if self.state != "up":
            return  # subscribed by the supervisor once connected
        try:
            await asyncio.wait_for(self._subscribe(channel), PUBLISH_TIMEOUT)
            self._upstream.add(channel)
        except Exception as exc:  # noqa: BLE001 - reconnect (which subscribes everything)
            self._break(exc)

    async def _unlisten(self, channel: str) -> None:
        if self.state != "up" or channel not in self._upstream:
            return
        self._upstream.discard(channel)
        try:
            await asyncio.wait_for(self._unsubscribe(channel), PUBLISH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            self._break(exc)

    # -- the supervisor -------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.since = time.monotonic()
        if state == "up":
            self._up.set()
        else:
            self._up.clear()

    def _break(self, exc: BaseException) -> None:
        """The connection failed: the supervisor closes it and connects again."""
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.state == "up":
            self._set_state("down")
            log.warning("summit.broker.down", broker=self.kind, error=self.last_error)
        if self._broken is not None:
            self._broken.set()

    async def _supervise(self) -> None:
        delay = BACKOFF_FIRST
        while self._running:
            self._broken = asyncio.Event()
            self._upstream = set()
            try:
                await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
                for name in list(self._local):
                    await asyncio.wait_for(self._subscribe(name), CONNECT_TIMEOUT)
                    self._upstream.add(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again after a while
                self._break(exc)
                if self.state == "connecting" and delay == BACKOFF_FIRST:
                    log.warning("summit.broker.unavailable", broker=self.kind,
                                error=self.last_error)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            down_for = time.monotonic() - self.since
            self._set_state("up")
            delay = BACKOFF_FIRST
            if self._ever_up:
                self.reconnects += 1
            log.info("summit.broker.up", broker=self.kind, after_s=round(down_for, 1),
                     reconnects=self.reconnects)
            if self._ever_up or self._local:
                # Anything published meanwhile is lost to this process: catch up.
                for callback in list(self._reconnect_callbacks):
                    try:
                        callback()
                    except Exception:  # noqa: BLE001 - one callback must not stop the others
                        log.exception("summit.broker.reconnect_callback_failed")
            self._ever_up = True
            try:
                # Channels subscribed while connecting are still missing upstream.
                for name in list(self._local):
                    if name not in self._upstream:
                        await asyncio.wait_for(self._subscribe(name), CONNECT_TIMEOUT)
                        self._upstream.add(name)
                await self._read(self._broken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect
                self._break(exc)
            self._break(self._broken_reason())
            await self._close()
            await asyncio.sleep(BACKOFF_FIRST)

    def _broken_reason(self) -> BaseException:
        return ConnectionError(self.last_error or "connection lost")

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _subscribe(self, channel: str) -> None: ...

    @abc.abstractmethod
    async def _unsubscribe(self, channel: str) -> None: ...

    @abc.abstractmethod
    async def _read(self, broken: asyncio.Event) -> None:
        """Deliver what arrives until ``broken`` is set or the connection fails (raise)."""


class RedisBroker(NetworkBroker):
    """Redis pub/sub: one connection publishes, one pub/sub connection listens.

    Redis channels are global to the server (not per database number), so deployments that
    share one Redis set a namespace in the URL, ``redis://host:6379/0?namespace=shanju-prod``:
    every channel is then ``<namespace>:<channel>`` on the wire.
    """

    kind = "redis"
    HEARTBEAT = "shanju-broker-heartbeat"  # always subscribed: the read always has a socket

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

    async def _connect(self) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - only when Redis is configured
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        # No retries inside the client: the supervisor decides when to try again.
        self._redis = aioredis.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        await self._redis.ping()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.prefix + self.HEARTBEAT)

    async def _close(self) -> None:
        pubsub, client = self._pubsub, self._redis
        self._pubsub = self._redis = None
        for thing in (pubsub, client):
            if thing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(thing.aclose(), 1.0)

    async def _publish(self, channel: str, message: str) -> None:
        await self._redis.publish(self.prefix + channel, message)

    async def _subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(self.prefix + channel)

    async def _unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(self.prefix + channel)

    async def _read(self, broken: asyncio.Event) -> None:
        pubsub = self._pubsub
        cut = len(self.prefix)
        while self._running and not broken.is_set():
            msg = await pubsub.get_message(timeout=READ_SLICE)
            if msg is not None and msg.get("type") == "message":
                self.deliver(str(msg["channel"])[cut:], str(msg["data"]))


class PostgresBroker(NetworkBroker):
    """PostgreSQL LISTEN/NOTIFY: one autocommit connection listens, another notifies."""

    kind = "postgresql"

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self.conninfo = conninfo
        self._listener: Any = None
        self._notifier: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        import psycopg  # noqa: PLC0415

        timeout = max(1, int(CONNECT_TIMEOUT))
        self._listener = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=timeout)
        self._notifier = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=timeout)

    async def _close(self) -> None:
        conns = (self._listener, self._notifier)
        self._listener = self._notifier = None
        for conn in conns:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 1.0)

    async def _publish(self, channel: str, message: str) -> None:
        if len(message.encode()) > PG_MAX_PAYLOAD:
            raise BrokerError(f"a PostgreSQL notification carries at most {PG_MAX_PAYLOAD} bytes")
        async with self._lock:
            await self._notifier.execute("SELECT pg_notify(%s, %s)", (channel, message))

    async def _subscribe(self, channel: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        await self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def _unsubscribe(self, channel: str) -> None:
        from psycopg import sql  # noqa: PLC0415

        await self._listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))

    async def _read(self, broken: asyncio.Event) -> None:
        listener = self._listener
        while self._running and not broken.is_set():
            # Short slices: LISTEN and UNLISTEN wait for the connection between two.
            async for note in listener.notifies(timeout=READ_SLICE):
                self.deliver(note.channel, note.payload)
            if listener.closed or listener.broken:
                raise ConnectionError("the listening connection was closed")


def broker_from_url(url: str) -> Broker:
    """``memory://``, ``redis://host:port/db`` or ``postgresql://…`` → the broker for it."""
    if url in ("", "memory://"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://")):
        return RedisBroker(url)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresBroker(url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise BrokerError(f"no broker for {url!r} (memory://, redis://, postgresql://)")
