"""``shanju bench giving-day --writers K``: K escrow writer processes share one opening."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shanju import cli

runner = CliRunner()


@pytest.mark.slow
def test_two_escrow_writer_processes_keep_every_invariant(pg_url: str) -> None:
    # pg_url: skips (fails in CI) without PostgreSQL; the bench makes its own database.
    result = runner.invoke(cli.app, ["bench", "giving-day", "--db", "postgresql",
                                     "--donations", "1500", "--baseline", "50",
                                     "--writers", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["writers"] == 2 and report["writer_engine"] == "escrow"
    assert all(report["invariants"].values()), report["problems"]
    assert report["errors"] == 0 and report["problems"] == []
    assert report["donations"] == 1500
    writers = report["per_writer"]
    assert [w["writer"] for w in writers] == [0, 1]
    # Every submission went to exactly one writer, each credited its own share once.
    assert sum(w["submissions"] for w in writers) == report["submissions"]
    assert sum(w["donations"] for w in writers) == 1500
    assert all(w["donations"] > 0 and w["donations_per_s"] > 0 for w in writers)
    assert report["log_drain_s"] is not None
    # CPU per gift: the writers' own (summed over the processes) and the database server's.
    assert report["writer_cpu_us_per_gift"] > 0
    assert report["database_cpu_us_per_gift"] is None or report["database_cpu_us_per_gift"] > 0
    assert report["machine_cpu_us_per_gift"] is None or report["machine_cpu_us_per_gift"] > 0


def test_several_writers_on_sqlite_are_refused_with_a_reason() -> None:
    result = runner.invoke(cli.app, ["bench", "giving-day", "--db", "sqlite",
                                     "--donations", "10", "--writers", "2", "--json"])
    assert result.exit_code == 2
    assert "SQLite takes one writer process" in result.output
