"""The benchmarks measure the real flows and refuse to report a run that broke the money;
their standard output is the JSON report alone."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from shanju.bench import common, donations, pages
from shanju.core.db import Database
from shanju.core.logging import CHATTY_LOGGERS, configure_logging, report_on_stdout
from shanju.core.migrations import create_schema
from tests.factories import make_org, make_project

SHANJU = Path(sys.executable).with_name("shanju")  # .venv/bin/shanju


def test_donation_benchmark_gives_every_gift_exactly_once(db: Database) -> None:
    report = donations.bench_donations(db, donations=40, workers=3)
    assert report["completed"] == 40 and report["errors"] == 0
    assert report["ledger_ok"] is True
    assert report["project_fund_fen"] == sum(100 + n % 9_900 for n in range(14)) + 2 * sum(
        100 + n % 9_900 for n in range(13))
    assert report["donations_per_second"] > 0
    assert set(report["credit_latency"]) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}


def test_percentiles() -> None:
    result = common.percentiles([0.001 * i for i in range(1, 101)])
    assert result["p50_ms"] == 51.0 and result["max_ms"] == 100.0
    assert common.percentiles([]) == {}


def test_while_a_report_is_on_stdout_logs_go_to_stderr(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Even when logging is configured again with no stream (``create_app`` does); the HTTP
    clients' per-request lines are left out; afterwards all is as it was."""
    before = structlog.get_config()
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    with report_on_stdout():
        configure_logging()
        structlog.get_logger("bench-test").info("bench.test.event")
        assert not any(logging.getLogger(name).isEnabledFor(logging.INFO)
                       for name in CHATTY_LOGGERS)
    captured = capsys.readouterr()
    assert "bench.test.event" in captured.err and captured.out == ""
    assert structlog.get_config() == before
    assert {name: logging.getLogger(name).level for name in CHATTY_LOGGERS} == levels


def test_bench_pages_prints_only_its_json_report(tmp_path: Path) -> None:
    """``shanju bench pages > out.json`` is valid JSON: the app's log lines (engine,
    checkpointer) go to stderr, and the test client's "HTTP Request" lines nowhere. A small
    database of its own, so the demo is not seeded."""
    path = tmp_path / "pages.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        create_schema(database)
        with database.transaction() as session:
            make_project(session, org=make_org(session))
    finally:
        database.dispose()
    done = subprocess.run(  # noqa: S603 - our own command
        [str(SHANJU), "bench", "pages", "--requests", "2", "--db", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["benchmark"] == "pages"
    # Every page but the giving day's (this database has none) was timed.
    assert set(report["pages"]) == set(pages.PAGES) - {"/campaigns/{campaign}"}
    assert set(report["within_targets"]) == set(pages.TARGETED)
    assert report["targets"] == {"p50_ms": 50.0, "p99_ms": 300.0}
    assert "campaigns.engine.started" in done.stderr
    assert "HTTP Request" not in done.stderr
