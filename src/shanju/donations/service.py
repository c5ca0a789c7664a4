"""Donations: reading the ``donations`` table itself (ordinary donations as such).

Totals, a project's gifts, its donors and a donor's summary count both kinds of gift (ordinary
donations and giving-day gifts) and are read through the ``gifts`` view by
:mod:`shanju.gifts.service` (ADR 0027) — never here. What stays here reads the ``donations``
table itself: the list of a donor's or a project's donations with their refund state (the
pages where a donation is refunded) and project titles for such lists.

Creating a donation and crediting it when its payment succeeds cross domains (payments,
ledger) and live in :mod:`shanju.donations.flows`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.donations.models import Donation, DonationStatus


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
