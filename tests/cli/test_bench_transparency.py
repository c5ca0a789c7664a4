"""``shanju bench transparency``: the report's shape and invariants, and checks that can fail."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from shanju import cli
from shanju.bench import transparency as bench
from shanju.transparency import leaves, merkle

runner = CliRunner()
SMALL = ["--leaves", "2000", "--pymerkle-leaves", "2000", "--db-leaves", "2000",
         "--proofs", "100", "--db-proofs", "40"]


def _run(*args: str) -> dict[str, object]:
    result = runner.invoke(cli.app, ["bench", "transparency", *args])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _timing(block: object) -> None:
    assert isinstance(block, dict)
    assert block["n"] > 0 and 0 < block["p50_us"] <= block["p99_us"] <= block["max_us"]
    assert block["mean_us"] > 0


@pytest.mark.slow
def test_a_small_sqlite_run_beside_pymerkle() -> None:
    report = _run(*SMALL, "--db", "sqlite", "--json")
    assert report["benchmark"] == "transparency" and report["leaves"] == 2000
    assert report["ok"] is True
    assert report["invariants"] == {
        "inclusion_proofs_verify": True, "consistency_proofs_verify": True,
        "roots_equal_pymerkle": True, "inclusion_proofs_equal_pymerkle": True,
        "pymerkle_comparison_proofs_verify": True, "db_head_equals_memory": True,
        "db_proofs_equal_memory": True, "db_proofs_verify": True}
    params = report["parameters"]
    assert isinstance(params, dict)
    assert params["db"] == "sqlite" and params["db_leaves"] == 2000 and params["proofs"] == 100

    ours = report["ours"]
    assert isinstance(ours, dict)
    assert ours["append"]["leaves_per_s"] > 0 and 200 <= ours["leaf_bytes_mean"] <= 330
    assert ours["memory_bytes"] == 32 * (2 * 2000 - (2000).bit_count())  # every stored node
    for kind in ("inclusion", "consistency"):
        _timing(ours[kind]["generate"])
        _timing(ours[kind]["verify"])
    _timing(ours["inclusion_at_random_sizes"]["generate"])

    pm = report["pymerkle"]
    assert isinstance(pm, dict)
    assert pm["leaves"] == 2000 and pm["version"] >= "7"
    assert pm["root"] == ours["root"]
    assert pm["append"]["leaves_per_s"] > 0
    _timing(pm["inclusion"]["generate"])
    _timing(pm["ours_at_same_size"]["inclusion"]["generate"])
    assert set(pm["speedup"]) == {"inclusion_generate", "inclusion_verify",
                                  "consistency_generate", "consistency_verify"}
    assert all(v > 0 for v in pm["speedup"].values())
    assert set(pm["speedup_cpu"]) == set(pm["speedup_p50"]) == set(pm["speedup"])
    assert pm["inclusion"]["generate"]["cpu_mean_us"] > 0
    assert ours["append"]["leaves_per_cpu_s"] > 0 and pm["append"]["leaves_per_cpu_s"] > 0

    database = report["database"]
    assert isinstance(database, dict)
    assert database["db"] == "sqlite" and database["leaves"] == 2000 and database["batch"] == 5000
    assert database["append"]["leaves_per_s"] > 0
    _timing(database["inclusion"]["generate"])
    _timing(database["consistency"]["generate"])

    targets = report["targets"]
    assert isinstance(targets, dict)
    assert {"append_met", "proof_met", "proof_met_cpu", "speedup_met", "speedup_met_cpu"} \
        <= set(targets)
    machine = report["machine"]
    assert isinstance(machine, dict)
    assert machine["sqlite"] and machine["python"] and machine["cpu_model"]
    assert len(machine["loadavg_start"]) == 3


@pytest.mark.slow
def test_a_postgresql_run_drops_its_database(bench_databases: Callable[..., int]) -> None:
    report = _run("--leaves", "6000", "--db", "postgresql", "--db-leaves", "5500",
                  "--pymerkle-leaves", "0", "--proofs", "50", "--db-proofs", "30", "--json")
    assert report["ok"] is True
    database = report["database"]
    assert isinstance(database, dict)
    assert database["leaves"] == 5500 and database["versions"]["postgresql"]
    assert report["invariants"]["db_proofs_equal_memory"] is True
    assert report["pymerkle"] == {"skipped": "--pymerkle-leaves 0"}
    assert bench_databases("_transparency") == 0  # its throw-away database was dropped


def test_without_a_database_and_the_human_summary() -> None:
    result = runner.invoke(cli.app, ["bench", "transparency", "--leaves", "300", "--db", "none",
                                     "--pymerkle-leaves", "300", "--proofs", "20"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["database"] is None and report["ok"] is True
    assert "speedup vs pymerkle" in result.output  # the table (stderr) came too


def test_the_leaves_are_reproducible_and_realistic() -> None:
    first = bench.make_leaves(0, 2_000, seed=1)
    assert first == bench.make_leaves(0, 2_000, seed=1)
    assert bench.make_leaves(1_000, 5, seed=1) == bench.make_leaves(1_000, 5, seed=1)
    assert first != bench.make_leaves(0, 2_000, seed=2)
    decoded = [leaves.decode(blob) for blob in first]
    kinds = {str(d["kind"]) for d in decoded}
    assert {"donation.paid", "campaign.gift", "campaign.match", "refund.done",
            "fund_usage.disbursed", "pool.topped_up"} <= kinds
    assert 200 <= statistics.fmean(map(len, first)) <= 330
    donors = [d for d in decoded if "donor" in d]
    assert donors and all(len(str(d["donor"])) == 64 for d in donors)
    assert all("user:" not in blob.decode() for blob in first)  # only commitments
    assert len(set(first)) == len(first)


def test_the_pymerkle_invariants_can_fail() -> None:
    data = bench.make_leaves(0, 500, seed=3)
    other = merkle.MemoryTree()
    other.append_data([*data[:499], b"rewritten"])
    _report, invariants = bench._pymerkle(data, other, seed=3, proofs=30,
                                          progress=bench._no_progress)
    assert invariants["roots_equal_pymerkle"] is False
    assert invariants["inclusion_proofs_equal_pymerkle"] is False


def test_stats() -> None:
    assert bench.stats_us([]) == {}
    s = bench.stats_us([1_000, 2_000, 3_000, 100_000])
    assert s["p50_us"] == 3.0 and s["max_us"] == 100.0 and s["n"] == 4
