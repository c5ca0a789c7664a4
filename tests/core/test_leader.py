"""One runner per deployment (core/leader.py): of several processes' Leaderships of a job,
one holds PostgreSQL's advisory lock; when it gives up (or dies: its connection closes),
another takes the lead at its next round. On SQLite the one process always leads."""

from __future__ import annotations

import uuid

from shanju.core.db import Database
from shanju.core.leader import Leadership, lock_key


def test_one_leader_of_several_then_another_when_it_goes(db: Database) -> None:
    name = f"test-job-{uuid.uuid4().hex}"
    first, second = Leadership(db, name), Leadership(db, name)
    other = Leadership(db, f"{name}-other")
    if db.is_sqlite:
        assert first.held() and second.held()
        return
    try:
        assert first.held()
        assert not second.held()
        assert first.held()  # still ours, round after round
        assert other.held()  # another job, its own leader
        other.release()
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()


def test_a_leader_whose_connection_dies_loses_the_lead(db: Database) -> None:
    if db.is_sqlite:
        return
    name = f"test-job-{uuid.uuid4().hex}"
    first, second = Leadership(db, name), Leadership(db, name)
    try:
        assert first.held()
        first._conn.close()  # as if the process died or the network dropped it
        assert not first.held()  # noticed at its next round, never raised
        assert second.held()
    finally:
        first.release()
        second.release()


def test_lock_keys_are_stable_64_bit_numbers() -> None:
    assert lock_key("payments-job") == lock_key("payments-job")
    assert lock_key("payments-job") != lock_key("transparency-checkpointer")
    assert -(2**63) <= lock_key("x") < 2**63


def test_a_released_leadership_never_takes_the_lock_again(db: Database) -> None:
    """A job's thread may finish a round after its stop() stopped waiting for it: once the
    lead was given up at shutdown, asking again neither leads nor opens a connection (one
    that nobody would close)."""
    if db.is_sqlite:
        return
    name = f"test-job-{uuid.uuid4().hex}"
    first, second = Leadership(db, name), Leadership(db, name)
    try:
        assert first.held()
        first.release()
        assert not first.held()  # the lock is free, but this one gave up for good
        assert first._conn is None
        assert second.held()
    finally:
        first.release()
        second.release()
