"""The benchmarks measure the real flows and refuse to report a run that broke the money."""

from __future__ import annotations

from shanju import bench
from shanju.core.db import Database


def test_donation_benchmark_gives_every_gift_exactly_once(db: Database) -> None:
    report = bench.bench_donations(db, donations=40, workers=3)
    assert report["completed"] == 40 and report["errors"] == 0
    assert report["ledger_ok"] is True
    assert report["project_fund_fen"] == sum(100 + n % 9_900 for n in range(14)) + 2 * sum(
        100 + n % 9_900 for n in range(13))
    assert report["donations_per_second"] > 0
    assert set(report["credit_latency"]) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}


def test_percentiles() -> None:
    result = bench.percentiles([0.001 * i for i in range(1, 101)])
    assert result["p50_ms"] == 51.0 and result["max_ms"] == 100.0
    assert bench.percentiles([]) == {}
