"""Donations: reading totals and lists, and the state changes of a single donation.

Creating a donation and crediting it when its payment succeeds cross domains (payments,
ledger) and live in :mod:`shanju.donations.flows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Subquery, func, select
from sqlalchemy.orm import Session

from shanju.donations.models import Donation, DonationStatus
from shanju.payments.models import PaymentIntent

# What a paid gift still counts for: its amount less what has been (or is being) refunded —
# the same money the ledger keeps in the project's fund for it.
_KEPT_FEN = Donation.amount_fen - PaymentIntent.refunded_fen


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
        select(Donation.project_id, func.sum(_KEPT_FEN), func.count())
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.project_id.in_(ids), Donation.status == DonationStatus.PAID)
        .group_by(Donation.project_id)
    )
    for pid, raised, count in rows:
        result[int(pid)] = ProjectTotals(raised_fen=int(raised or 0), donations=int(count))
    return result


def raised_by_project() -> Subquery:
    """A subquery of ``(project_id, raised)`` over paid gifts, counted as in
    :func:`project_totals` — for ordering projects by what they raised."""
    return (
        select(Donation.project_id, func.sum(_KEPT_FEN).label("raised"))
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.status == DonationStatus.PAID)
        .group_by(Donation.project_id)
        .subquery()
    )


def recent_donations(*, session: Session, project_id: int, limit: int = 20) -> list[Donation]:
    """Return the latest paid gifts to a project, newest first (show names masked!)."""
    return list(
        session.scalars(
            select(Donation)
            .where(Donation.project_id == project_id, Donation.status == DonationStatus.PAID)
            .order_by(Donation.paid_at.desc(), Donation.id.desc())
            .limit(limit)
        )
    )


def donor_ids_of_project(*, session: Session, project_id: int) -> list[int]:
    """List users who gave (paid) to a project: whom to tell when it is paused or taken down."""
    return [
        uid
        for uid in session.scalars(
            select(Donation.donor_id)
            .where(
                Donation.project_id == project_id,
                Donation.status == DonationStatus.PAID,
                Donation.donor_id.is_not(None),
            )
            .distinct()
        )
        if uid is not None
    ]


@dataclass(frozen=True)
class PlatformTotals:
    """Totals for the home page: money, person-times and organizations that received gifts."""

    raised_fen: int
    donations: int
    organizations: int


def platform_totals(*, session: Session) -> PlatformTotals:
    """Platform-wide paid totals."""
    raised, count, orgs = session.execute(
        select(
            func.coalesce(func.sum(_KEPT_FEN), 0),
            func.count(),
            func.count(func.distinct(Donation.recipient_org_id)),
        )
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.status == DonationStatus.PAID)
    ).one()
    return PlatformTotals(raised_fen=int(raised), donations=int(count), organizations=int(orgs))


def list_donations(
    *,
    session: Session,
    project_id: int | None = None,
    recipient_org_id: int | None = None,
    donor_id: int | None = None,
    statuses: Iterable[DonationStatus] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Donation], int]:
    """List donations matching the filters, newest first, and count them all."""
    conditions = []
    if project_id is not None:
        conditions.append(Donation.project_id == project_id)
    if recipient_org_id is not None:
        conditions.append(Donation.recipient_org_id == recipient_org_id)
    if donor_id is not None:
        conditions.append(Donation.donor_id == donor_id)
    if statuses is not None:
        conditions.append(Donation.status.in_(list(statuses)))
    total = session.scalar(select(func.count()).select_from(Donation).where(*conditions)) or 0
    rows = session.scalars(
        select(Donation)
        .where(*conditions)
        .order_by(Donation.created_at.desc(), Donation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


@dataclass(frozen=True)
class DonorSummary:
    """A donor's giving at a glance."""

    given_fen: int
    donations: int
    projects: int


def donor_summary(*, session: Session, donor_id: int) -> DonorSummary:
    """Return what one donor has given (paid, not refunded)."""
    given, count, projects = session.execute(
        select(
            func.coalesce(func.sum(_KEPT_FEN), 0),
            func.count(),
            func.count(func.distinct(Donation.project_id)),
        )
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.donor_id == donor_id, Donation.status == DonationStatus.PAID)
    ).one()
    return DonorSummary(given_fen=int(given), donations=int(count), projects=int(projects))


def project_titles(*, session: Session, project_ids: Iterable[int]) -> dict[int, str]:
    """Return titles of projects, for lists of donations."""
    from shanju.projects.models import Project

    ids = list(set(project_ids))
    if not ids:
        return {}
    return {
        int(pid): str(title)
        for pid, title in session.execute(
            select(Project.id, Project.title).where(Project.id.in_(ids))
        )
    }
