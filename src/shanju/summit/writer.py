"""Group commit for the live rooms: one writer per process for every posting frame.

Every frame that stores something (chat, ask, upvote, vote, and moderators' actions) from
every connection of the process is queued here. One asyncio task takes everything queued (up
to :data:`MAX_BATCH` actions) and runs ONE write transaction in a worker thread, applying the
actions in the order they came, each inside a SAVEPOINT: an action refused by the domain (a
:class:`~shanju.core.errors.DomainError`: ``already_voted``, ``wrong_status``,
``not_found``...) rolls back only itself and gets its own error, the others commit. After the
commit the writer publishes what the batch changed (one broker message per channel, the
events in order) and then answers each action. The next batch starts as soon as this one is
done, but at most every :data:`BATCH_INTERVAL` seconds: at low load an action is written at
once, under load the actions that arrive while a batch is written go together in the next.

If the batch's transaction fails (a database error: lock timeout, deadlock, lost
connection), nothing of it was committed and each action is retried alone, in its own
transaction (a batch of one too), so none is lost or doubled and each gets its own answer.

Each transaction also numbers what it changed: every channel it touched gets its next
sequence number (``live_service.stamp``), carried by the channel's message. The ``publish``
callback (``LiveHubs.deliver``) hands the message to this process's rooms at once and then
to the broker; if the broker fails, the other processes catch up from the database by those
numbers (``hub.py``). An acknowledged action is stored, and what is stored is shown.

When the process stops, the writer stops taking actions (they get :class:`WriterClosed`,
which the gateway answers with ``server_busy``), writes what is queued (for up to
:data:`DRAIN_SECONDS`) and answers the rest with :class:`WriterClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import structlog

from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.core.logging import Throttled
from shanju.summit import live_service
from shanju.summit.live_service import Outcome

log = structlog.get_logger(__name__)

MAX_BATCH = 500  # actions per transaction
BATCH_INTERVAL = 0.02  # seconds between the starts of two batches, at least
DRAIN_SECONDS = 5.0  # on stop: how long what is queued may still be written

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
Result = Outcome | BaseException


class WriterClosed(Exception):
    """The writer is stopping or stopped; the action was not stored."""


@dataclass(slots=True)
class _Action:
    fn: Callable[..., Outcome]
    kwargs: dict[str, Any]
    future: asyncio.Future[Result]


def merge_messages(outcomes: list[Outcome]) -> list[tuple[str, dict[str, Any]]]:
    """The broker messages of several outcomes, one per channel: each channel's lists
    (``e``, ``m``, ``v``, ``x``) concatenated in the outcomes' order, channels in the order
    they first appear."""
    merged: dict[str, dict[str, list[Any]]] = {}
    for outcome in outcomes:
        for key, msg in outcome.messages:
            if not msg:
                continue
            into = merged.setdefault(key, {})
            for field, items in msg.items():
                into.setdefault(field, []).extend(items)
    return list(merged.items())


class LiveWriter:
    """This process's writer for the live rooms (see the module's doc).

    ``stats``: ``transactions`` opened (a batch, or one action alone), ``batches`` taken
    from the queue, ``actions`` answered, ``fallbacks`` (batches retried one by one),
    ``largest`` batch.
    """

    def __init__(self, db: Database, publish: Publish, *,
                 limiter: anyio.CapacityLimiter | None = None, max_batch: int = MAX_BATCH,
                 interval: float = BATCH_INTERVAL, drain_seconds: float = DRAIN_SECONDS) -> None:
        self.db = db
        self.publish = publish
        self.limiter = limiter
        self.max_batch = max_batch
        self.interval = interval
        self.drain_seconds = drain_seconds
        self.stats = {"transactions": 0, "batches": 0, "actions": 0, "fallbacks": 0,
                      "largest": 0}
        self._queue: deque[_Action] = deque()
        self._inflight: list[_Action] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._abandon = False
        self.problems = Throttled(log)  # a database outage: a line per kind per interval

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the writer task on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._wake = asyncio.Event()
        self._accepting = True
        self._abandon = False
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="summit-live-writer")

    async def stop(self) -> None:
        """Stop taking actions; write what is queued (for up to ``drain_seconds``), answer
        the rest with :class:`WriterClosed`."""
        task = self._task
        if task is None:
            return
        self._accepting = False
        if self._wake is not None:
            self._wake.set()
        done, _ = await asyncio.wait([task], timeout=self.drain_seconds)
        if not done:
            self._abandon = True
            with contextlib.suppress(asyncio.CancelledError):
                await task  # after the batch being written
        self._task = None
        self._answer_closed()
        if self.stats["actions"]:
            log.info("summit.writer.stopped", **self.stats)

    async def submit(self, fn: Callable[..., Outcome], kwargs: dict[str, Any]) -> Outcome:
        """Queue ``fn(session, **kwargs)``; return its outcome once committed and published.

        Raises the action's :class:`DomainError` if it was refused, :class:`WriterClosed` if
        the writer is stopping, or the database's error if the action could not be stored.
        A cancelled caller (the server stopping) gets :class:`WriterClosed` if its action
        was not taken yet (then it is not written), else the action's real answer.
        """
        if not self._accepting or self._wake is None:
            raise WriterClosed("the live writer is not running")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        action = _Action(fn, kwargs, future)
        self._queue.append(action)
        self._wake.set()
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The server is stopping (uvicorn cancels what outlives its graceful shutdown):
            # an action not yet taken is not written and answered as refused; one being
            # written is awaited, so that its answer is the truth.
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 1:
                task.uncancel()
            else:  # pragma: no cover - cancelled more than once: give up waiting
                raise
            if action in self._queue:
                self._queue.remove(action)
                raise WriterClosed("the server is stopping; try again") from None
            result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    # -- the task -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            # Normally empty; not so if the task is cancelled (the event loop closing without
            # stop()): nobody may be left waiting.
            for action in self._inflight:
                _resolve(action, WriterClosed("the server is stopping; try again"))
            self._inflight = []
            self._answer_closed()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        if wake is None:  # pragma: no cover - start() sets it before creating the task
            return
        last_start = -self.interval
        while True:
            if self._abandon:
                self._answer_closed()
                return
            if not self._queue:
                if not self._accepting:
                    return
                wake.clear()
                await wake.wait()
                continue
            wait = last_start + self.interval - loop.time()
            if wait > 0 and self._accepting:
                await asyncio.sleep(wait)  # more arrive meanwhile: they go together
            batch = [self._queue.popleft()
                     for _ in range(min(self.max_batch, len(self._queue)))]
            last_start = loop.time()
            self._inflight = batch
            try:
                await self._write(batch)
            except Exception:  # noqa: BLE001 - the writer must keep writing
                self.problems.error("summit.writer.batch_failed", actions=len(batch),
                                    exc_info=True)
                for action in batch:
                    _resolve(action, RuntimeError("the live writer failed"))
            self._inflight = []

    async def _write(self, batch: list[_Action]) -> None:
        self.stats["batches"] += 1
        self.stats["largest"] = max(self.stats["largest"], len(batch))
        calls = [(a.fn, a.kwargs) for a in batch]
        results: list[Result]
        messages: list[tuple[str, dict[str, Any]]] = []
        try:
            results, messages = await anyio.to_thread.run_sync(self._apply, calls,
                                                               limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - retried action by action (even one alone)
            # Nothing of the transaction was committed. A lost connection or a lock timeout
            # is usually gone by the next transaction (the pool replaces a dead connection).
            self.stats["fallbacks"] += 1
            self.problems.warning("summit.writer.batch_retried_alone", actions=len(batch),
                                  error=repr(exc))
            results = []
            for call in calls:
                try:
                    one, stamped = await anyio.to_thread.run_sync(
                        self._apply, [call], limiter=self.limiter)
                    results.extend(one)
                    messages.extend(stamped)
                except Exception as failure:  # noqa: BLE001 - this action's own failure
                    self.problems.warning("summit.writer.write_failed",
                                          error=repr(failure))
                    results.append(failure)
        for key, msg in messages:
            # Never raises: this process's rooms get it at once, the others through the
            # broker or, if that fails, from the database (hub.py).
            await self.publish(key, msg)
        for action, result in zip(batch, results, strict=True):
            _resolve(action, result)
        self.stats["actions"] += len(batch)

    def _apply(
        self, calls: list[tuple[Callable[..., Outcome], dict[str, Any]]]
    ) -> tuple[list[Result], list[tuple[str, dict[str, Any]]]]:
        """In a worker thread: one transaction for ``calls``; returns each call's result and
        the broker messages of what was stored, numbered in the same transaction
        (``live_service.stamp``). A single action runs without a savepoint (its error rolls
        back the transaction); several run each in its own, and a DomainError is that
        action's result. Any other error fails the whole transaction."""
        results: list[Result] = []
        self.stats["transactions"] += 1
        if len(calls) == 1:
            fn, kwargs = calls[0]
            try:
                with self.db.transaction(write=True) as session:
                    outcome = fn(session, **kwargs)
                    messages = merge_messages([outcome])
                    live_service.stamp(session, messages)
                    results.append(outcome)
            except DomainError as exc:
                return [exc], []  # rolled back: nothing committed
            return results, messages
        with self.db.transaction(write=True) as session:
            for fn, kwargs in calls:
                try:
                    with session.begin_nested():
                        results.append(fn(session, **kwargs))
                except DomainError as exc:
                    results.append(exc)
            messages = merge_messages([r for r in results if isinstance(r, Outcome)])
            live_service.stamp(session, messages)
        return results, messages

    def _answer_closed(self) -> None:
        while self._queue:
            _resolve(self._queue.popleft(),
                     WriterClosed("the server is stopping; try again"))


def _resolve(action: _Action, result: Result) -> None:
    if not action.future.done():
        action.future.set_result(result)
