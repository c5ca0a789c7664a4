"""The ledger service: the only code that writes postings.

Money moves only through :func:`post` and :func:`post_many`. Each call checks that every
entry's legs sum to zero, inserts the entries and postings, and updates the running balances,
all inside the caller's transaction (nothing here commits). In that same transaction every
new entry is appended to the transparency log (``shanju.transparency.log``: one leaf per entry,
or one per part the caller describes in ``EntrySpec.details``), so no posting exists without
its log entry. Listeners registered with :func:`add_posting_listener` see every new entry too.
The log's storage (``transparency.log``, ``leaves``, ``models``) sits below this module and
never imports it; the log's readers sit above (``tests/core/test_import_layers.py``).

Locking: running balances are updated with ``UPDATE ... SET balance_fen = balance_fen + d``,
which takes each account's row lock on PostgreSQL (SQLite holds the database write lock for the
whole writing transaction). Accounts are always updated in ascending id order so that two
transactions touching the same accounts cannot deadlock. See ``docs/locking.md``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.core.errors import Conflict, DomainError
from shanju.ledger.models import AccountKind, JournalEntry, LedgerAccount, Posting
from shanju.transparency import log as transparency_log
from shanju.transparency import sequencer as transparency_sequencer

# Re-exported: posting sites describe their leaves as ledger.LogDetail / ledger.Transfer.
from shanju.transparency.leaves import LogDetail as LogDetail
from shanju.transparency.leaves import PublicValue as PublicValue
from shanju.transparency.leaves import Transfer as Transfer
from shanju.transparency.log import PrebuiltLeaves


class UnbalancedEntry(DomainError):
    """A programming error: an entry whose legs do not sum to zero was offered."""

    code = "ledger_unbalanced"
    status_code = 500


class InsufficientFunds(Conflict):
    """An account would be overdrawn by a movement that must not overdraw it."""

    code = "insufficient_funds"


# --- account codes -------------------------------------------------------------------------


def donor_clearing(provider: str) -> str:
    """Account code for donors' money arriving through ``provider``."""
    return f"{AccountKind.DONOR_CLEARING.value}:{provider}"


def project_fund(project_id: int) -> str:
    """Account code for the money raised for a project and not yet used or refunded."""
    return f"{AccountKind.PROJECT_FUND.value}:{project_id}"


def organization(org_id: int) -> str:
    """Account code for money released to an organization (as disclosed in fund usage)."""
    return f"{AccountKind.ORGANIZATION.value}:{org_id}"


def sponsor(sponsor_id: int) -> str:
    """Account code for a sponsor's money arriving for its matching pools."""
    return f"{AccountKind.SPONSOR.value}:{sponsor_id}"


def match_pool(pool_id: int) -> str:
    """Account code for a matching pool's money not yet matched (its balance = remaining)."""
    return f"{AccountKind.MATCH_POOL.value}:{pool_id}"


def match_hold(pool_id: int) -> str:
    """Account code for a pool's matches held through the public notice period (公示期)."""
    return f"{AccountKind.MATCH_HOLD.value}:{pool_id}"


def match_escrow(lease_id: int, pool_id: int) -> str:
    """Account code for a pool's budget leased to one writer's escrow lease (returned to
    ``pool:<id>`` when the lease ends; ``campaigns/escrow.py``)."""
    return f"{AccountKind.MATCH_ESCROW.value}:{lease_id}:{pool_id}"


REFUNDS = AccountKind.REFUNDS.value
PLATFORM = AccountKind.PLATFORM.value


def kind_of(code: str) -> AccountKind:
    """Return the kind encoded in an account code."""
    return AccountKind(code.split(":", 1)[0])


# --- posting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """Money entering (positive) or leaving (negative) the account with this code."""

    account: str
    amount_fen: int


@dataclass
class EntrySpec:
    """A journal entry to post: its legs must sum to zero."""

    kind: str
    legs: Sequence[Leg]
    memo: str = ""
    dedupe_key: str | None = None
    actor_id: int | None = None
    # Accounts that must not go below zero after this entry (e.g. a project fund).
    no_overdraft: Sequence[str] = field(default_factory=tuple)
    # What the transparency log says about the entry: its public reference, the donor's
    # commitment, project/organization, or one part per gift of a giving-day batch.
    details: Sequence[LogDetail] = field(default_factory=tuple)
    # Or the leaves themselves, built by the poster from parts made in advance (a giving-day
    # batch's aggregated entry: a gift leaf and a match leaf per gift). The log checks that
    # their transfers add up to the legs, as for details.
    prebuilt: PrebuiltLeaves | None = None


def transfer(
    kind: str,
    *,
    source: str,
    destination: str,
    amount_fen: int,
    memo: str = "",
    dedupe_key: str | None = None,
    actor_id: int | None = None,
    no_overdraft_source: bool = False,
    detail: LogDetail | None = None,
) -> EntrySpec:
    """Build the two-leg entry that moves ``amount_fen`` from ``source`` to ``destination``."""
    return EntrySpec(
        kind=kind,
        legs=(Leg(source, -amount_fen), Leg(destination, amount_fen)),
        memo=memo,
        dedupe_key=dedupe_key,
        actor_id=actor_id,
        no_overdraft=(source,) if no_overdraft_source else (),
        details=(detail,) if detail is not None else (),
    )


PostingListener = Callable[[Session, Sequence[JournalEntry], Sequence[Posting]], None]
_listeners: list[PostingListener] = []


def add_posting_listener(listener: PostingListener) -> None:
    """Call ``listener`` with every batch of new entries, inside the posting transaction."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_posting_listener(listener: PostingListener) -> None:
    """Stop calling ``listener``."""
    if listener in _listeners:
        _listeners.remove(listener)


def check_entry(spec: EntrySpec) -> None:
    """Raise unless the entry is well-formed: integer legs, at least two, summing to zero."""
    if len(spec.legs) < 2:
        raise UnbalancedEntry(f"entry {spec.kind!r} needs at least two legs")
    for leg in spec.legs:
        # bool is an int subclass; money is never a bool or a float.
        if type(leg.amount_fen) is not int:
            raise UnbalancedEntry(f"entry {spec.kind!r}: amount must be integer fen")
        if leg.amount_fen == 0:
            raise UnbalancedEntry(f"entry {spec.kind!r}: zero-amount leg")
        kind_of(leg.account)  # raises ValueError on an unknown kind
    total = sum(leg.amount_fen for leg in spec.legs)
    if total != 0:
        raise UnbalancedEntry(f"entry {spec.kind!r} does not balance: legs sum to {total}")


def ensure_accounts(session: Session, codes: Iterable[str]) -> dict[str, int]:
    """Return ``{code: account id}``, creating missing accounts (safe under concurrency).

    Accounts almost always exist already, so they are looked up first and only the missing
    ones are inserted (``ON CONFLICT DO NOTHING`` lets two creators race harmlessly).
    """
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    found = _account_ids(session, wanted)
    missing = [c for c in wanted if c not in found]
    if missing:
        rows = [{"code": c, "kind": kind_of(c).value, "balance_fen": 0, "created_at": utcnow()}
                for c in missing]
        dialect = session.get_bind().dialect.name
        stmt = pg_insert(LedgerAccount) if dialect == "postgresql" else sqlite_insert(
            LedgerAccount)
        session.execute(stmt.values(rows).on_conflict_do_nothing(index_elements=["code"]))
        found.update(_account_ids(session, missing))
    return found


def _account_ids(session: Session, codes: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(codes))
    )
    return {str(code): int(account_id) for code, account_id in rows}


_ACCOUNTS = cast(Table, LedgerAccount.__table__)
_POSTINGS = cast(Table, Posting.__table__)
_INCREMENT = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(balance_fen=_ACCOUNTS.c.balance_fen + bindparam("delta"))
)


def post(session: Session, spec: EntrySpec, *, queue_log: bool = False) -> JournalEntry:
    """Post one balanced journal entry in the caller's transaction."""
    return post_many(session, [spec], queue_log=queue_log)[0]


def post_many(session: Session, specs: Sequence[EntrySpec], *,
              queue_log: bool = False) -> list[JournalEntry]:
    """Post many balanced entries at once (the giving-day engine posts thousands per batch).

    Raises :class:`UnbalancedEntry` before writing anything if one entry does not balance,
    :class:`InsufficientFunds` if an account named in ``no_overdraft`` would go negative,
    and ``IntegrityError`` if a ``dedupe_key`` was already posted.

    ``queue_log``: the leaves go to the log's queue (``transparency.sequencer.enqueue``)
    instead of being appended under the head's lock; the sequencer gives them their indexes
    after the commit (the escrow writers' batches: ``docs/locking.md``).
    """
    for spec in specs:
        check_entry(spec)
    if not specs:
        return []
    if any(s.no_overdraft for s in specs):
        # A refused movement must leave the caller's transaction as it was.
        with session.begin_nested():
            return _post_many(session, specs, queue_log)
    return _post_many(session, specs, queue_log)


def _post_many(session: Session, specs: Sequence[EntrySpec],
               queue_log: bool) -> list[JournalEntry]:
    # The log's head first, then accounts: whoever holds an account's row lock already holds
    # the head, so two posting transactions never wait on each other in a cycle. A queued
    # posting takes no head lock at all (the sequencer takes it, and no account lock).
    head = None if queue_log else transparency_log.lock_head(session)
    ids = ensure_accounts(session, (leg.account for s in specs for leg in s.legs))

    # Net change per account, applied in ascending id order (deadlock-free, see module doc).
    deltas: dict[int, int] = defaultdict(int)
    for spec in specs:
        for leg in spec.legs:
            deltas[ids[leg.account]] += leg.amount_fen
    guarded = {ids[c] for s in specs for c in s.no_overdraft}
    # One executemany, in ascending id order: the row locks are taken in that order (a batch
    # of thousands of gifts to hundreds of projects costs one round of statements, not one
    # ORM update each).
    changes = [{"account_id": a, "delta": deltas[a]} for a in sorted(deltas) if deltas[a]]
    if changes:
        session.execute(_INCREMENT, changes)
    if guarded:
        for _account, new_balance in session.execute(
            select(_ACCOUNTS.c.id, _ACCOUNTS.c.balance_fen).where(_ACCOUNTS.c.id.in_(guarded))
        ):
            if new_balance < 0:
                raise InsufficientFunds(
                    "The account does not hold enough money for this movement.",
                    details={"short_by_fen": -new_balance},
                )

    now = utcnow()
    entries = [
        JournalEntry(
            kind=s.kind, memo=s.memo, dedupe_key=s.dedupe_key, actor_id=s.actor_id, created_at=now
        )
        for s in specs
    ]
    session.add_all(entries)
    session.flush()
    # The postings by one Core executemany: an aggregated giving-day entry has a leg per
    # project, and ORM objects for them cost more than their insert.
    rows = [
        {"entry_id": entry.id, "account_id": ids[leg.account], "amount_fen": leg.amount_fen}
        for entry, spec in zip(entries, specs, strict=True)
        for leg in spec.legs
    ]
    session.execute(_POSTINGS.insert(), rows)
    if queue_log:
        transparency_sequencer.enqueue(session, list(zip(entries, specs, strict=True)))
    else:
        transparency_log.append_entries(session, list(zip(entries, specs, strict=True)),
                                        head=head)
    if _listeners:
        postings = [Posting(**row) for row in rows]  # transient: the rows are written
        for listener in list(_listeners):
            listener(session, entries, postings)
    return entries


# --- reading -------------------------------------------------------------------------------


def balance(session: Session, code: str) -> int:
    """Return an account's balance (0 for an account that has never moved money)."""
    value = session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == code))
    return int(value or 0)


def balances(session: Session, codes: Iterable[str]) -> dict[str, int]:
    """Return balances for several accounts at once (missing accounts are 0)."""
    wanted = list(set(codes))
    result = dict.fromkeys(wanted, 0)
    if wanted:
        rows = session.execute(
            select(LedgerAccount.code, LedgerAccount.balance_fen).where(
                LedgerAccount.code.in_(wanted)
            )
        )
        result.update({code: int(bal) for code, bal in rows})
    return result


def inflow(session: Session, code: str, *, from_kind: AccountKind) -> int:
    """Sum of money that entered ``code`` in entries where it came from accounts of a kind.

    E.g. the total ever raised for a project is its inflow from ``donor_clearing`` accounts.
    """
    target = select(LedgerAccount.id).where(LedgerAccount.code == code).scalar_subquery()
    source_entries = (
        select(Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.kind == from_kind, Posting.amount_fen < 0)
    )
    value = session.scalar(
        select(func.coalesce(func.sum(Posting.amount_fen), 0)).where(
            Posting.account_id == target,
            Posting.amount_fen > 0,
            Posting.entry_id.in_(source_entries),
        )
    )
    return int(value or 0)


@dataclass
class CheckReport:
    """What ``shanju ledger check`` found."""

    accounts: int
    entries: int
    postings: int
    unbalanced_entries: list[int]
    mismatched_accounts: list[tuple[str, int, int]]  # (code, stored, recomputed)
    total_fen: int

    @property
    def ok(self) -> bool:
        """True when every entry balances and every stored balance equals its recomputation."""
        return not self.unbalanced_entries and not self.mismatched_accounts and self.total_fen == 0


def check(session: Session) -> CheckReport:
    """Recompute every balance from postings and every entry's sum, and compare."""
    unbalanced = [
        int(entry_id)
        for entry_id, _ in session.execute(
            select(Posting.entry_id, func.sum(Posting.amount_fen))
            .group_by(Posting.entry_id)
            .having(func.sum(Posting.amount_fen) != 0)
        )
    ]
    recomputed = {
        int(account_id): int(total)
        for account_id, total in session.execute(
            select(Posting.account_id, func.sum(Posting.amount_fen)).group_by(Posting.account_id)
        )
    }
    mismatched: list[tuple[str, int, int]] = []
    accounts = session.execute(
        select(LedgerAccount.id, LedgerAccount.code, LedgerAccount.balance_fen)
    ).all()
    for account_id, code, stored in accounts:
        actual = int(recomputed.get(account_id, 0))
        if int(stored) != actual:
            mismatched.append((code, int(stored), actual))
    entries = session.scalar(select(func.count()).select_from(JournalEntry)) or 0
    postings = session.scalar(select(func.count()).select_from(Posting)) or 0
    total = session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))) or 0
    return CheckReport(
        accounts=len(accounts),
        entries=int(entries),
        postings=int(postings),
        unbalanced_entries=unbalanced,
        mismatched_accounts=mismatched,
        total_fen=int(total),
    )


def list_accounts(
    *, session: Session, kind: AccountKind | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[LedgerAccount], int]:
    """List accounts (optionally of one kind) by code, and count them."""
    conditions = [LedgerAccount.kind == kind] if kind is not None else []
    total = session.scalar(select(func.count()).select_from(LedgerAccount).where(*conditions))
    rows = session.scalars(
        select(LedgerAccount).where(*conditions).order_by(LedgerAccount.code)
        .limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


def list_entries(
    *, session: Session, account: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[JournalEntry, list[tuple[str, int]]]], int]:
    """Journal entries, newest first, each with its postings as (account code, amount)."""
    query = select(JournalEntry)
    count = select(func.count()).select_from(JournalEntry)
    if account is not None:
        touching = (
            select(Posting.entry_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(LedgerAccount.code == account)
        )
        query = query.where(JournalEntry.id.in_(touching))
        count = count.where(JournalEntry.id.in_(touching))
    entries = list(session.scalars(
        query.order_by(JournalEntry.id.desc()).limit(limit).offset(offset)
    ))
    legs: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if entries:
        rows = session.execute(
            select(Posting.entry_id, LedgerAccount.code, Posting.amount_fen)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id.in_([e.id for e in entries]))
            .order_by(Posting.id)
        )
        for entry_id, code, amount in rows:
            legs[int(entry_id)].append((str(code), int(amount)))
    return [(e, legs[e.id]) for e in entries], int(session.scalar(count) or 0)
