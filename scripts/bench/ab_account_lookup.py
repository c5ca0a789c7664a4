"""A/B of the ledger's account look-up (docs/benchmarks.md).

    uv run python scripts/bench/ab_account_lookup.py insert-first|lookup-first [DONATIONS]

``insert-first`` swaps back the earlier version, which ran ``INSERT … ON CONFLICT DO
NOTHING`` before every look-up; ``lookup-first`` is the code as it is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shanju.bench import common
from shanju.bench import donations as donations_bench
from shanju.core.clock import utcnow
from shanju.ledger import service as ledger
from shanju.ledger.models import LedgerAccount


def insert_first(session: Session, codes: Iterable[str]) -> dict[str, int]:
    """The earlier ensure_accounts: insert (ignoring conflicts), then look up."""
    wanted = sorted(set(codes))
    rows = [{"code": c, "kind": ledger.kind_of(c).value, "balance_fen": 0,
             "created_at": utcnow()} for c in wanted]
    session.execute(sqlite_insert(LedgerAccount).values(rows)
                    .on_conflict_do_nothing(index_elements=["code"]))
    found = session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(wanted)))
    return {str(code): int(account_id) for code, account_id in found}


def main() -> None:
    mode = sys.argv[1]
    donations = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    if mode == "insert-first":
        ledger.ensure_accounts = insert_first
    database, _ = common.temporary_sqlite()
    report = donations_bench.bench_donations(database, donations=donations, workers=1)
    print(json.dumps({"mode": mode, "donations_per_second": report["donations_per_second"],
                      "ledger_ok": report["ledger_ok"]}))


if __name__ == "__main__":
    main()
