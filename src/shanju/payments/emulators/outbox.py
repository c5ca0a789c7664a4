"""How an emulated provider sends its callbacks: at least once, and as badly as a test asks.

A real provider delivers notifications over the network, late, more than once, out of order,
or never (then the merchant's order query must find the payment). :class:`Outbox` does the
same on purpose: every callback goes through one :class:`Faults` plan —

* ``delay`` seconds before sending;
* ``duplicates`` extra copies of the same notification (same id, same body);
* ``hold``: keep callbacks until :meth:`Outbox.release` (``reverse=True`` reorders them);
* ``drop``: never send (the provider "lost" it; the order query is the only way to learn).

Callbacks that are sent are POSTed from a background thread with the provider's real headers
and body; a non-2xx answer is retried like the providers do (a few times, backing off), and
every attempt is recorded in :attr:`Outbox.log` for tests to read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import requests

Post = Callable[[str, bytes, Mapping[str, str]], int]
RETRY_DELAYS = (0.2, 1.0, 3.0)  # seconds between attempts after a non-2xx answer


def http_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST a callback as a provider does; the status code, or 0 when nothing answered."""
    try:
        return requests.post(url, data=body, headers=dict(headers), timeout=10).status_code
    except requests.RequestException:
        return 0


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong with the next callbacks (see the module's docstring)."""

    delay: float = 0.0
    duplicates: int = 0
    hold: bool = False
    drop: bool = False


@dataclass(slots=True)
class Callback:
    """One notification to deliver."""

    url: str
    body: bytes
    headers: dict[str, str]
    kind: str = ""       # e.g. "payment" or "refund", for tests and the log
    ref: str = ""        # e.g. the out_trade_no it is about
    attempts: list[int] = field(default_factory=list)  # status codes answered, in order


class Outbox:
    """Deliver an emulator's callbacks according to its current :class:`Faults`."""

    def __init__(self, post: Post | None = None, *, retry_delays: tuple[float, ...] = RETRY_DELAYS
                 ) -> None:
        self._post = post or http_post
        self._retry_delays = retry_delays
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self.faults = Faults()
        self.held: list[Callback] = []
        self.dropped: list[Callback] = []
        self.log: list[Callback] = []

    def set_faults(self, **changes: object) -> Faults:
        """Change the plan for the callbacks sent from now on (``set_faults(drop=True)``)."""
        self.faults = replace(Faults(), **changes)  # type: ignore[arg-type]
        return self.faults

    def send(self, callback: Callback) -> None:
        """Deliver ``callback`` under the current faults (returns at once)."""
        faults = self.faults
        with self._lock:
            if faults.drop:
                self.dropped.append(callback)
                return
            if faults.hold:
                self.held.append(callback)
                return
        for _ in range(1 + max(0, faults.duplicates)):
            self._start(callback, delay=faults.delay)

    def release(self, *, reverse: bool = False) -> int:
        """Send every held callback now (in reverse order if asked); how many were held."""
        with self._lock:
            held, self.held = self.held, []
        for callback in reversed(held) if reverse else held:
            self._start(callback, delay=0.0)
        return len(held)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is being sent (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _start(self, callback: Callback, *, delay: float) -> None:
        copy = Callback(callback.url, callback.body, dict(callback.headers), callback.kind,
                        callback.ref)
        with self._lock:
            self._in_flight += 1
            self.log.append(copy)
        threading.Thread(target=self._deliver, args=(copy, delay), daemon=True,
                         name="emulator-callback").start()

    def _deliver(self, callback: Callback, delay: float) -> None:
        try:
            if delay > 0:
                time.sleep(delay)
            for pause in (*self._retry_delays, None):
                status = self._post(callback.url, callback.body, callback.headers)
                callback.attempts.append(status)
                if 200 <= status < 300 or pause is None:
                    return
                time.sleep(pause)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
