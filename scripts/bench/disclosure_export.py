"""Time and peak memory of a project's disclosure with many giving-day gifts.

    PYTHONPATH=. uv run python scripts/bench/disclosure_export.py sqlite|postgresql setup [N]
    PYTHONPATH=. uv run python scripts/bench/disclosure_export.py sqlite|postgresql run WHAT
    PYTHONPATH=. uv run python scripts/bench/disclosure_export.py postgresql drop

``setup`` writes one project with N (100,000) paid giving-day gifts straight into the table
(SQLite: <temp dir>/disclosure-bench/b.sqlite3; PostgreSQL: a scratch database on 127.0.0.1:5432,
user postgres, removed by ``drop``). ``run`` measures, in a fresh process so that peak RSS
shows what the export itself needs, one of: ``page`` (months and the latest 50 movements),
``totals``, ``csv``, ``json``, ``xlsx`` (comma-separated for several), or ``materialized``
(every row held in a list, for comparison).
"""

from __future__ import annotations

import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text
from tests.factories import make_campaign, make_org, make_project

from shanju.campaigns.models import CampaignBatch, CampaignGift
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.migrations import create_schema
from shanju.disclosure import export, service
from shanju.projects.models import Project

DIR = Path(tempfile.gettempdir()) / "disclosure-bench"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/shanju_disclosure_bench"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(url: str, n: int) -> None:
    db = Database(url)
    create_schema(db)
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        batch = CampaignBatch(gifts=n, worker="bench")
        s.add(batch)
        s.flush()
        start = utcnow() - dt.timedelta(days=300)
        for k in range(0, n, 10_000):
            s.execute(insert(CampaignGift), [dict(  # noqa: C408 - column names as keywords
                order_id=f"o_bench{i:09d}", campaign_id=campaign.id, project_id=project.id,
                organization_id=org.id, donor_id=None, donor_name="张三丰",
                anonymous=(i % 7 == 0), message="", province="北京",
                amount_fen=100 + i % 10_000, provider="sandbox", provider_txn_id=f"t{i}",
                payer_hash=f"{i % 5000:032x}", device_hash="", day=start.date(),
                status="paid", pool_id=None, rule_version=None, matched_fen=0,
                match_status="none", reason="", reason_params=None, hold_until=None,
                batch_id=batch.id, paid_at=start + dt.timedelta(seconds=i * 200),
                refunded_at=None) for i in range(k, min(n, k + 10_000))])
    db.dispose()


def run(url: str, what: list[str]) -> None:
    db = Database(url)
    with db.transaction(write=False) as s:
        pid = s.scalars(select(Project.id)).one()
        n = int(s.scalar(select(func.count()).select_from(CampaignGift)) or 0)
    base = rss_mib()
    ctx = export.RowContext(usages={}, attachments={}, base_url="http://x",
                            anonymous_label="爱心人士")

    def page() -> int:
        with db.transaction(write=False) as s:
            service.project_ledger(session=s, project=s.get_one(Project, pid))
        return 0

    def totals() -> int:
        with db.transaction(write=False) as s:
            service.all_totals(session=s)
        return 0

    def csv() -> int:
        with db.transaction(write=False) as s:
            moves = service.iter_movements(session=s, project_ids=[pid])
            return sum(len(chunk) for chunk in export.csv_chunks(moves, ctx))

    def json() -> int:
        with db.transaction(write=False) as s:
            moves = service.iter_movements(session=s, project_ids=[pid])
            return sum(len(chunk) for chunk in export.json_chunks({}, moves, ctx))

    def xlsx() -> int:
        path = DIR / "bench.xlsx"
        with db.transaction(write=False) as s:
            moves = service.iter_movements(session=s, project_ids=[pid])
            export.write_xlsx(path, [("movements", export.COLUMNS,
                                      export.movement_rows(moves, ctx))])
        size = path.stat().st_size
        path.unlink()
        return size

    def materialized() -> int:
        # For comparison: what holding every row in memory would cost.
        with db.transaction(write=False) as s:
            rows = [export.row(m, ctx) for m in service.iter_movements(session=s,
                                                                        project_ids=[pid])]
        return len(rows) * 0

    jobs = {"materialized": materialized, "page": page, "totals": totals, "csv": csv,
            "json": json, "xlsx": xlsx}
    for name in what:
        started = time.perf_counter()
        size = jobs[name]()
        took = time.perf_counter() - started
        print(f"{url.split(':')[0]} {name}: {n:,} gifts in {took:.2f} s "
              f"({n / took:,.0f} rows/s), {size / 1e6:.1f} MB, peak RSS {rss_mib():.0f} MiB "
              f"(after start-up: {base:.0f} MiB)", flush=True)
    db.dispose()


def main() -> None:
    backend, mode = sys.argv[1], sys.argv[2]
    DIR.mkdir(exist_ok=True)
    url = f"sqlite:///{DIR}/b.sqlite3" if backend == "sqlite" else PG_URL
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT") if backend != "sqlite" else None
    if mode in ("setup", "drop"):
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS shanju_disclosure_bench WITH (FORCE)"))
                if mode == "setup":
                    conn.execute(text("CREATE DATABASE shanju_disclosure_bench"))
        else:
            (DIR / "b.sqlite3").unlink(missing_ok=True)
        if mode == "setup":
            setup(url, int(sys.argv[3]) if len(sys.argv) > 3 else 100_000)
        return
    run(url, sys.argv[3].split(","))


if __name__ == "__main__":
    main()
