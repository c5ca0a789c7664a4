"""The order path's figures from ``shanju bench http`` (docs/benchmarks.md, "Order path").

    uv run python scripts/bench/order_path.py [--db sqlite|pg] [--provider wechatpay|sandbox]
        [--donations 2000] [--port 8231] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432]

Runs the bench once (PostgreSQL: in a fresh database ``bench_orderpath``, dropped after) and
prints one line of JSON with what the order-path work is judged by: server CPU per request
(less sensitive to the machine's load than wall time), donations per second, each half's
p99, the load average, errors and whether every invariant held.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from sqlalchemy import create_engine, text

DB_NAME = "bench_orderpath"


def _admin(url: str, statement: str) -> None:
    engine = create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--provider", choices=("wechatpay", "sandbox"), default="wechatpay")
    parser.add_argument("--donations", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8231)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "shanju.cli", "bench", "http", "--donations",
           str(args.donations), "--provider", args.provider, "--port", str(args.port),
           "--no-floor", "--json"]
    if args.db == "pg":
        _admin(args.pg_url, f"DROP DATABASE IF EXISTS {DB_NAME}")
        _admin(args.pg_url, f"CREATE DATABASE {DB_NAME}")
        cmd += ["--database-url", f"{args.pg_url}/{DB_NAME}"]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: S603
    finally:
        if args.db == "pg":
            _admin(args.pg_url, f"DROP DATABASE IF EXISTS {DB_NAME}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "db": report["db"], "provider": report["provider"], "donations": report["donations"],
        "server_cpu_us_per_request": report["server_cpu_us_per_request"],
        "server_cpu_us_per_donation": report["server_cpu_us_per_donation"],
        "donations_per_s": report["donations_per_s"],
        "p99_orders_ms": report["orders"]["p99_ms"],
        "p99_callbacks_ms": report["callbacks"]["p99_ms"],
        "load_1m_before": report["load_average_1m_before"],
        "load_1m": report["load_average_1m"],
        "errors": report["errors"], "first_errors": report["first_errors"],
        "ok": report["ok"],
    }))


if __name__ == "__main__":
    main()
