"""``shanju transparency check``: the log against the ledger and against itself.

Recomputes, from the database alone:

- **ledger ↔ log**: every journal entry has at least one leaf, and the transfers of its leaves
  add up, per account, exactly to its postings (so no posting exists without its log entry and
  no log entry without its posting);
- **the leaves**: indexes are dense from 0, each stored leaf hash is SHA-256(0x00 ‖ data), each
  leaf parses as a version-1 leaf moving a positive amount;
- **the tree**: the root and size rebuilt from the leaf hashes equal the head, and every stored
  interior node equals its recomputation;
- **the queue**: leaves written with their money and not yet indexed by the sequencer
  (``transparency/sequencer.py``) count as *pending*, not missing — their transfers must add
  up to their entry's postings like any, and no entry is part in the log, part in the queue;
- **checkpoints**: each signed checkpoint's root is the root of the tree at its size (a rewrite
  of history after signing would show here; outsiders check it with ``shanju verify``).

Reads only; run it at any time (it takes a consistent snapshot on PostgreSQL through one
repeatable transaction when the caller opens one; on SQLite readers see one snapshot).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from shanju.ledger.models import JournalEntry, LedgerAccount, Posting
from shanju.transparency import leaves, merkle
from shanju.transparency.models import Checkpoint, LogLeaf, LogNode, LogQueued
from shanju.transparency.service import head

_LEAVES = cast(Table, LogLeaf.__table__)
_NODES = cast(Table, LogNode.__table__)
_QUEUE = cast(Table, LogQueued.__table__)
_CHUNK = 20_000
_SHOW = 20  # problems listed per kind (all are counted)


@dataclass
class LogCheckReport:
    """What the check found; ``ok`` when nothing."""

    leaves: int = 0
    entries: int = 0
    nodes: int = 0
    checkpoints: int = 0
    pending: int = 0  # leaves in the sequencer's queue (entries posted, not yet indexed)
    size: int = 0
    root: str = ""
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def ok(self) -> bool:
        """True when the log and the ledger agree and the tree is intact."""
        return not self.counts

    def problem(self, kind: str, text: str) -> None:
        """Record one problem (the first few of each kind are kept with their text)."""
        self.counts[kind] += 1
        if len(self.problems[kind]) < _SHOW:
            self.problems[kind].append(text)


def check(session: Session) -> LogCheckReport:
    """Check the log against the ledger and itself (see the module doc)."""
    report = LogCheckReport()
    current = head(session)
    report.size, report.root = current.size, current.root.hex()

    tree = merkle.MemoryTree()
    from_leaves: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    expected = 0
    last = -1
    while True:
        rows = session.execute(
            select(_LEAVES.c.idx, _LEAVES.c.entry_id, _LEAVES.c.leaf_hash, _LEAVES.c.data)
            .where(_LEAVES.c.idx > last).order_by(_LEAVES.c.idx).limit(_CHUNK)
        ).all()
        if not rows:
            break
        hashes: list[bytes] = []
        for idx, entry_id, stored, data in rows:
            idx, data, stored = int(idx), bytes(data), bytes(stored)
            if idx != expected:
                report.problem("gap", f"leaf {expected} is missing (next is {idx})")
                expected = idx
            expected += 1
            h = merkle.leaf_hash(data)
            if h != stored:
                report.problem("leaf_hash", f"leaf {idx}: stored hash is not H(data)")
            hashes.append(stored)
            try:
                fields = leaves.decode(data)
                amount = fields["amount"]
                source, destination = str(fields["from"]), str(fields["to"])
                if type(amount) is not int or amount <= 0:
                    raise ValueError("amount")
                if int(cast(int, fields["entry"])) != int(entry_id):
                    raise ValueError("entry")
            except (ValueError, KeyError, TypeError) as exc:
                report.problem("leaf_data", f"leaf {idx}: not a valid leaf ({exc})")
                continue
            sums = from_leaves[int(entry_id)]
            sums[source] -= amount
            sums[destination] += amount
        tree.append_hashes(hashes)
        last = int(rows[-1][0])
    report.leaves = tree.size

    if tree.size != current.size:
        report.problem("head", f"the head says {current.size} leaves, the table has {tree.size}")
    if tree.root() != current.root:
        report.problem("head", "the head's root is not the root of the stored leaves")

    _check_entries(session, from_leaves, report)
    _check_nodes(session, tree, report)
    for cp in session.scalars(select(Checkpoint).order_by(Checkpoint.id)):
        report.checkpoints += 1
        if cp.size > tree.size or tree.root(cp.size) != bytes(cp.root):
            report.problem("checkpoint", f"checkpoint {cp.id} (size {cp.size}) does not match "
                                         "the tree at its size")
    return report


def _check_entries(
    session: Session, from_leaves: dict[int, dict[str, int]], report: LogCheckReport
) -> None:
    postings: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry_id, code, amount in session.execute(
        select(Posting.entry_id, LedgerAccount.code, func.sum(Posting.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .group_by(Posting.entry_id, LedgerAccount.code)
    ):
        postings[int(entry_id)][str(code)] += int(amount)
    entry_ids = {int(e) for e in session.scalars(select(JournalEntry.id))}
    report.entries = len(entry_ids)
    queued: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry_id, data in session.execute(select(_QUEUE.c.entry_id, _QUEUE.c.data)):
        report.pending += 1
        try:
            fields = leaves.decode(bytes(data))
            moved = fields["amount"]
            if not isinstance(moved, int) or isinstance(moved, bool) or moved <= 0:
                raise ValueError("amount")
            queued[int(entry_id)][str(fields["from"])] -= moved
            queued[int(entry_id)][str(fields["to"])] += moved
        except (ValueError, KeyError, TypeError) as exc:
            report.problem("leaf_data", f"a queued leaf of entry {entry_id}: not a valid "
                                        f"leaf ({exc})")
    for entry_id in sorted(queued.keys() & from_leaves.keys()):
        report.problem("entry_split", f"journal entry {entry_id} is part in the log, part "
                                      "in the queue")
    for entry_id in sorted(queued.keys() - from_leaves.keys()):
        logged = {k: v for k, v in queued[entry_id].items() if v}
        posted = {k: v for k, v in postings.get(entry_id, {}).items() if v}
        if logged != posted:
            report.problem("entry_mismatch",
                           f"journal entry {entry_id}: its queued leaves move {logged}, "
                           f"its postings {posted}")
    for entry_id in sorted(entry_ids - from_leaves.keys() - queued.keys()):
        report.problem("entry_without_leaf", f"journal entry {entry_id} has no leaf")
    for entry_id in sorted(from_leaves.keys() - entry_ids):
        report.problem("leaf_without_entry", f"leaves name journal entry {entry_id}, "
                                             "which does not exist")
    for entry_id in sorted(from_leaves.keys() & entry_ids):
        logged = {k: v for k, v in from_leaves[entry_id].items() if v}
        posted = {k: v for k, v in postings.get(entry_id, {}).items() if v}
        if logged != posted:
            report.problem("entry_mismatch",
                           f"journal entry {entry_id}: its leaves move {logged}, "
                           f"its postings {posted}")


def _check_nodes(session: Session, tree: merkle.MemoryTree, report: LogCheckReport) -> None:
    last: tuple[int, int] = (0, -1)
    while True:
        rows = session.execute(
            select(_NODES.c.level, _NODES.c.idx, _NODES.c.hash)
            .where((_NODES.c.level > last[0])
                   | ((_NODES.c.level == last[0]) & (_NODES.c.idx > last[1])))
            .order_by(_NODES.c.level, _NODES.c.idx).limit(_CHUNK)
        ).all()
        if not rows:
            return
        for level, idx, stored in rows:
            level, idx = int(level), int(idx)
            report.nodes += 1
            if level >= len(tree.levels) or (idx + 1) * merkle.HASH_SIZE > len(
                    tree.levels[level]):
                report.problem("node", f"node ({level}, {idx}) lies outside the tree")
            elif tree.fetch([(level, idx)])[(level, idx)] != bytes(stored):
                report.problem("node", f"node ({level}, {idx}) is not the hash of its leaves")
        last = (int(rows[-1][0]), int(rows[-1][1]))
