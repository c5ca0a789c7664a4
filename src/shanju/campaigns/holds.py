"""A giving-day gift's matching decision for the people allowed to see it, and the reviewers'
queue of held matches.

- :func:`get_gift_for_viewer`: one gift with what its page shows (project, organization,
  sponsor). Its donor, the receiving organization's staff and platform reviewers may see it;
  to anyone else it does not exist (404), so an order id reveals nothing.
- :func:`list_held`: matches held through the public notice period (公示期), oldest first, for
  reviewers — donor names masked, payer and device hashes cut to a short prefix.
- :func:`do_release_held`: a reviewer returns a held match to its pool, with a reason
  (``campaigns.flows.release_held``, the engine's flow).

Why a decision was made is worded by :mod:`shanju.campaigns.explain`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import flows
from shanju.campaigns.models import Campaign, CampaignGift, MatchPool, MatchStatus, Sponsor
from shanju.core.clock import utcnow
from shanju.core.errors import NotFound
from shanju.core.i18n import N_
from shanju.core.masking import mask_name
from shanju.organizations.models import Organization
from shanju.projects.models import Project

HASH_PREFIX = 8  # reviewers see this many characters of a payer/device hash


def short_hash(value: str) -> str:
    """Return the first characters of a hash (enough to compare, too few to look up)."""
    return value[:HASH_PREFIX] if value else ""


def _not_found() -> NotFound:
    return NotFound(N_("No such gift."), code="gift_not_found")


def can_see_gift(gift: CampaignGift, viewer: User | None) -> bool:
    """Its donor, staff of the receiving organization and reviewers may see a gift."""
    if viewer is None:
        return False
    if viewer.is_reviewer:
        return True
    if gift.donor_id is not None and gift.donor_id == viewer.id:
        return True
    return (viewer.role == Role.ORG_STAFF and viewer.organization_id is not None
            and viewer.organization_id == gift.organization_id)


@dataclass(frozen=True, slots=True)
class GiftDetail:
    """One gift and the names its page shows."""

    gift: CampaignGift
    campaign: Campaign
    project_title: str
    organization_name: str
    sponsor_name: str | None
    donor_display: str  # masked unless the viewer is the donor

    @property
    def total_fen(self) -> int:
        """What the project receives (or will, once a held match settles) for this gift."""
        return self.gift.amount_fen + (
            self.gift.matched_fen if self.gift.match_status in
            (MatchStatus.MATCHED, MatchStatus.HELD) else 0)


def get_gift_for_viewer(*, session: Session, order_id: str, viewer: User | None) -> GiftDetail:
    """Return the gift with ``order_id`` if ``viewer`` may see it; else NotFound."""
    detail = gift_detail(session=session, order_id=order_id, viewer=viewer)
    if detail is None or not can_see_gift(detail.gift, viewer):
        raise _not_found()
    return detail


def gift_detail(*, session: Session, order_id: str, viewer: User | None = None
                ) -> GiftDetail | None:
    """Return the gift with ``order_id`` and the names its pages show, or None — for a caller
    that decided who may see it (:func:`get_gift_for_viewer`, or the order's own page opened
    with its key). The donor's name is masked unless ``viewer`` gave the gift."""
    if not order_id or len(order_id) > 40:
        return None
    row = session.execute(
        select(CampaignGift, Campaign, Project.title, Organization.name, Sponsor.name)
        .join(Campaign, Campaign.id == CampaignGift.campaign_id)
        .join(Project, Project.id == CampaignGift.project_id)
        .join(Organization, Organization.id == CampaignGift.organization_id)
        .outerjoin(MatchPool, MatchPool.id == CampaignGift.pool_id)
        .outerjoin(Sponsor, Sponsor.id == MatchPool.sponsor_id)
        .where(CampaignGift.order_id == order_id)
    ).one_or_none()
    if row is None:
        return None
    gift, campaign, title, org_name, sponsor_name = row
    own = viewer is not None and gift.donor_id == viewer.id
    return GiftDetail(
        gift=gift, campaign=campaign, project_title=title, organization_name=org_name,
        sponsor_name=sponsor_name,
        donor_display=gift.donor_name if own else mask_name(gift.donor_name,
                                                            anonymous=gift.anonymous),
    )


@dataclass(frozen=True, slots=True)
class HeldMatch:
    """A held match as the reviewers' queue shows it (no personal data beyond a mask)."""

    gift: CampaignGift
    campaign_name: str
    project_title: str
    organization_name: str
    donor_masked: str
    payer_prefix: str
    device_prefix: str


def list_held(*, session: Session, campaign_id: int | None = None, limit: int = 50,
              offset: int = 0) -> tuple[list[HeldMatch], int]:
    """Return held matches (oldest hold first) and how many there are in all."""
    where = [CampaignGift.match_status == MatchStatus.HELD]
    if campaign_id is not None:
        where.append(CampaignGift.campaign_id == campaign_id)
    total = int(session.scalar(select(func.count()).select_from(CampaignGift)
                               .where(*where)) or 0)
    rows = session.execute(
        select(CampaignGift, Campaign.name, Project.title, Organization.name)
        .join(Campaign, Campaign.id == CampaignGift.campaign_id)
        .join(Project, Project.id == CampaignGift.project_id)
        .join(Organization, Organization.id == CampaignGift.organization_id)
        .where(*where)
        .order_by(CampaignGift.hold_until, CampaignGift.id)
        .limit(limit).offset(offset)
    ).all()
    items = [
        HeldMatch(
            gift=gift, campaign_name=campaign_name, project_title=title,
            organization_name=org_name,
            donor_masked=mask_name(gift.donor_name, anonymous=gift.anonymous),
            payer_prefix=short_hash(gift.payer_hash), device_prefix=short_hash(gift.device_hash),
        )
        for gift, campaign_name, title, org_name in rows
    ]
    return items, total


def do_release_held(*, session: Session, order_id: str, actor: User,
                    reason: str) -> CampaignGift:
    """Return a held match to its sponsor's pool (a reviewer's decision, with a reason).

    The engine's flow does the work under the campaign lock: hold → pool in the ledger and
    back into ``remaining_fen``, the caps it used freed, the live stats, the audit entry.
    """
    if not order_id or len(order_id) > 40:
        raise _not_found()
    return flows.release_held(session=session, actor=actor, order_id=order_id,
                              reason=reason[:200])


def hold_days_left(gift: CampaignGift, *, now: dt.datetime | None = None) -> int | None:
    """Return whole days until a held match settles (0 when due), or None if not held."""
    if gift.match_status != MatchStatus.HELD or gift.hold_until is None:
        return None
    left = gift.hold_until - (now or utcnow())
    return max(0, -(-left // dt.timedelta(days=1)))


@dataclass(frozen=True, slots=True)
class DonorGift:
    """One of a donor's giving-day gifts, for "my donations"."""

    gift: CampaignGift
    project_title: str


def donor_gifts(*, session: Session, donor_id: int, limit: int = 50) -> list[DonorGift]:
    """Return a donor's giving-day gifts, newest first, with their projects' titles."""
    from shanju.projects.models import Project

    rows = session.execute(
        select(CampaignGift, Project.title)
        .join(Project, Project.id == CampaignGift.project_id)
        .where(CampaignGift.donor_id == donor_id)
        .order_by(CampaignGift.paid_at.desc(), CampaignGift.id.desc())
        .limit(limit)
    )
    return [DonorGift(gift, str(title)) for gift, title in rows]
