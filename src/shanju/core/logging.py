"""Structured logging with structlog (JSON lines in production, readable in development)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog


class _StandardError:
    """Standard error as it is at each write (a test runner may swap ``sys.stderr``)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR: TextIO = _StandardError()  # type: ignore[assignment]
# Loggers that say INFO for every request they make ("HTTP Request: GET …"; the test client
# is httpx2's, the names without 2 are the upstream's): left at WARNING while a command's
# output is a report.
CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
_reporting = False  # a command's standard output is its report: every log line to stderr


def configure_logging(*, json: bool = False, level: int = logging.INFO,
                      stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging once; ``stream``: where the
    lines go (standard output by default; a command whose output is a report logs to
    standard error, and while :func:`report_on_stdout` holds, so does every caller)."""
    if stream is None and _reporting:
        stream = STDERR
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


@contextmanager
def report_on_stdout() -> Iterator[None]:
    """While it holds, standard output is the command's report alone (``shanju bench …``
    prints one JSON object): structlog's lines go to standard error, at once and whenever
    logging is configured again (``create_app`` does, with no stream), and
    :data:`CHATTY_LOGGERS` say warnings only. The standard library's logging is left as it is
    (its lines go to standard error anyway). Afterwards the earlier configuration and levels
    come back."""
    global _reporting  # noqa: PLW0603 - one switch for every later configure_logging
    saved_config = structlog.get_config()
    saved_levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    was_reporting, _reporting = _reporting, True
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(STDERR))
    try:
        yield
    finally:
        _reporting = was_reporting
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.configure(**saved_config)


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
