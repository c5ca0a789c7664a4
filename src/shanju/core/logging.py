"""Structured logging with structlog (JSON lines in production, readable in development)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import structlog


class _StandardError:
    """Standard error as it is at each write (a test runner may swap ``sys.stderr``)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR: TextIO = _StandardError()  # type: ignore[assignment]


def configure_logging(*, json: bool = False, level: int = logging.INFO,
                      stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging once; ``stream``: where the
    lines go (standard output by default; a command whose output is a report logs to
    standard error)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, format="%(message)s", stream=stream)


class Throttled:
    """Repeated problems, logged once per kind per ``interval`` seconds with a count.

    An outage makes the same failure happen hundreds of times a second (every batch, every
    read); logging each buries the log. The first occurrence of an event is logged at once;
    the repeats within ``interval`` are counted and the next line says how many were left
    out (``repeats``)::

        problems = Throttled(log)
        problems.warning("summit.writer.write_failed", error=repr(exc))
    """

    def __init__(self, logger: Any, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}  # event -> (last logged, left out)

    def _let(self, event: str) -> int | None:
        now = time.monotonic()
        last = self._seen.get(event)
        if last is not None and now - last[0] < self.interval:
            self._seen[event] = (last[0], last[1] + 1)
            return None
        self._seen[event] = (now, 0)
        return 0 if last is None else last[1]

    def warning(self, event: str, **fields: Any) -> None:
        repeats = self._let(event)
        if repeats is not None:
            self.logger.warning(event, **({"repeats": repeats} if repeats else {}), **fields)

    def error(self, event: str, **fields: Any) -> None:
        repeats = self._let(event)
        if repeats is not None:
            self.logger.error(event, **({"repeats": repeats} if repeats else {}), **fields)
