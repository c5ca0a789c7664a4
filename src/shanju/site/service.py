"""Queries of the home page: featured projects with their totals, and platform totals."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.core import images
from shanju.gifts import service as gifts
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization
from shanju.projects.models import Project, ProjectStatus

# Projects the public may see on the home page (drafts, rejected and taken-down ones never).
PUBLIC_STATUSES = (
    ProjectStatus.FUNDRAISING,
    ProjectStatus.ENDED,
    ProjectStatus.EXECUTING,
    ProjectStatus.COMPLETED,
)


@dataclass(frozen=True)
class ProjectCard:
    """What a project card shows: the project, who runs it and how far it got."""

    id: int
    title: str
    summary: str
    province: str
    category: str
    status: ProjectStatus
    organization_name: str
    goal_fen: int
    raised_fen: int
    donations: int
    cover: images.Picture | None = None

    @property
    def percent(self) -> int:
        """Whole percent of the goal raised (may exceed 100)."""
        return self.raised_fen * 100 // self.goal_fen if self.goal_fen > 0 else 0

    @property
    def goal_reached(self) -> bool:
        """Whether a fundraising project has raised its goal (已筹满, not 募捐中)."""
        return self.status == ProjectStatus.FUNDRAISING and self.raised_fen >= self.goal_fen

    @property
    def bar_percent(self) -> int:
        """Width of the progress bar: the percent, capped at 100."""
        return min(self.percent, 100)


_CARD_COLUMNS = (
    Project.id,
    Project.title,
    Project.summary,
    Project.province,
    Project.category,
    Project.status,
    Project.goal_fen,
    func.coalesce(Organization.short_name, Organization.name),
    Project.cover_image_id,
)


def featured_projects(*, session: Session, limit: int = 6,
                      snapshot: gifts.TotalsSnapshot | None = None) -> list[ProjectCard]:
    """List projects for the home page: featured ones first, then those most given to.

    The ranking reads the process's totals snapshot (``gifts.totals_snapshot``), not a sum of
    every gift per request: featured cards, the fundraising projects' ids, then the chosen
    cards.
    """
    rows = list(
        session.execute(
            select(*_CARD_COLUMNS)
            .join(Organization, Organization.id == Project.organization_id)
            .where(Project.featured.is_(True), Project.status.in_(PUBLIC_STATUSES))
            .order_by(Project.id.desc())
            .limit(limit)
        )
    )
    snapshot = snapshot or gifts.totals_snapshot(session=session)
    if len(rows) < limit:
        chosen = {row[0] for row in rows}
        candidates = [pid for pid in session.scalars(
            select(Project.id).where(Project.status == ProjectStatus.FUNDRAISING))
            if pid not in chosen]
        candidates.sort(key=lambda pid: (snapshot.of(pid).raised_fen, pid), reverse=True)
        top = candidates[:limit - len(rows)]
        if top:
            by_id = {row[0]: row for row in session.execute(
                select(*_CARD_COLUMNS)
                .join(Organization, Organization.id == Project.organization_id)
                .where(Project.id.in_(top)))}
            rows.extend(by_id[pid] for pid in top)
    totals = {row[0]: snapshot.of(row[0]) for row in rows}
    covers = images.pictures(session=session, attachment_ids=[row[-1] for row in rows])
    cards = []
    for pid, title, summary, province, category, status, goal_fen, org_name, cover_id in rows:
        total = totals[pid]
        cards.append(
            ProjectCard(
                id=pid, title=title, summary=summary, province=province, category=category,
                status=status, organization_name=org_name, goal_fen=goal_fen,
                raised_fen=total.raised_fen, donations=total.donations,
                cover=covers.get(cover_id) if cover_id is not None else None,
            )
        )
    return cards


@dataclass(frozen=True)
class HomeTotals:
    """The home page's figures: money raised and gifts (paid), and approved organizations."""

    raised_fen: int
    donations: int
    organizations: int


def home_page(*, session: Session, limit: int = 6) -> tuple[HomeTotals, list[ProjectCard]]:
    """Everything the home page shows: platform totals and featured project cards."""
    # Organizations are those approved on the platform, not those already given to: a new
    # platform with verified organizations but no gifts yet should not read "0".
    snapshot = gifts.totals_snapshot(session=session)
    paid = snapshot.platform
    totals = HomeTotals(
        raised_fen=paid.raised_fen,
        donations=paid.donations,
        organizations=organizations.count_approved(session=session),
    )
    return totals, featured_projects(session=session, limit=limit, snapshot=snapshot)
