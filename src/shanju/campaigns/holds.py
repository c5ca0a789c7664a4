"""A giving-day gift's matching decision for the people allowed to see it, and the reviewers'
queue of held matches.

- :func:`get_gift_for_viewer`: one gift with what its page shows (project, organization,
  sponsor). Its donor, the receiving organization's staff and platform reviewers may see it;
  to anyone else it does not exist (404), so an order id reveals nothing.
- :func:`list_held`: matches held through the public notice period (公示期), oldest first, for
  reviewers — donor names masked, payer and device hashes cut to a short prefix.
- :func:`do_release_held`: a reviewer returns a held match to its pool
  (``campaigns.flows.release_held``, the engine's flow).

Why a decision was made is worded by :mod:`shanju.campaigns.explain`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import check, locks, rules
from shanju.campaigns.engine import stat_rows
from shanju.campaigns.models import (
    Campaign,
    CampaignCounter,
    CampaignGift,
    CampaignStat,
    GiftStatus,
    MatchPool,
    MatchStatus,
    Sponsor,
)
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.errors import Conflict, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.core.masking import mask_name
from shanju.ledger import service as ledger
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
    if not order_id or len(order_id) > 40:
        raise _not_found()
    row = session.execute(
        select(CampaignGift, Campaign, Project.title, Organization.name, Sponsor.name)
        .join(Campaign, Campaign.id == CampaignGift.campaign_id)
        .join(Project, Project.id == CampaignGift.project_id)
        .join(Organization, Organization.id == CampaignGift.organization_id)
        .outerjoin(MatchPool, MatchPool.id == CampaignGift.pool_id)
        .outerjoin(Sponsor, Sponsor.id == MatchPool.sponsor_id)
        .where(CampaignGift.order_id == order_id)
    ).one_or_none()
    if row is None or not can_see_gift(row[0], viewer):
        raise _not_found()
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


def _check_reviewer(actor: User) -> None:
    if not actor.is_reviewer:
        raise PermissionDenied(N_("Only platform reviewers may do this."), code="reviewer_only")


def do_release_held(*, session: Session, order_id: str, actor: User) -> CampaignGift:
    """Return a held match to its sponsor's pool (a reviewer's decision); audited."""
    _check_reviewer(actor)
    found = session.scalar(select(CampaignGift.campaign_id)
                           .where(CampaignGift.order_id == order_id))
    if found is None:
        raise _not_found()
    locks.lock_campaigns(session, [found])
    # Decide on the gift as it is now, under the campaign lock.
    gift = session.scalars(select(CampaignGift).where(CampaignGift.order_id == order_id)
                           .execution_options(populate_existing=True)).one()
    if gift.match_status != MatchStatus.HELD:
        raise Conflict(N_("This match is not held (any more)."), code="match_not_held")
    return _release_held(session, gift, actor=actor)


def _release_held(session: Session, gift: CampaignGift, *, actor: User) -> CampaignGift:
    """Smallest private version of ``campaigns.flows.release_held`` (the engine's, not on main
    when this was written), keeping what ``shanju campaigns check`` verifies: the match moves
    hold → pool in the ledger and back into ``remaining_fen``; the caps it counted towards are
    freed (as for a refund); the live stats stop counting it as matched. Runs under the
    campaign lock (the caller's).
    """
    pool_id = gift.pool_id
    amount = gift.matched_fen
    if pool_id is None or amount <= 0:
        raise Conflict(N_("This match is not held (any more)."), code="match_not_held")
    session.execute(update(MatchPool).where(MatchPool.id == pool_id)
                    .values(remaining_fen=MatchPool.remaining_fen + amount))
    ledger.post(session, ledger.transfer(
        "campaign.match_released", source=ledger.match_hold(pool_id),
        destination=ledger.match_pool(pool_id), amount_fen=amount,
        dedupe_key=f"campaign.match_released:{gift.id}", actor_id=actor.id,
        no_overdraft_source=True,
    ))
    ctx = rules.GiftContext(
        gift.order_id, gift.amount_fen, check.donor_key(gift.donor_id, gift.payer_hash,
                                                        gift.order_id),
        gift.project_id, gift.organization_id, gift.day.isoformat(), "")
    session.execute(
        update(CampaignCounter)
        .where(CampaignCounter.campaign_id == gift.campaign_id,
               CampaignCounter.key.in_(rules.all_counter_keys(pool_id, ctx)))
        .values(value=case((CampaignCounter.value >= amount, CampaignCounter.value - amount),
                           else_=0)))
    if gift.status == GiftStatus.PAID:
        row = (gift.campaign_id, gift.project_id, gift.organization_id, gift.province,
               check.minute_key(gift.paid_at))
        old = stat_rows([(*row, pool_id, 1, gift.amount_fen, amount)])
        new = stat_rows([(*row, None, 1, gift.amount_fen, 0)])
        for key in set(old) | set(new):
            was, now = old.get(key, [0, 0, 0]), new.get(key, [0, 0, 0])
            session.execute(
                update(CampaignStat)
                .where(CampaignStat.campaign_id == key[0], CampaignStat.dim == key[1],
                       CampaignStat.key == key[2])
                .values(gifts=CampaignStat.gifts + now[0] - was[0],
                        raised_fen=CampaignStat.raised_fen + now[1] - was[1],
                        matched_fen=CampaignStat.matched_fen + now[2] - was[2]))
    change = audit.changes(gift, match_status=MatchStatus.RELEASED)
    audit.record(session, actor_id=actor.id, action="campaigns.match.released",
                 object_type="campaign_gift", object_id=gift.id,
                 data={**change, "pool_id": pool_id, "amount_fen": amount,
                       "reason": gift.reason, "at": utcnow().isoformat()})
    session.flush()
    return gift


def hold_days_left(gift: CampaignGift, *, now: dt.datetime | None = None) -> int | None:
    """Return whole days until a held match settles (0 when due), or None if not held."""
    if gift.match_status != MatchStatus.HELD or gift.hold_until is None:
        return None
    left = gift.hold_until - (now or utcnow())
    return max(0, -(-left // dt.timedelta(days=1)))
