"""The campaign lock: every change to a campaign's matching state takes it first.

A campaign's matching state is its pools' ``remaining_fen`` and its counters (caps, anti-fraud
signals). Whoever changes any of it — an engine batch, a refund reversing a match, a top-up, a
new rule version, settling or releasing held matches, a quadratic round's distribution — locks
the campaign rows involved first, in ascending id order, then reads, decides and writes. On
PostgreSQL that is ``SELECT ... FOR UPDATE``; on SQLite the writing transaction already holds
the database's write lock (``BEGIN IMMEDIATE``), so the statement is a plain read.

Every holder of the lock also increments the campaign's ``lock_version``: a giving-day writer
that keeps the campaign's counters in memory between its batches trusts them only while the
version it reads under the lock is the one its own previous batch left (``docs/locking.md``,
"The writer's memory").

Lock order (deadlock-free): campaign rows (ascending id) → pool rows → ledger accounts
(ascending id, inside ``ledger.post_many``). See ``docs/locking.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shanju.campaigns.models import Campaign


def lock_campaigns(session: Session, campaign_ids: Iterable[int]) -> dict[int, Campaign]:
    """Lock the campaigns' rows (ascending id) until the transaction ends and increment their
    ``lock_version``; return them by id (``lock_version`` as this transaction left it)."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return {}
    # The rows are locked in id order first; the increment then waits for nobody.
    found = {c.id: c for c in session.scalars(
        select(Campaign).where(Campaign.id.in_(ids)).order_by(Campaign.id).with_for_update()
    )}
    if found:
        session.execute(
            update(Campaign).where(Campaign.id.in_(sorted(found)))
            .values(lock_version=Campaign.lock_version + 1)
            .execution_options(synchronize_session="evaluate"))
    return found
