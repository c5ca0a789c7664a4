"""The log's sequencer (``transparency/sequencer.py``): postings with ``queue_log`` take no
lock of the head and leave their leaves queued; ``transparency check`` counts them pending;
sequencing appends whole entries, densely, exactly once — on SQLite and PostgreSQL."""

from __future__ import annotations

from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import sequencer
from shanju.transparency import service as ts
from shanju.transparency.check import check as log_check


def test_queued_leaves_are_pending_until_sequenced_then_dense(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, ledger.transfer("pool.committed", source="sponsor:1",
                                       destination="pool:1", amount_fen=500))
    with db.transaction() as s:
        for i in range(3):
            ledger.post(s, ledger.EntrySpec(kind="test.split", legs=[
                ledger.Leg("sponsor:1", -300 - i), ledger.Leg("pool:1", 100),
                ledger.Leg("pool:2", 200 + i)]), queue_log=True)
    with db.transaction(write=False) as s:
        assert ts.head(s).size == 1
        report = log_check(s)
        assert report.ok, dict(report.problems)
        assert report.pending == 6
    with db.transaction() as s:
        done, delay = sequencer.sequence_once(s, max_entries=2)
    assert done == 4 and delay >= 0  # two whole entries of two leaves each
    with db.transaction(write=False) as s:
        report = log_check(s)
        assert report.ok, dict(report.problems)
        assert (report.pending, report.size) == (2, 5)
    assert sequencer.drain(db) == 2
    with db.transaction(write=False) as s:
        report = log_check(s)
        assert report.ok, dict(report.problems)
        assert (report.pending, report.size, report.entries) == (0, 7, 4)
    with db.transaction() as s:
        assert sequencer.sequence_once(s) == (0, 0.0)
