"""Structured logging with structlog (JSON lines in production, readable in development)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

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
