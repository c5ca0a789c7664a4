"""The transparency log's tables: leaves, stored tree nodes, the head, signed checkpoints.

- ``transparency_leaves``: leaf ``idx`` (0-based, dense) holds the exact entry bytes that were
  hashed, the journal entry it records (``entry_id``) and a public reference (``ref``, e.g.
  ``donation:d_…`` or ``gift:<order>``) for receipts. Append-only.
- ``transparency_nodes``: the hash of every *complete* subtree of ``2**level`` leaves
  (level >= 1; level 0 is ``transparency_leaves.leaf_hash``). Immutable once written, so
  proofs and tiles read them without locks.
- ``transparency_head``: one row — the tree size, root and right-hand frontier. Every append
  locks it (``docs/locking.md``): the log is sequenced in the transaction that posts the money.
- ``transparency_checkpoints``: signed tree heads (C2SP signed-note checkpoints).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base

# On SQLite an INTEGER PRIMARY KEY is the rowid itself (no second index); BIGINT elsewhere.
_BIG_KEY = BigInteger().with_variant(Integer(), "sqlite")


class LogLeaf(Base):
    """One leaf of the log: the canonical entry bytes of one money movement."""

    __tablename__ = "transparency_leaves"
    __table_args__ = (Index("ix_transparency_leaves_leaf_hash", "leaf_hash"),)

    idx: Mapped[int] = mapped_column(_BIG_KEY, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    ref: Mapped[str | None] = mapped_column(String(120), index=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LogNode(Base):
    """The hash of the complete subtree of ``2**level`` leaves starting at ``idx << level``."""

    __tablename__ = "transparency_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogHead(Base):
    """The one row holding the tree's size, root and frontier (locked by every append)."""

    __tablename__ = "transparency_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """A signed tree head: the C2SP checkpoint note for ``size`` and ``root`` at ``timestamp``."""

    __tablename__ = "transparency_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)  # Unix time in milliseconds
    note: Mapped[str] = mapped_column(Text)  # the signed note, exactly as served
    key_id: Mapped[str] = mapped_column(String(120))  # the verifier key name+hash it was signed by
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LogQueued(Base):
    """A leaf written with its money but not yet given an index (``transparency/sequencer.py``).

    Money transactions that do not lock the head write their leaves here; the sequencer moves
    them, whole entries at a time, into ``transparency_leaves`` in the order it sees them
    committed.
    """

    __tablename__ = "transparency_queue"

    id: Mapped[int] = mapped_column(_BIG_KEY, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    ref: Mapped[str | None] = mapped_column(String(120))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    enqueued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
