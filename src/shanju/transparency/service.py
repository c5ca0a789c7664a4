"""Reading the transparency log: the head, entries, leaves by hash or reference, proofs.

Nothing here writes (appending is ``log.py``, called by the ledger). Stored nodes never change
once written, so proofs for a tree size at or below the head are read without locks: a proof
for size ``n`` reads only leaves and complete subtrees inside the first ``n`` leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from shanju.core.errors import InvalidInput, NotFound
from shanju.transparency import merkle
from shanju.transparency.log import HEAD_ID
from shanju.transparency.merkle import EMPTY_ROOT, NodeKey
from shanju.transparency.models import LogHead, LogLeaf

MAX_ENTRIES = 1_000  # per call of entries(), as the API promises

_LEAVES = cast(Table, LogLeaf.__table__)


@dataclass(frozen=True)
class Head:
    """The log's current size and root hash."""

    size: int
    root: bytes


@dataclass(frozen=True)
class Leaf:
    """One stored leaf."""

    index: int
    entry_id: int
    ref: str | None
    leaf_hash: bytes
    data: bytes


def head(session: Session) -> Head:
    """The current tree head (size 0 and the empty root before the first money movement)."""
    # Core, not session.get: the head changes under the ORM's identity map (log.py updates it
    # with Core), and a session that posts and then reads must see the new head.
    row = session.execute(
        select(LogHead.size, LogHead.root).where(LogHead.id == HEAD_ID)
    ).first()
    if row is None:
        return Head(size=0, root=EMPTY_ROOT)
    return Head(size=int(row[0]), root=bytes(row[1]))


def fetcher(session: Session) -> merkle.NodeFetcher:
    """A :data:`merkle.NodeFetcher` reading stored leaves (level 0) and nodes (level >= 1).

    One statement per call: ``level = L AND idx IN (…)`` per level, ``UNION ALL``-ed, so each
    part is a primary-key search (SQLite plans a row-value ``(level, idx) IN (…)`` as a full
    scan: proofs cost O(tree size) that way, p50 156 ms at 10⁶ leaves). Plain SQL with integer
    literals (nothing to inject), so no expression is built and compiled per proof.
    """

    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _pg_fetcher(session)

    def fetch(keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        by_level: dict[int, list[int]] = {}
        for level, idx in keys:
            by_level.setdefault(int(level), []).append(int(idx))
        parts = []
        for level, indexes in sorted(by_level.items()):
            listed = ",".join(map(str, indexes))
            if level == 0:
                parts.append("SELECT 0, idx, leaf_hash FROM transparency_leaves "  # noqa: S608
                             f"WHERE idx IN ({listed})")
            else:
                parts.append("SELECT level, idx, hash FROM transparency_nodes "  # noqa: S608
                             f"WHERE level = {level} AND idx IN ({listed})")
        found: dict[NodeKey, bytes] = {}
        if parts:
            for level, idx, h in session.connection().exec_driver_sql(" UNION ALL ".join(parts)):
                found[(int(level), int(idx))] = bytes(h)
        return found

    return fetch


_PG_FETCH = (
    "SELECT 0::smallint, l.idx, l.leaf_hash FROM transparency_leaves l "
    "WHERE l.idx = ANY(%s::bigint[]) "
    "UNION ALL SELECT n.level, n.idx, n.hash FROM transparency_nodes n "
    "JOIN unnest(%s::smallint[], %s::bigint[]) AS k(level, idx) "
    "ON n.level = k.level AND n.idx = k.idx"
)


def _pg_fetcher(session: Session) -> merkle.NodeFetcher:
    # One constant statement with array parameters: psycopg prepares it after a few uses,
    # so PostgreSQL plans it once per connection instead of once per proof.
    raw: Any = session.connection().connection.driver_connection

    def fetch(keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        leaves = [idx for level, idx in keys if level == 0]
        nodes = [(level, idx) for level, idx in keys if level > 0]
        found: dict[NodeKey, bytes] = {}
        with raw.cursor() as cur:
            cur.execute(_PG_FETCH, (leaves, [n[0] for n in nodes], [n[1] for n in nodes]))
            for level, idx, h in cur.fetchall():
                found[(int(level), int(idx))] = bytes(h)
        return found

    return fetch


def _check_size(session: Session, size: int, *, field: str) -> Head:
    current = head(session)
    if size > current.size:
        raise InvalidInput(
            "The log is not that large yet.", code="tree_size_too_large", field=field,
            details={"size": current.size},
        )
    return current


def root_at(session: Session, size: int) -> bytes:
    """The root hash of the tree of the first ``size`` leaves (``size`` <= the head's)."""
    if size < 0:
        raise InvalidInput("A tree size cannot be negative.", code="invalid_tree_size",
                           field="size")
    current = _check_size(session, size, field="size")
    if size == current.size:
        return current.root
    return merkle.root(size, fetcher(session))


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise InvalidInput("The leaf index must be at least 0 and below the tree size.",
                           code="invalid_leaf_index", field="index")
    _check_size(session, size, field="size")
    return merkle.inclusion_proof(index, size, fetcher(session))


def consistency_proof(session: Session, first: int, second: int) -> list[bytes]:
    """The consistency proof between the trees of ``first`` and ``second`` leaves."""
    if not 0 < first <= second:
        raise InvalidInput("Sizes must satisfy 0 < first <= second.",
                           code="invalid_tree_sizes", field="first")
    _check_size(session, second, field="second")
    return merkle.consistency_proof(first, second, fetcher(session))


def entries(session: Session, start: int, end: int) -> list[Leaf]:
    """Leaves ``start`` (inclusive) to ``end`` (exclusive), at most :data:`MAX_ENTRIES`.

    ``end`` beyond the log is cut to its size (as RFC 6962 ``get-entries`` may return fewer).
    """
    if start < 0 or end <= start:
        raise InvalidInput("Ask for 0 <= start < end.", code="invalid_range", field="start")
    end = min(end, start + MAX_ENTRIES)
    rows = session.execute(
        select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.ref, _LEAVES.c.leaf_hash,
               _LEAVES.c.data)
        .where(_LEAVES.c.idx >= start, _LEAVES.c.idx < end).order_by(_LEAVES.c.idx)
    )
    return [_leaf(row) for row in rows]


def leaf(session: Session, index: int) -> Leaf:
    """The leaf at ``index``."""
    row = session.execute(
        select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.ref, _LEAVES.c.leaf_hash,
               _LEAVES.c.data).where(_LEAVES.c.idx == index)
    ).first()
    if row is None:
        raise NotFound("No leaf has this index.", code="leaf_not_found")
    return _leaf(row)


def leaf_by_hash(session: Session, leaf_hash: bytes) -> Leaf:
    """The (first) leaf with this leaf hash."""
    row = session.execute(
        select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.ref, _LEAVES.c.leaf_hash,
               _LEAVES.c.data).where(_LEAVES.c.leaf_hash == leaf_hash)
        .order_by(_LEAVES.c.idx).limit(1)
    ).first()
    if row is None:
        raise NotFound("No leaf has this hash.", code="leaf_not_found")
    return _leaf(row)


def leaves_by_ref(session: Session, ref: str) -> list[Leaf]:
    """Every leaf with this public reference (a donation's credit and, later, its refund)."""
    rows = session.execute(
        select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.ref, _LEAVES.c.leaf_hash,
               _LEAVES.c.data).where(_LEAVES.c.ref == ref).order_by(_LEAVES.c.idx)
    )
    return [_leaf(row) for row in rows]


def leaves_of_entry(session: Session, entry_id: int) -> list[Leaf]:
    """The leaves recording one journal entry."""
    rows = session.execute(
        select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.ref, _LEAVES.c.leaf_hash,
               _LEAVES.c.data).where(_LEAVES.c.entry_id == entry_id).order_by(_LEAVES.c.idx)
    )
    return [_leaf(row) for row in rows]


def _leaf(row: object) -> Leaf:
    idx, entry_id, ref, h, data = cast(tuple[int, int, str | None, bytes, bytes], row)
    return Leaf(index=int(idx), entry_id=int(entry_id), ref=ref, leaf_hash=bytes(h),
                data=bytes(data))
