"""The giving-day writer on escrow leases: :class:`EscrowEngine`, one per writer process.

The same group commit as :class:`~shanju.campaigns.engine.GroupCommitEngine` (gather, one
transaction per batch, answer after the commit), with three short steps around each batch
(``docs/locking.md``, "Several writers: escrow leases"):

1. **reserve** (:meth:`escrow.EscrowLeases.prepare`, its own transaction): the headroom the
   batch may need on every cap counter and pool budget, into the writer's lease;
2. **the batch** (``engine.apply_batch(..., escrow=view)``): fenced by the lease, spends
   only its slices, queues its leaves for the log's sequencer;
3. **trim** when no more gifts wait: the unused headroom goes back.

A lease revoked under the writer (it stalled past its expiry, or a flow changed the rules)
fails the batch's fence: nothing of the batch exists, a new lease is opened and the batch
runs again. A gift another writer credited first fails the batch on the unique order id;
the batch runs again and answers it ``duplicate``. Reaping dead writers' leases and (with
``sequence=True``) sequencing the log happen in this process too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shanju.campaigns import engine, locks
from shanju.campaigns.engine import GiftResult, GroupCommitEngine, Prepared
from shanju.campaigns.escrow import LEASE_TTL_S, EscrowLeases, LeaseLost, NeedsRebuild
from shanju.core.db import Database
from shanju.transparency.sequencer import Sequencer

log = logging.getLogger(__name__)


class EscrowEngine(GroupCommitEngine):
    """A :class:`GroupCommitEngine` whose batches spend an escrow lease (several of them may
    write for the same campaign at once, in several processes)."""

    def __init__(self, database: Database, *, max_wait_ms: float = 5, max_batch: int = 5000,
                 worker: str | None = None, lease_ttl_s: float = LEASE_TTL_S,
                 sequence: bool = True) -> None:
        super().__init__(database, max_wait_ms=max_wait_ms, max_batch=max_batch,
                         worker=worker)
        self.leases = EscrowLeases(database, self.worker, ttl_s=lease_ttl_s)
        self.sequencer = Sequencer(database) if sequence else None
        self.retries: dict[str, int] = {"lease_lost": 0, "duplicate": 0, "transient": 0}

    def start(self) -> None:
        super().start()
        if self.sequencer is not None:
            self.sequencer.start()

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        try:
            self.leases.close()
        finally:
            if self.sequencer is not None:
                self.sequencer.stop()

    def _apply(self, prepared: list[Prepared]) -> list[GiftResult]:
        gifts = [p.gift for p in prepared]
        last: Exception | None = None
        for attempt in range(8):
            try:
                view = self.leases.prepare(gifts)
                with self.database.transaction() as session:
                    results = engine.apply_batch(session, gifts, worker=self.worker,
                                                 prepared=prepared, escrow=view)
                self.batches += 1
                self.gifts += len(gifts)
                if self._queue.empty():
                    self.leases.trim()
                return results
            except LeaseLost as exc:
                self.retries["lease_lost"] += 1
                self.leases.lost()
                last = exc
            except NeedsRebuild as exc:
                self._rebuild(exc.campaign_pools)
                last = exc
            except Exception as exc:
                # The batch writes through the driver: its errors are the DBAPI's own classes
                # (psycopg, sqlite3) as often as SQLAlchemy's wrappers.
                kinds = {c.__name__ for c in type(exc).__mro__}
                if "IntegrityError" in kinds:
                    # Another writer credited one of these orders first: run the batch
                    # again, which now finds it and answers it duplicate.
                    self.retries["duplicate"] += 1
                elif "OperationalError" in kinds:  # a deadlock victim, a lost connection
                    self.retries["transient"] += 1
                    time.sleep(0.01 * (attempt + 1))
                else:
                    raise
                last = exc
        assert last is not None  # noqa: S101
        raise last

    def _rebuild(self, campaign_pools: list[tuple[int, int]]) -> None:
        with self.database.transaction() as session:
            locks.lock_campaigns(session, {c for c, _ in campaign_pools})
            for _, pool_id in sorted(campaign_pools):
                engine.ensure_counters(session, pool_id=pool_id)

    def stats(self) -> dict[str, Any]:
        """Counts for tests and benchmarks."""
        return {**super().stats(), **self.retries,
                "log_max_delay_s": None if self.sequencer is None
                else self.sequencer.max_delay_s}
