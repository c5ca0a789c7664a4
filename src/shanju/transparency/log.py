"""Appending to the transparency log, inside the transaction that posts the money.

:func:`append_entries` is called by the ledger service for every batch of journal entries it
posts (``ledger.post_many``), in the same transaction: the leaves, the completed tree nodes and
the new head are written together with the postings, so a posting never exists without its
leaves nor a leaf without its posting, whatever crashes.

Sequencing: the head row (``transparency_head``, one row) is read ``FOR UPDATE`` on PostgreSQL
(SQLite's writer lock already serializes writers), so leaf indexes are dense and in commit
order. A transaction holds it from its first posting to its commit; see ``docs/locking.md``.
A batch of thousands of leaves costs one head update and two ``executemany`` inserts.

Layers: this module and the log's tables (``models.py``, with the pure ``leaves.py`` and
``merkle.py``) are the log's storage. They sit *below* the ledger service that appends to them
and import nothing of it — only the ledger's tables (``ledger.models``), which the leaves
reference — so what they need of an entry being posted is the :class:`PostedSpec` protocol,
which ``ledger.service.EntrySpec`` satisfies. The log's readers (``service.py``, ``check.py``,
checkpoints, receipts, API and pages) sit above the ledger. ``tests/core/test_import_layers.py``
keeps it so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.core.config import get_settings
from shanju.ledger.models import JournalEntry, LedgerAccount, Posting
from shanju.transparency import leaves
from shanju.transparency.merkle import EMPTY_ROOT, Frontier, leaf_hash
from shanju.transparency.models import LogHead, LogLeaf, LogNode

HEAD_ID = 1
_LEAVES = cast(Table, LogLeaf.__table__)
_NODES = cast(Table, LogNode.__table__)
_HEAD = cast(Table, LogHead.__table__)


class LogMismatch(RuntimeError):
    """A programming error: an entry's parts do not add up to its legs."""


class PostedLeg(Protocol):
    """One leg of an entry being posted (``ledger.service.Leg``)."""

    @property
    def account(self) -> str: ...

    @property
    def amount_fen(self) -> int: ...


class PrebuiltLeaves(Protocol):
    """An entry's leaves built by their poster (a giving-day batch: thousands per entry) from
    parts made before the entry existed (``leaves.encode_parts``)."""

    def render(self, entry_id: int, time: str) -> tuple[list[tuple[str | None, bytes]],
                                                       dict[str, int]]:
        """The leaves (ref, canonical bytes) of entry ``entry_id`` posted at ``time``
        (``leaves.format_time``), and their transfers' net change per account code."""
        ...


class PostedSpec(Protocol):
    """What the log reads of an entry being posted (``ledger.service.EntrySpec``)."""

    @property
    def kind(self) -> str: ...

    @property
    def legs(self) -> Sequence[PostedLeg]: ...

    @property
    def details(self) -> Sequence[leaves.LogDetail]: ...

    @property
    def prebuilt(self) -> PrebuiltLeaves | None: ...


def lock_head(session: Session) -> tuple[int, Frontier]:
    """Lock the head row and return the size and frontier.

    The migration creates the row; should it be missing (an emptied database), the first
    appender creates it — ``ON CONFLICT DO NOTHING`` lets racing first appenders both pass.
    """
    query = select(_HEAD.c.size, _HEAD.c.frontier).where(_HEAD.c.id == HEAD_ID).with_for_update()
    row = session.execute(query).first()
    if row is None:
        values = {"id": HEAD_ID, "size": 0, "root": EMPTY_ROOT, "frontier": b"",
                  "updated_at": utcnow()}
        dialect = session.get_bind().dialect.name
        stmt = pg_insert(_HEAD) if dialect == "postgresql" else sqlite_insert(_HEAD)
        session.execute(stmt.values(values).on_conflict_do_nothing(index_elements=["id"]))
        row = session.execute(query).one()
    size, blob = int(row[0]), bytes(row[1])
    return size, Frontier.decode(size, blob)


def leaf_bytes(
    entry: JournalEntry, spec: PostedSpec, secret: str
) -> list[tuple[str | None, bytes]]:
    """The (ref, canonical bytes) of each leaf recording ``entry``, posted from ``spec``."""
    time = leaves.format_time(entry.created_at)
    entry_legs = [(leg.account, leg.amount_fen) for leg in spec.legs]
    if spec.prebuilt is not None:
        if spec.details:
            raise LogMismatch(f"entry {spec.kind!r}: prebuilt leaves and details both")
        built, moved = spec.prebuilt.render(entry.id, time)
        _same_sums(spec.kind, moved, entry_legs)
        return built
    details = list(spec.details)
    if not details:
        return [(None, leaves.build(kind=spec.kind, entry_id=entry.id, time=time, transfer=t,
                                    detail=None, secret=secret))
                for t in leaves.decompose(entry_legs)]
    if len(details) == 1 and details[0].transfer is None:
        d = details[0]
        moves = leaves.decompose(entry_legs)
        if len(moves) != 1:
            raise LogMismatch(f"entry {spec.kind!r}: one detail needs a two-leg entry")
        return [(d.ref, leaves.build(kind=d.kind or spec.kind, entry_id=entry.id, time=time,
                                     transfer=moves[0], detail=d, secret=secret))]
    out: list[tuple[str | None, bytes]] = []
    sums: dict[str, int] = defaultdict(int)
    for d in details:
        if d.transfer is None:
            raise LogMismatch(f"entry {spec.kind!r}: each of several parts needs its transfer")
        sums[d.transfer.source] -= d.transfer.amount
        sums[d.transfer.destination] += d.transfer.amount
        out.append((d.ref, leaves.build(kind=d.kind or spec.kind, entry_id=entry.id,
                                        time=time, transfer=d.transfer, detail=d,
                                        secret=secret)))
    _same_sums(spec.kind, sums, entry_legs)
    return out


def _same_sums(kind: str, sums: dict[str, int], entry_legs: list[tuple[str, int]]) -> None:
    wanted: dict[str, int] = defaultdict(int)
    for code, amount in entry_legs:
        wanted[code] += amount
    if {k: v for k, v in sums.items() if v} != {k: v for k, v in wanted.items() if v}:
        raise LogMismatch(f"entry {kind!r}: its parts do not add up to its legs")


def append_entries(
    session: Session,
    posted: Sequence[tuple[JournalEntry, PostedSpec]],
    *,
    head: tuple[int, Frontier] | None = None,
) -> None:
    """Append the leaves of newly posted journal entries (caller's transaction; no commit)."""
    if not posted:
        return
    append_rows(session, posted_leaves(posted), head=head)


def posted_leaves(
    posted: Sequence[tuple[JournalEntry, PostedSpec]],
) -> list[tuple[int, str | None, bytes]]:
    """The leaves of newly posted journal entries, as (entry id, ref, bytes)."""
    secret = get_settings().salt_key  # SHANJU_RECEIPT_SALT_KEY, or else the secret key
    return [(entry.id, ref, data) for entry, spec in posted
            for ref, data in leaf_bytes(entry, spec, secret)]


def insert_rows(session: Session, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` into ``table`` through the driver, in the session's transaction:
    ``COPY`` on PostgreSQL, ``executemany`` on SQLite (nothing for no rows). A giving-day
    batch appends thousands of leaves: building ORM parameters for them cost more than the
    inserts."""
    if not rows:
        return
    connection = session.connection()
    raw: Any = connection.connection.driver_connection
    names = ", ".join(columns)
    cur = raw.cursor()
    try:
        if connection.dialect.name == "postgresql":
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608 - ours
            cur.executemany(insert, rows)
    finally:
        cur.close()


def append_rows(
    session: Session,
    rows: Sequence[tuple[int, str | None, bytes]],
    *,
    head: tuple[int, Frontier] | None = None,
) -> int:
    """Append leaves given as (entry id, ref, bytes); return the index of the first one.

    The leaves and nodes go through the driver directly (:func:`insert_rows`) in the
    session's transaction.
    """
    # ``head``: what this transaction's lock_head returned (the caller locked it first).
    size, frontier = head if head is not None else lock_head(session)
    hashes = [leaf_hash(data) for _, _, data in rows]
    completed = frontier.append(hashes)
    leaf_rows = [(size + i, entry_id, ref, h, data)
                 for i, ((entry_id, ref, data), h) in enumerate(zip(rows, hashes, strict=True))]
    insert_rows(session, "transparency_leaves", ("idx", "entry_id", "ref", "leaf_hash", "data"),
                leaf_rows)
    insert_rows(session, "transparency_nodes", ("level", "idx", "hash"), completed)
    session.execute(
        update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(
            size=frontier.size, root=frontier.root(), frontier=frontier.encode(),
            updated_at=utcnow(),
        )
    )
    return size


def backfill(session: Session, *, chunk: int = 5_000) -> int:
    """Append a leaf for every journal entry that has none (entries posted before the log).

    Run by the migration that created the log; returns how many leaves it appended. Entries
    are taken in id order, each as one leaf per transfer of its postings, with no detail.
    """
    recorded = select(_LEAVES.c.entry_id)
    done = 0
    while True:
        batch = list(session.execute(
            select(JournalEntry.id, JournalEntry.kind, JournalEntry.created_at)
            .where(JournalEntry.id.not_in(recorded)).order_by(JournalEntry.id).limit(chunk)
        ))
        if not batch:
            return done
        legs: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for entry_id, code, amount in session.execute(
            select(Posting.entry_id, LedgerAccount.code, Posting.amount_fen)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id.in_([row[0] for row in batch])).order_by(Posting.id)
        ):
            legs[int(entry_id)].append((str(code), int(amount)))
        rows = [
            (int(entry_id), None, leaves.build(
                kind=str(kind), entry_id=int(entry_id), time=leaves.format_time(created_at),
                transfer=move, detail=None, secret=""))
            for entry_id, kind, created_at in batch
            for move in leaves.decompose(legs[int(entry_id)])
        ]
        append_rows(session, rows)
        done += len(rows)
