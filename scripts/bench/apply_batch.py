"""Throughput of the engine's transaction, ``apply_batch``, alone (no HTTP, no threads).

    PYTHONPATH=. uv run python scripts/bench/apply_batch.py sqlite|postgresql [GIFTS] [BATCH]

A campaign of 200 projects (20 organizations) and two pools — a 1:1 pool with a per-donor
daily cap, a project daily cap and a daily pot, and a random-ratio pool with a floor and an
organization cap — takes GIFTS gifts in batches of BATCH, each batch one transaction through
``Database.transaction()`` (commit included). Prints wall-clock and CPU (this process) rates
and ends with ``shanju campaigns check``. PostgreSQL: a scratch database on
127.0.0.1:5432 (user postgres), dropped at the end. The gifts are built before timing.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from tests.factories import make_campaign, make_org, make_pool, make_project

from shanju.campaigns.check import check
from shanju.campaigns.engine import PaidGift, apply_batch
from shanju.core.db import Database
from shanju.core.migrations import create_schema

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 5_000
    scratch = Path(tempfile.mkdtemp())
    name = f"shanju_apply_batch_{uuid.uuid4().hex[:8]}"
    admin = None
    if kind == "sqlite":
        url = f"sqlite:///{scratch / 'bench.sqlite3'}"
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    try:
        create_schema(db)
        with db.transaction() as s:
            orgs = [make_org(s) for _ in range(20)]
            projects = [make_project(s, org=orgs[i % 20]) for i in range(200)]
            campaign = make_campaign(s, projects=projects)
            make_pool(s, campaign=campaign, budget_fen=n * 3_000, priority=1, params={
                "per_donor_daily_cap_fen": 99_900, "per_project_daily_cap_fen": 10**9,
                "daily_pot_fen": 10**12})
            make_pool(s, campaign=campaign, budget_fen=10**10, priority=2, params={
                "random": [{"weight": 1, "num": 0, "den": 1}, {"weight": 3, "num": 1, "den": 2}],
                "floor_fen": 100, "seed": 7, "per_org_cap_fen": 10**9})
            cid, pids = campaign.id, [p.id for p in projects]
        rng = random.Random(1)  # noqa: S311 - a reproducible workload, not a secret
        now = dt.datetime.now(dt.UTC)
        gifts = [
            PaidGift(f"o_{i:09d}", cid, rng.choice(pids), None, "张三", False, "",
                     rng.choice(["北京", "上海", "广东"]),
                     rng.choice([100, 500, 1_000, 2_000, 9_900, 50_000]), "sandbox", f"t{i}",
                     f"p{rng.randrange(n)}", f"d{rng.randrange(n)}",
                     now + dt.timedelta(microseconds=i * 20))
            for i in range(n)
        ]
        gc.freeze()  # as GroupCommitEngine.start() does
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, n, size):
            with db.transaction() as s:
                apply_batch(s, gifts[i:i + size], worker="bench")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        with db.transaction(write=False) as s:
            report = check(s)
        print(json.dumps({
            "db": kind, "gifts": n, "batch": size, "seconds": round(wall, 3),
            "gifts_per_s": round(n / wall), "cpu_seconds": round(cpu, 3),
            "gifts_per_cpu_s": round(n / cpu), "load_average": os.getloadavg()[0],
            "campaigns_check_ok": report.ok,
        }))
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()


if __name__ == "__main__":
    main()
