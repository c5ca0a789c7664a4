"""``shanju bench http`` runs end to end (a real server, client processes, invariants)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shanju.cli import app


@pytest.mark.slow
def test_bench_http_reports_every_gift_credited_once_on_sqlite() -> None:
    result = CliRunner().invoke(app, ["bench", "http", "--donations", "300", "--clients", "2",
                                      "--connections", "4", "--port", "0", "--json"])
    assert result.exit_code == 0, (result.output[-2000:], repr(result.exception))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["db"] == "sqlite" and report["donations"] == 300
    assert report["errors"] == 0 and report["ok"] is True
    assert report["invariants"]["exactly_once"] and report["invariants"]["ledger_balanced"]
    assert report["invariants"]["log_equals_ledger"]
    assert report["invariants"]["gifts"] == 300
    assert report["p50_ms"] <= report["p99_ms"]
