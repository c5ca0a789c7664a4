"""A/B of the ledger's posting for giving-day batches (docs/benchmarks.md, giving day).

    uv run python scripts/bench/ab_ledger_post.py as-is|set-based sqlite|postgresql [DONATIONS]

``as-is`` is ``ledger._post_many`` as it is: balances by one ``executemany`` of updates in
ascending id order, postings (~500 for a batch of gifts to 500 projects) as ORM objects
flushed through the unit of work. ``set-based`` swaps in the same bookkeeping with raw
statements — balances by one ``executemany`` (SQLite) or one locking ``SELECT … ORDER BY id
FOR UPDATE`` plus one ``UPDATE … FROM unnest(...)`` (PostgreSQL), postings by one
``executemany``/``COPY`` — to measure what the engine would gain. It is an experiment, not the
ledger's code: the ledger's owner decides whether ``ledger.service`` takes it.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from shanju.bench import giving_day as bench
from shanju.core.clock import utcnow
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry, Posting


def set_based_post_many(session: Session, specs: Sequence[ledger.EntrySpec]) -> list[
        JournalEntry]:
    """``ledger._post_many`` with one statement per step instead of one per account."""
    ids = ledger.ensure_accounts(session, (leg.account for s in specs for leg in s.legs))
    deltas: dict[int, int] = defaultdict(int)
    for spec in specs:
        for leg in spec.legs:
            deltas[ids[leg.account]] += leg.amount_fen
    ordered = sorted((a, d) for a, d in deltas.items() if d)
    guarded = sorted({ids[c] for s in specs for c in s.no_overdraft})
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        if pg:
            cur.execute("SELECT id FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id "
                        "FOR UPDATE", ([a for a, _ in ordered],))
            cur.execute("UPDATE ledger_accounts a SET balance_fen = a.balance_fen + v.d "
                        "FROM unnest(%s::int[], %s::bigint[]) AS v(id, d) WHERE a.id = v.id",
                        ([a for a, _ in ordered], [d for _, d in ordered]))
        else:
            cur.executemany("UPDATE ledger_accounts SET balance_fen = balance_fen + ? "
                            "WHERE id = ?", [(d, a) for a, d in ordered])
        if guarded:
            mark = "%s" if pg else "?"
            cur.execute(f"SELECT min(balance_fen) FROM ledger_accounts WHERE id IN "  # noqa: S608
                        f"({', '.join([mark] * len(guarded))})", guarded)
            if int(cur.fetchone()[0]) < 0:
                raise ledger.InsufficientFunds(
                    "The account does not hold enough money for this movement.")
    finally:
        cur.close()
    now = utcnow()
    entries = [JournalEntry(kind=s.kind, memo=s.memo, dedupe_key=s.dedupe_key,
                            actor_id=s.actor_id, created_at=now) for s in specs]
    session.add_all(entries)
    session.flush()
    rows = [(entry.id, ids[leg.account], leg.amount_fen)
            for entry, spec in zip(entries, specs, strict=True) for leg in spec.legs]
    cur = raw.cursor()
    try:
        if pg:
            with cur.copy("COPY postings (entry_id, account_id, amount_fen) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            cur.executemany("INSERT INTO postings (entry_id, account_id, amount_fen) "
                            "VALUES (?, ?, ?)", rows)
    finally:
        cur.close()
    postings = [Posting(entry_id=e, account_id=a, amount_fen=x) for e, a, x in rows]
    for listener in list(ledger._listeners):  # noqa: SLF001 - the experiment mirrors the code
        listener(session, entries, postings)
    return entries


def main() -> None:
    mode, db = sys.argv[1], sys.argv[2]
    donations = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    if mode == "set-based":
        ledger._post_many = set_based_post_many  # noqa: SLF001
    elif mode != "as-is":
        raise SystemExit("mode: as-is | set-based")
    report = bench.bench_giving_day(db=db, donations=donations, baseline_sample=300,
                                    quadratic_pool=False)
    print(json.dumps({"mode": mode, **{k: report[k] for k in (
        "db", "donations", "seconds", "cpu_seconds", "donations_per_s", "donations_per_cpu_s",
        "p50_ms", "p99_ms", "invariants", "problems")}, "machine": report["machine"]},
        ensure_ascii=False))


if __name__ == "__main__":
    main()
