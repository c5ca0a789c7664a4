"""Repeated problems are logged once per kind per interval, with how many were left out."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shanju.core import logging as shanju_logging
from shanju.core.logging import Throttled


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))


def test_a_burst_is_one_line_per_kind_then_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(shanju_logging.time, "monotonic", lambda: now[0])
    rec = Recorder()
    problems = Throttled(rec, interval=10.0)
    for _ in range(500):  # an outage: every batch fails
        problems.warning("summit.writer.write_failed", error="OperationalError")
        problems.error("summit.hub.tick_failed")
    assert [(level, event) for level, event, _ in rec.lines] == [
        ("warning", "summit.writer.write_failed"), ("error", "summit.hub.tick_failed")]
    assert "repeats" not in rec.lines[0][2]
    now[0] += 10.5
    problems.warning("summit.writer.write_failed", error="OperationalError")
    assert rec.lines[-1] == ("warning", "summit.writer.write_failed",
                             {"repeats": 499, "error": "OperationalError"})
    now[0] += 0.1
    problems.warning("summit.writer.write_failed", error="OperationalError")
    assert len(rec.lines) == 3


def test_the_interval_is_real_time() -> None:
    rec = Recorder()
    problems = Throttled(rec, interval=0.05)
    problems.warning("a")
    problems.warning("a")
    time.sleep(0.06)
    problems.warning("a")
    assert [f for _, _, f in rec.lines] == [{}, {"repeats": 1}]
