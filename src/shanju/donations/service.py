"""Donations: reading totals and lists, and the state changes of a single donation.

Totals count both kinds of gift a project receives: ordinary donations (``donations``) and
giving-day gifts (``campaign_gifts``, ADR 0007) — a giving-day gift with the sponsor's match
that has reached the project (a held match counts once it settles; a refunded gift no
longer counts). That is the money the ledger put in the project's fund for them.

Creating a donation and crediting it when its payment succeeds cross domains (payments,
ledger) and live in :mod:`shanju.donations.flows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Subquery, case, func, select, union, union_all
from sqlalchemy.orm import Session

from shanju.campaigns.models import CampaignGift, GiftStatus, MatchStatus
from shanju.donations.models import Donation, DonationStatus
from shanju.payments.models import PaymentIntent

# What a paid gift still counts for: its amount less what has been (or is being) refunded —
# the same money the ledger keeps in the project's fund for it.
_KEPT_FEN = Donation.amount_fen - PaymentIntent.refunded_fen
# What a paid giving-day gift brought the project: the gift and its match, once it stands.
_GIFT_FEN = CampaignGift.amount_fen + case(
    (CampaignGift.match_status == MatchStatus.MATCHED, CampaignGift.matched_fen), else_=0)
_GIFT_PAID = CampaignGift.status == GiftStatus.PAID


@dataclass(frozen=True)
class ProjectTotals:
    """What a project has raised: paid (and not refunded) money and person-times."""

    raised_fen: int = 0
    donations: int = 0


def _gifts_kept(project_ids: list[int] | None = None) -> Subquery:
    """Every paid gift of either kind as ``(project_id, fen)``, fen as the fund holds it."""
    donations = (
        select(Donation.project_id.label("project_id"), _KEPT_FEN.label("fen"))
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.status == DonationStatus.PAID)
    )
    gifts = select(CampaignGift.project_id.label("project_id"),
                   _GIFT_FEN.label("fen")).where(_GIFT_PAID)
    if project_ids is not None:
        donations = donations.where(Donation.project_id.in_(project_ids))
        gifts = gifts.where(CampaignGift.project_id.in_(project_ids))
    return union_all(donations, gifts).subquery()


def project_totals(*, session: Session, project_ids: Iterable[int]) -> dict[int, ProjectTotals]:
    """Paid totals per project (refunded gifts no longer count); missing projects are zero."""
    ids = list(set(project_ids))
    result = {pid: ProjectTotals() for pid in ids}
    if not ids:
        return result
    kept = _gifts_kept(ids)
    rows = session.execute(
        select(kept.c.project_id, func.sum(kept.c.fen), func.count()).group_by(kept.c.project_id)
    )
    for pid, raised, count in rows:
        result[int(pid)] = ProjectTotals(raised_fen=int(raised or 0), donations=int(count))
    return result


def raised_by_project() -> Subquery:
    """A subquery of ``(project_id, raised)`` over paid gifts, counted as in
    :func:`project_totals` — for ordering projects by what they raised."""
    kept = _gifts_kept()
    return (
        select(kept.c.project_id, func.sum(kept.c.fen).label("raised"))
        .group_by(kept.c.project_id)
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
    """Platform-wide paid totals (ordinary and giving-day gifts), in one query."""
    paid = (select(Donation).join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
            .where(Donation.status == DonationStatus.PAID))
    gifts = select(CampaignGift).where(_GIFT_PAID)
    receivers = union(
        select(Donation.recipient_org_id).where(Donation.status == DonationStatus.PAID),
        select(CampaignGift.organization_id).where(_GIFT_PAID),
    ).subquery()
    raised, count, orgs = session.execute(select(
        paid.with_only_columns(func.coalesce(func.sum(_KEPT_FEN), 0)).scalar_subquery()
        + gifts.with_only_columns(func.coalesce(func.sum(_GIFT_FEN), 0)).scalar_subquery(),
        paid.with_only_columns(func.count()).scalar_subquery()
        + gifts.with_only_columns(func.count()).scalar_subquery(),
        select(func.count()).select_from(receivers).scalar_subquery(),
    )).one()
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
    """Return what one donor has given (paid, not refunded; ordinary and giving-day gifts —
    the donor's own money, not the sponsors' matches)."""
    gifts = union_all(
        select(Donation.project_id.label("project_id"), _KEPT_FEN.label("fen"))
        .join(PaymentIntent, PaymentIntent.id == Donation.payment_intent_id)
        .where(Donation.donor_id == donor_id, Donation.status == DonationStatus.PAID),
        select(CampaignGift.project_id.label("project_id"),
               CampaignGift.amount_fen.label("fen"))
        .where(CampaignGift.donor_id == donor_id, _GIFT_PAID),
    ).subquery()
    given, count, projects = session.execute(
        select(func.coalesce(func.sum(gifts.c.fen), 0), func.count(),
               func.count(func.distinct(gifts.c.project_id)))
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
