"""A/B of the SQLite writer queue (docs/benchmarks.md).

    uv run python scripts/bench/ab_writer_queue.py busy-wait|queue [DONATIONS] [WORKERS]

``busy-wait`` runs the same code with the in-process queue swapped out, leaving SQLite's
busy handler alone to order the writers.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sqlalchemy.engine import Connection

from shanju.bench import common
from shanju.bench import donations as donations_bench
from shanju.core import db as core_db


def _plain_begin(_queue: Any, conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _nothing(*_args: Any) -> None:
    return None


def main() -> None:
    mode = sys.argv[1]
    donations = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if mode == "busy-wait":
        core_db._WriterQueue.begin = _plain_begin  # type: ignore[method-assign]
        core_db._WriterQueue.end = _nothing  # type: ignore[method-assign]
        core_db._WriterQueue.end_record = _nothing  # type: ignore[method-assign]
    database, _ = common.temporary_sqlite()
    report = donations_bench.bench_donations(database, donations=donations, workers=workers)
    print(json.dumps({
        "mode": mode, "donations_per_second": report["donations_per_second"],
        "errors": report["errors"], "ledger_ok": report["ledger_ok"],
        "create_latency": report["create_latency"], "credit_latency": report["credit_latency"],
    }))


if __name__ == "__main__":
    main()
