"""The log's sequencer: leaves written with their money, indexed after the commit.

A money transaction that must not wait for the log's head (an escrow writer's batch,
``campaigns/escrow.py``) posts with ``ledger.post_many(..., queue_log=True)``: its leaves'
bytes are built and written to ``transparency_queue`` in its own transaction (:func:`enqueue`),
beside its postings, and it takes no lock of the log at all. The **sequencer** then moves
queued leaves into the log (:func:`sequence_once`): in one transaction it locks the head,
reads what is queued and committed, appends it — whole entries, in queue order — with the
same code as a direct append (``log.append_rows``), and deletes it from the queue.

- **Exactly once.** The head is locked *before* the queue is read, so two sequencers (or a
  sequencer and a direct appender) run one after the other, and the second reads the queue
  after the first's delete committed (READ COMMITTED re-reads per statement). Moving a leaf
  is one transaction: appended and dequeued together, or neither (a sequencer killed
  mid-round leaves the queue as it was).
- **One leader.** On PostgreSQL a round first tries ``pg_try_advisory_xact_lock``; a
  process that does not get it skips the round instead of queueing on the head behind the
  leader. Any number of processes may run a :class:`Sequencer`; at most one works at a time.
- **Dense, in commit order.** Indexes are given in the order the sequencer finds leaves
  committed (an entry that commits later than one queued after it is simply indexed in a
  later round); an entry's leaves are never split between rounds, so every entry in the log
  is whole (``shanju transparency check`` counts queued entries as pending, not missing).
- **Delay.** A leaf is provable once sequenced; :attr:`Sequencer.max_delay_s` records the
  longest wait seen (enqueue → indexed). Receipts already answer "not yet in the log".

Layers: storage, like ``log.py`` — imported by the ledger service, imports none of it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.ledger.models import JournalEntry
from shanju.transparency import log as transparency_log

if TYPE_CHECKING:
    from shanju.core.db import Database

logger = logging.getLogger(__name__)

#: The advisory lock key of the sequencer's leadership (PostgreSQL).
ADVISORY_KEY = 0x5EC_0E0CE


def enqueue(session: Session,
            posted: Sequence[tuple[JournalEntry, transparency_log.PostedSpec]]) -> int:
    """Write the leaves of newly posted entries to the queue (caller's transaction)."""
    now = utcnow()
    leaves = transparency_log.posted_leaves(posted)
    if not leaves:
        return 0
    at: Any = now
    if session.connection().dialect.name != "postgresql":
        # SQLAlchemy's SQLite DateTime format: naive UTC with microseconds.
        at = now.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    transparency_log.insert_rows(session, "transparency_queue",
                                 ("entry_id", "ref", "data", "enqueued_at"),
                                 [(entry_id, ref, data, at) for entry_id, ref, data in leaves])
    return len(leaves)


def sequence_once(session: Session, *, max_entries: int = 5_000) -> tuple[int, float]:
    """One round: index up to ``max_entries`` queued entries (caller's transaction, which
    must commit). Returns (leaves appended, the longest any of them waited, in seconds);
    (0, 0.0) when there was nothing, or another process is sequencing (PostgreSQL)."""
    pg = session.get_bind().dialect.name == "postgresql"
    if pg and not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                  {"k": ADVISORY_KEY}).scalar():
        return 0, 0.0
    if not session.execute(text("SELECT 1 FROM transparency_queue LIMIT 1")).first():
        return 0, 0.0
    head = transparency_log.lock_head(session)  # before reading the queue: see module doc
    entries = [int(r[0]) for r in session.execute(text(
        "SELECT entry_id FROM transparency_queue GROUP BY entry_id ORDER BY min(id) "
        "LIMIT :n"), {"n": max_entries})]
    if not entries:
        return 0, 0.0
    rows = session.execute(text(
        "SELECT id, entry_id, ref, data, enqueued_at FROM transparency_queue "
        "WHERE entry_id IN (SELECT value FROM json_each(:ids)) ORDER BY id" if not pg else
        "SELECT id, entry_id, ref, data, enqueued_at FROM transparency_queue "
        "WHERE entry_id = ANY(:ids) ORDER BY id"),
        {"ids": entries if pg else _json(entries)}).all()
    transparency_log.append_rows(
        session, [(int(r[1]), r[2], bytes(r[3])) for r in rows], head=head)
    session.execute(text(
        "DELETE FROM transparency_queue WHERE entry_id IN (SELECT value FROM json_each(:ids))"
        if not pg else "DELETE FROM transparency_queue WHERE entry_id = ANY(:ids)"),
        {"ids": entries if pg else _json(entries)})
    now = utcnow()
    oldest = min((_aware(r[4]) for r in rows), default=now)
    return len(rows), max(0.0, (now - oldest).total_seconds())


def pending(session: Session) -> int:
    """How many leaves wait in the queue."""
    return int(session.execute(text("SELECT count(*) FROM transparency_queue")).scalar() or 0)


def drain(database: Database) -> int:
    """Sequence everything queued now (tests; a process that stops its writers)."""
    total = 0
    while True:
        with database.transaction() as session:
            done, _ = sequence_once(session)
        if not done:
            with database.transaction(write=False) as session:
                if not pending(session):
                    return total
            time.sleep(0.01)  # another process holds the leadership this round
            continue
        total += done


class Sequencer:
    """A background thread that sequences the queue every ``interval_s`` (any number of
    processes may run one; the advisory lock lets one work at a time)."""

    def __init__(self, database: Database, *, interval_s: float = 0.02) -> None:
        self.database = database
        self.interval_s = interval_s
        self.max_delay_s = 0.0
        self.leaves = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="log-sequencer",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10) -> None:
        """Stop after the current round."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.database.transaction() as session:
                    done, delay = sequence_once(session)
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.exception("sequencing the transparency log failed")
                done, delay = 0, 0.0
            self.leaves += done
            self.max_delay_s = max(self.max_delay_s, delay)
            if not done:
                self._stop.wait(self.interval_s)


def _json(values: list[int]) -> str:
    return json.dumps(values)


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)  # noqa: S101 - a timestamp column
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
