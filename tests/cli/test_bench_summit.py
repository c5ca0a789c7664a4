"""``shanju bench summit`` end to end: real server processes, client processes, the report.

The two-server run meets through Redis (127.0.0.1:6379, or ``SHANJU_TEST_REDIS_URL``), which
is mandatory in CI and skipped with the reason outside it when unreachable.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from shanju.bench import summit as bench
from shanju.cli import app
from tests.conftest import IN_CI
from tests.summit.test_broker import redis_url_of_its_own

REDIS_URL = os.environ.get("SHANJU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = {"clients", "servers", "connected", "failed", "p50_ms", "p99_ms", "server_rss_mib",
            "kib_per_connection", "messages_sent", "messages_received", "duration_s",
            "machine"}
# A short, busy run (every client chats every 4 s, asks every 8 s, upvotes every 6 s on
# average), well under the rate limit (a burst of 5, then 1 a second).
SMALL = ["--duration", "4", "--chat-every", "4", "--ask-every", "8", "--upvote-every", "6",
         "--json"]


def _report(args: list[str]) -> dict[str, object]:
    result = CliRunner().invoke(app, ["bench", "summit", *args])
    assert result.exit_code == 0, (result.output[-3000:], repr(result.exception))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


def _check(report: dict[str, object], *, clients: int, servers: int) -> None:
    assert REQUIRED <= set(report)
    assert report["clients"] == clients and report["servers"] == servers
    assert report["connected"] == clients and report["failed"] == 0, report["failures"]
    assert report["ok"] is True
    messages = report["messages"]
    assert isinstance(messages, dict) and messages["chat"] > 0
    # Every chat message shown reached every client (within the drain after the load).
    assert report["chat_visible"] == messages["chat"]
    assert report["messages_received"] == report["deliveries_expected"] > 0
    assert report["latency_samples"] == report["messages_received"]
    assert 0 <= report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]  # type: ignore[operator]
    assert report["server_rss_mib"] >= report["server_rss_before_mib"] > 0  # type: ignore[operator]
    assert report["errors"] == {}


@pytest.mark.slow
def test_a_small_run_on_one_server_connects_everyone_and_delivers_every_message() -> None:
    report = _report(["--clients", "20", *SMALL])
    _check(report, clients=20, servers=1)
    assert report["broker"] == "memory" and report["client_processes"] == 1


@pytest.mark.slow
def test_two_servers_meet_through_redis() -> None:
    problem = bench._redis_reachable(REDIS_URL)
    if problem:
        if IN_CI:
            pytest.fail(f"Redis is mandatory in CI and unreachable: {problem}")
        pytest.skip(f"Redis unreachable: {problem}")
    # Three client processes of 8, each spreading its clients over both servers.
    report = _report(["--clients", "24", "--servers", "2", "--clients-per-process", "8",
                      "--broker-url", redis_url_of_its_own(), *SMALL])
    _check(report, clients=24, servers=2)
    assert report["broker"] == "redis" and report["client_processes"] == 3


def test_the_latency_percentiles_come_from_the_merged_histogram() -> None:
    histogram = Counter({10: 50, 20: 49, 900: 1})
    assert bench._percentile(histogram, 0.50) == 10.0
    assert bench._percentile(histogram, 0.99) == 20.0
    assert bench._percentile(histogram, 1.0) == 900.0
    assert bench._percentile(Counter(), 0.5) is None


def test_several_servers_need_a_shared_broker() -> None:
    result = CliRunner().invoke(app, ["bench", "summit", "--clients", "2", "--servers", "2",
                                      "--broker-url", "memory://", "--json"])
    assert result.exit_code == 1
    assert "shared broker" in result.output


def test_an_unreachable_redis_is_reported_before_anything_starts() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    assert urlsplit(url).port == port
    result = CliRunner().invoke(app, ["bench", "summit", "--clients", "2", "--servers", "2",
                                      "--broker-url", url, "--json"])
    assert result.exit_code == 1
    assert "not reachable" in result.output
