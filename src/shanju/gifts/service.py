"""Reading gifts of both kinds: totals, lists, donors — all through the ``gifts`` view.

Totals count a gift as the project's fund holds it (ADR 0027, docs/architecture.md "A gift:
one read model"): a paid gift's amount less what has been (or is being) refunded of it, plus
the sponsors' match that stands in the project (a held match once it settles). A refunded,
pending or failed gift counts for nothing. That is the money the ledger put in the project's
fund for them; a property test compares the two.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Engine,
    ScalarSelect,
    String,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from shanju.campaigns.models import CampaignGift
from shanju.donations.models import Donation
from shanju.gifts.models import RECEIVED, Gift, GiftKind, GiftStatus
from shanju.ledger.models import JournalEntry


def raised_fen() -> ColumnElement[int]:
    """What a paid gift adds to its project's raised total (apply to paid gifts only)."""
    return Gift.amount_fen - Gift.refunded_fen + Gift.matched_fen


def donor_key() -> ColumnElement[str]:
    """Who gave, for counting distinct donors: an account (``u<id>``), else the payer the
    provider identified (``x<hash>``), else the gift itself (one donor per guest gift)."""
    return case(
        (Gift.donor_id.is_not(None), literal("u", String) + cast(Gift.donor_id, String)),
        (Gift.payer_hash != "", literal("x", String) + Gift.payer_hash),
        else_=literal("g", String) + Gift.public_id,
    )


_PAID = Gift.status == GiftStatus.PAID


@dataclass(frozen=True)
class ProjectTotals:
    """What a project has raised: paid (and not refunded) money and person-times."""

    raised_fen: int = 0
    donations: int = 0


def project_totals(*, session: Session, project_ids: Iterable[int]) -> dict[int, ProjectTotals]:
    """Paid totals per project (refunded gifts no longer count); missing projects are zero."""
    ids = list(set(project_ids))
    result = {pid: ProjectTotals() for pid in ids}
    if not ids:
        return result
    rows = session.execute(
        select(Gift.project_id, func.sum(raised_fen()), func.count())
        .where(Gift.project_id.in_(ids), _PAID)
        .group_by(Gift.project_id)
    )
    for pid, raised, count in rows:
        result[int(pid)] = ProjectTotals(raised_fen=int(raised or 0), donations=int(count))
    return result


def project_raised_fen(project_id: int) -> ScalarSelect[int]:
    """What one project has raised (as :func:`project_totals` sums it), as a scalar subquery:
    read in the same statement as other columns."""
    return (select(func.coalesce(func.sum(raised_fen()), 0))
            .where(Gift.project_id == project_id, _PAID).scalar_subquery())


@dataclass(frozen=True)
class PlatformTotals:
    """Totals for the home page: money, person-times and organizations that received gifts."""

    raised_fen: int
    donations: int
    organizations: int


def platform_totals(*, session: Session) -> PlatformTotals:
    """Platform-wide paid totals (ordinary and giving-day gifts), in one query."""
    raised, count, orgs = session.execute(
        select(func.coalesce(func.sum(raised_fen()), 0), func.count(),
               func.count(func.distinct(Gift.organization_id)))
        .where(_PAID)
    ).one()
    return PlatformTotals(raised_fen=int(raised), donations=int(count), organizations=int(orgs))


# --- the totals lists show: summed once, shared by a process's requests -----------------------


@dataclass(frozen=True)
class TotalsSnapshot:
    """Every project's paid totals and the platform's, summed in one query.

    Lists (the home page, the project list and search, an organization's projects) read their
    figures from here instead of summing the gifts of the projects they show on every request:
    the sum scans every paid gift (the ``gifts`` view), which grows with the platform. A project's
    own page and the goal check of an ordinary gift before paying sum exactly, with
    :func:`project_totals` (a giving day's order, with :func:`project_raised_fen` through
    ``campaigns.orders.OrderFacts``: at most a second old, read afresh before refusing).
    """

    version: tuple[int, int, int]
    taken_at: float
    projects: Mapping[int, ProjectTotals]
    platform: PlatformTotals

    def of(self, project_id: int) -> ProjectTotals:
        """A project's totals (zero when nobody gave yet)."""
        return self.projects.get(project_id, _ZERO)


_ZERO = ProjectTotals()
#: A snapshot is reused while no money moved (no new journal entry, donation or giving-day
#: gift) and it is younger than ``SNAPSHOT_MAX_AGE_S`` (a backstop); when money moved, it is
#: still reused while younger than ``SNAPSHOT_MIN_AGE_S``, so that a giving day's stream of
#: batches costs one sum a second, not one per request (lists then lag a gift by ≤ 1 s).
SNAPSHOT_MIN_AGE_S = 1.0
SNAPSHOT_MAX_AGE_S = 10.0
_snapshots: weakref.WeakKeyDictionary[Engine, TotalsSnapshot] = weakref.WeakKeyDictionary()
_snapshot_lock = threading.Lock()


def _money_version(session: Session) -> tuple[int, int, int]:
    # Three primary-key maxima: an index's last entry each, whatever the platform's size.
    row = session.execute(select(
        select(func.max(JournalEntry.id)).scalar_subquery(),
        select(func.max(Donation.id)).scalar_subquery(),
        select(func.max(CampaignGift.id)).scalar_subquery(),
    )).one()
    return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def totals_snapshot(*, session: Session, clock: Callable[[], float] = time.monotonic
                    ) -> TotalsSnapshot:
    """The process's current :class:`TotalsSnapshot` for the session's database (summed
    again when money moved since, see ``SNAPSHOT_MIN_AGE_S``)."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)  # noqa: S101 - sessions are bound to one engine here
    version = _money_version(session)
    now = clock()
    current = _snapshots.get(engine)
    if current is not None and _fresh(current, version, now):
        return current
    with _snapshot_lock:  # one sum at a time: concurrent requests wait and share it
        current = _snapshots.get(engine)
        if current is not None and _fresh(current, version, clock()):
            return current
        current = _sum_snapshot(session, version, clock())
        _snapshots[engine] = current
        return current


def _fresh(snapshot: TotalsSnapshot, version: tuple[int, int, int], now: float) -> bool:
    age = now - snapshot.taken_at
    if snapshot.version == version:
        return age < SNAPSHOT_MAX_AGE_S
    return age < SNAPSHOT_MIN_AGE_S


def _sum_snapshot(session: Session, version: tuple[int, int, int], now: float
                  ) -> TotalsSnapshot:
    per_project: dict[int, ProjectTotals] = {}
    raised_all = count_all = 0
    organizations: set[int] = set()
    rows = session.execute(
        select(Gift.project_id, Gift.organization_id, func.sum(raised_fen()), func.count())
        .where(_PAID)
        .group_by(Gift.project_id, Gift.organization_id)
    )
    for pid, org_id, raised, count in rows:
        raised, count = int(raised or 0), int(count)
        before = per_project.get(int(pid), _ZERO)
        per_project[int(pid)] = ProjectTotals(raised_fen=before.raised_fen + raised,
                                              donations=before.donations + count)
        raised_all += raised
        count_all += count
        if org_id is not None:
            organizations.add(int(org_id))
    return TotalsSnapshot(
        version=version, taken_at=now, projects=per_project,
        platform=PlatformTotals(raised_fen=raised_all, donations=count_all,
                                organizations=len(organizations)),
    )


def _newest_paid(*, session: Session, project_id: int, limit: int, offset: int = 0
                 ) -> list[Gift]:
    # Keys first, then the rows. PostgreSQL sorts the project's gifts without joining each
    # donation to its payment intent; SQLite merges the two halves of the view, the donations
    # read in order from their index (it flattens the view only when the ORDER BY columns are
    # selected). The page's rows are then read by their unique public ids.
    order = (Gift.paid_at.desc(), Gift.kind.asc(), Gift.source_id.desc())
    keys = [key for key, *_ in session.execute(
        select(Gift.public_id, Gift.paid_at, Gift.kind, Gift.source_id)
        .where(Gift.project_id == project_id, _PAID)
        .order_by(*order).limit(limit).offset(offset))]
    if not keys:
        return []
    rows = {g.public_id: g for g in session.scalars(select(Gift).where(Gift.public_id.in_(keys)))}
    return [rows[key] for key in keys]


def recent_gifts(*, session: Session, project_id: int, limit: int = 20) -> list[Gift]:
    """Return the latest paid gifts to a project, newest first (show names masked!)."""
    return _newest_paid(session=session, project_id=project_id, limit=limit)


def list_project_gifts(*, session: Session, project_id: int, limit: int = 20,
                       offset: int = 0) -> tuple[list[Gift], int]:
    """List a project's paid gifts of both kinds, newest first, and count them all."""
    total = session.scalar(select(func.count()).select_from(Gift).where(
        Gift.project_id == project_id, _PAID)) or 0
    return (_newest_paid(session=session, project_id=project_id, limit=limit, offset=offset),
            int(total))


def donor_ids_of_project(*, session: Session, project_id: int) -> list[int]:
    """List users who gave (paid) to a project, either way: whom to tell when it is paused or
    taken down."""
    return sorted(
        int(uid)
        for uid in session.scalars(
            select(Gift.donor_id)
            .where(Gift.project_id == project_id, _PAID, Gift.donor_id.is_not(None))
            .distinct()
        )
        if uid is not None
    )


@dataclass(frozen=True)
class DonorSummary:
    """A donor's giving at a glance."""

    given_fen: int
    donations: int
    projects: int


def donor_summary(*, session: Session, donor_id: int) -> DonorSummary:
    """Return what one donor has given (paid, not refunded; ordinary and giving-day gifts —
    the donor's own money, not the sponsors' matches)."""
    given, count, projects = session.execute(
        select(func.coalesce(func.sum(Gift.amount_fen - Gift.refunded_fen), 0), func.count(),
               func.count(func.distinct(Gift.project_id)))
        .where(Gift.donor_id == donor_id, _PAID)
    ).one()
    return DonorSummary(given_fen=int(given), donations=int(count), projects=int(projects))


def is_own_received_gift(*, session: Session, kind: GiftKind, public_id: str,
                         donor_id: int) -> bool:
    """Whether the donor's own gift ``public_id`` of ``kind`` was paid (refunded since or not)."""
    return session.scalar(
        select(Gift.public_id).where(Gift.kind == kind, Gift.public_id == public_id,
                                     Gift.donor_id == donor_id, Gift.status.in_(RECEIVED))
    ) is not None
