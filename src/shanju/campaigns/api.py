"""JSON API routes of giving-day campaigns (under /api/v1): configuration and enrolment.

Anyone may read published campaigns (scheduled, live, ended) with their sponsors, pools and
approved projects; reviewers create and configure them; organization staff enrol projects.
Money is integer fen. Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import quadratic, schemas
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import Campaign, CampaignStatus, EnrolmentStatus, Sponsor
from shanju.campaigns.rules import RuleParams
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, DbSession, OrgStaff, Reviewer, Viewer
from shanju.core.errors import NotAuthenticated, NotFound
from shanju.organizations import service as organizations
from shanju.projects import service as projects

router = APIRouter(tags=["campaigns"])

Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def _sponsor_read(s: Sponsor) -> schemas.SponsorRead:
    return schemas.SponsorRead(id=s.id, campaign_id=s.campaign_id, name=s.name, kind=s.kind,
                               organization_id=s.organization_id)


def _rule(rule: RuleParams, private: bool) -> RuleParams:
    # A random ratio's seed stays with reviewers: with it, anyone could tell in advance which
    # order ids a draw would match and keep ordering until one is.
    return rule if private or not rule.random else rule.model_copy(update={"seed": 0})


def _private(viewer: User | None) -> bool:
    return viewer is not None and viewer.is_reviewer


def _pool_read(v: campaigns.PoolView, private: bool = True) -> schemas.PoolRead:
    p = v.pool
    return schemas.PoolRead(
        id=p.id, campaign_id=p.campaign_id, sponsor_id=p.sponsor_id, sponsor_name=v.sponsor.name,
        name=p.name, kind=p.kind, status=p.status, priority=p.priority,
        committed_fen=p.committed_fen, remaining_fen=p.remaining_fen,
        rule_version=p.rule_version, rule=_rule(v.rule, private), exhausted_at=p.exhausted_at)


def _brief(c: Campaign) -> schemas.CampaignBrief:
    return schemas.CampaignBrief(
        id=c.id, slug=c.slug, name=c.name, name_en=c.name_en, status=c.status,
        starts_on=c.starts_on, ends_on=campaigns.campaign_days(c)[1], opens_at=c.opens_at,
        closes_at=c.closes_at)


def _detail(session: Session, c: Campaign, private: bool = True) -> schemas.CampaignRead:
    pools = campaigns.list_pools(session=session, campaign_id=c.id)
    return schemas.CampaignRead(
        id=c.id, slug=c.slug, name=c.name, name_en=c.name_en, summary=c.summary,
        status=c.status, starts_on=c.starts_on, ends_on=campaigns.campaign_days(c)[1],
        days=c.days, opens_at=c.opens_at, closes_at=c.closes_at, org_quota=c.org_quota,
        hold_days=c.hold_days,
        committed_fen=sum(v.pool.committed_fen for v in pools),
        remaining_fen=sum(v.pool.remaining_fen for v in pools),
        sponsors=[_sponsor_read(s) for s in campaigns.list_sponsors(session=session,
                                                                     campaign_id=c.id)],
        pools=[_pool_read(v, private) for v in pools])


def _enrolment_read(v: campaigns.EnrolmentView, *, private: bool) -> schemas.EnrolmentRead:
    e = v.enrolment
    return schemas.EnrolmentRead(
        id=e.id, campaign_id=e.campaign_id, project_id=e.project_id,
        project_title=v.project_title, organization_id=e.organization_id,
        organization_name=v.organization_name, status=e.status,
        matching_frozen=e.matching_frozen, frozen_reason=e.frozen_reason if private else "",
        note=e.note if private else "", applied_at=e.applied_at, decided_at=e.decided_at)


def _fields(body: schemas.CampaignCreate | schemas.CampaignUpdate) -> campaigns.CampaignFields:
    data: dict[str, Any] = body.model_dump(exclude_unset=isinstance(body, schemas.CampaignUpdate))
    return campaigns.CampaignFields(**{k: v for k, v in data.items() if v is not None})


# --- campaigns -------------------------------------------------------------------------------


@router.get("/campaigns", response_model=schemas.CampaignPage, summary="List campaigns")
def list_campaigns(
    session: DbSession, viewer: Viewer,
    status: Annotated[list[CampaignStatus] | None, Query()] = None,
    limit: Limit = 20, offset: Offset = 0,
) -> schemas.CampaignPage:
    """Published campaigns (scheduled, live, ended), live ones first; reviewers also see
    drafts."""
    visible = list(CampaignStatus) if viewer is not None and viewer.is_reviewer else list(
        campaigns.PUBLIC_STATUSES)
    wanted = [s for s in (status or visible) if s in visible]
    items, total = campaigns.list_campaigns(session=session, statuses=wanted, limit=limit,
                                            offset=offset)
    return schemas.CampaignPage(items=[_brief(c) for c in items], total=total, limit=limit,
                                offset=offset)


@router.post("/campaigns", response_model=schemas.CampaignRead, status_code=201,
             summary="Create a draft campaign", dependencies=[CsrfChecked])
def create_campaign(body: schemas.CampaignCreate, session: DbSession,
                    user: Reviewer) -> schemas.CampaignRead:
    """Create a draft campaign (reviewers and admins)."""
    campaign = campaigns.do_create_campaign(session=session, actor=user, fields=_fields(body))
    return _detail(session, campaign)


@router.get("/campaigns/by-slug/{slug}", response_model=schemas.CampaignRead,
            summary="Get a campaign by its slug")
def get_campaign_by_slug(slug: Annotated[str, Path(max_length=40)], session: DbSession,
                         viewer: Viewer) -> schemas.CampaignRead:
    """A published campaign (or a draft, for reviewers) with its sponsors and pools."""
    campaign = campaigns.get_campaign_by_slug(session=session, slug=slug, viewer=viewer)
    return _detail(session, campaign, _private(viewer))


@router.get("/campaigns/{campaign_id}", response_model=schemas.CampaignRead,
            summary="Get a campaign")
def get_campaign(campaign_id: DbId, session: DbSession, viewer: Viewer) -> schemas.CampaignRead:
    """A published campaign (or a draft, for reviewers) with its sponsors and pools."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    return _detail(session, campaign, _private(viewer))


@router.patch("/campaigns/{campaign_id}", response_model=schemas.CampaignRead,
              summary="Edit a campaign", dependencies=[CsrfChecked])
def update_campaign(campaign_id: DbId, body: schemas.CampaignUpdate, session: DbSession,
                    user: Reviewer) -> schemas.CampaignRead:
    """Change names, summary, schedule, quota or notice period (a live campaign's schedule is
    locked: ``schedule_locked``)."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    campaigns.do_update_campaign(session=session, actor=user, campaign=campaign,
                                 fields=_fields(body))
    return _detail(session, campaign)


def _campaign_action(action: str, summary: str, doc: str) -> None:
    def handler(campaign_id: DbId, session: DbSession, user: Reviewer) -> schemas.CampaignRead:
        campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
        campaigns.do_campaign_transition(session=session, actor=user, campaign=campaign,
                                         action=action)
        return _detail(session, campaign)

    handler.__name__ = f"campaign_{action}"
    handler.__doc__ = doc
    router.add_api_route(f"/campaigns/{{campaign_id}}/{action}", handler, methods=["POST"],
                         response_model=schemas.CampaignRead, summary=summary,
                         dependencies=[CsrfChecked])


_campaign_action("publish", "Publish a draft campaign",
                 "Draft → scheduled: the campaign becomes public and takes applications.")
_campaign_action("unpublish", "Take a scheduled campaign back to draft",
                 "Scheduled → draft.")
_campaign_action("start", "Set a campaign live",
                 "Scheduled → live: matching runs in its daily hours. Needs an active pool "
                 "with money (``no_funded_pool``) and an approved project "
                 "(``no_enrolled_projects``).")
_campaign_action("end", "End a live campaign", "Live → ended: matching stops.")


# --- sponsors and pools ----------------------------------------------------------------------


@router.get("/campaigns/{campaign_id}/sponsors", response_model=list[schemas.SponsorRead],
            summary="List a campaign's sponsors")
def list_sponsors(campaign_id: DbId, session: DbSession,
                  viewer: Viewer) -> list[schemas.SponsorRead]:
    """The campaign's sponsors, the platform first."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    return [_sponsor_read(s) for s in campaigns.list_sponsors(session=session,
                                                              campaign_id=campaign.id)]


@router.post("/campaigns/{campaign_id}/sponsors", response_model=schemas.SponsorRead,
             status_code=201, summary="Add a sponsor", dependencies=[CsrfChecked])
def add_sponsor(campaign_id: DbId, body: schemas.SponsorCreate, session: DbSession,
                user: Reviewer) -> schemas.SponsorRead:
    """Add an enterprise or the platform as a sponsor."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    sponsor = campaigns.do_add_sponsor(session=session, actor=user, campaign=campaign,
                                       name=body.name, kind=body.kind,
                                       organization_id=body.organization_id)
    return _sponsor_read(sponsor)


@router.get("/campaigns/{campaign_id}/pools", response_model=list[schemas.PoolRead],
            summary="List a campaign's pools")
def list_pools(campaign_id: DbId, session: DbSession,
               viewer: Viewer) -> list[schemas.PoolRead]:
    """The pools by priority, with committed and remaining money and the rule in force."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    return [_pool_read(v, _private(viewer))
            for v in campaigns.list_pools(session=session, campaign_id=campaign.id)]


def _pool_view(session: Session, campaign: Campaign, pool_id: int,
               private: bool = True) -> schemas.PoolRead:
    for view in campaigns.list_pools(session=session, campaign_id=campaign.id):
        if view.pool.id == pool_id:
            return _pool_read(view, private)
    raise NotFound("This matching pool does not exist.", code="pool_not_found")


@router.post("/campaigns/{campaign_id}/pools", response_model=schemas.PoolRead,
             status_code=201, summary="Create a pool with its commitment",
             dependencies=[CsrfChecked])
def create_pool(campaign_id: DbId, body: schemas.PoolCreate, session: DbSession,
                user: Reviewer) -> schemas.PoolRead:
    """Create a sponsor's pool: ``budget_fen`` moves from the sponsor to the pool in the ledger
    (``pool.committed``) and ``rule`` becomes rule version 1."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    sponsor = campaigns.get_sponsor(session=session, campaign=campaign,
                                    sponsor_id=body.sponsor_id)
    pool = campaigns.do_create_pool(
        session=session, actor=user, campaign=campaign, sponsor=sponsor, name=body.name,
        budget_fen=body.budget_fen, params=body.rule, kind=body.kind, priority=body.priority)
    return _pool_view(session, campaign, pool.id)


@router.get("/campaigns/{campaign_id}/pools/{pool_id}", response_model=schemas.PoolRead,
            summary="Get a pool")
def get_pool(campaign_id: DbId, pool_id: DbId, session: DbSession,
             viewer: Viewer) -> schemas.PoolRead:
    """One pool with its money and the rule in force."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    return _pool_view(session, campaign, pool_id, _private(viewer))


@router.patch("/campaigns/{campaign_id}/pools/{pool_id}", response_model=schemas.PoolRead,
              summary="Rename a pool or change its priority", dependencies=[CsrfChecked])
def update_pool(campaign_id: DbId, pool_id: DbId, body: schemas.PoolUpdate, session: DbSession,
                user: Reviewer) -> schemas.PoolRead:
    """Change a pool's name or priority (lower matches first)."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
    campaigns.do_update_pool(session=session, actor=user, campaign=campaign, pool=pool,
                             name=body.name, priority=body.priority)
    return _pool_view(session, campaign, pool_id)


@router.post("/campaigns/{campaign_id}/pools/{pool_id}/top-up", response_model=schemas.PoolRead,
             summary="Top up a pool", dependencies=[CsrfChecked])
def top_up_pool(campaign_id: DbId, pool_id: DbId, body: schemas.TopUp, session: DbSession,
                user: Reviewer) -> schemas.PoolRead:
    """Add ``amount_fen`` to the pool (``pool.topped_up`` in the ledger)."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
    campaigns.do_top_up_pool(session=session, actor=user, campaign=campaign, pool=pool,
                             amount_fen=body.amount_fen)
    return _pool_view(session, campaign, pool_id)


def _pool_action(action: str, summary: str) -> None:
    def handler(campaign_id: DbId, pool_id: DbId, session: DbSession,
                user: Reviewer) -> schemas.PoolRead:
        campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
        pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
        campaigns.do_set_pool_status(session=session, actor=user, campaign=campaign, pool=pool,
                                     action=action)
        return _pool_view(session, campaign, pool_id)

    handler.__name__ = f"pool_{action}"
    handler.__doc__ = summary + "."
    router.add_api_route(f"/campaigns/{{campaign_id}}/pools/{{pool_id}}/{action}", handler,
                         methods=["POST"], response_model=schemas.PoolRead, summary=summary,
                         dependencies=[CsrfChecked])


_pool_action("pause", "Pause a pool's matching")
_pool_action("resume", "Resume a paused pool's matching")


@router.get("/campaigns/{campaign_id}/pools/{pool_id}/rules",
            response_model=list[schemas.RuleRead], summary="List a pool's rule versions")
def list_rules(campaign_id: DbId, pool_id: DbId, session: DbSession,
               viewer: Viewer) -> list[schemas.RuleRead]:
    """Every version of the pool's rule, oldest first (each gift stores the one it used)."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
    return [schemas.RuleRead(version=r.version, params=_rule(RuleParams.model_validate(
        r.params), _private(viewer)), created_at=r.created_at)
        for r in campaigns.list_rules(session=session, pool_id=pool.id)]


@router.post("/campaigns/{campaign_id}/pools/{pool_id}/rules", response_model=schemas.PoolRead,
             status_code=201, summary="Put a new rule version in force",
             dependencies=[CsrfChecked])
def set_rule(campaign_id: DbId, pool_id: DbId, body: RuleParams, session: DbSession,
             user: Reviewer) -> schemas.PoolRead:
    """Add rule version n+1 and put it in force; earlier versions never change."""
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
    campaigns.do_set_rule(session=session, actor=user, campaign=campaign, pool=pool,
                          params=body)
    return _pool_view(session, campaign, pool_id)


# --- enrolment -------------------------------------------------------------------------------


@router.get("/campaigns/{campaign_id}/enrolments", response_model=schemas.EnrolmentList,
            summary="List a campaign's enrolled projects")
def list_enrolments(
    campaign_id: DbId, session: DbSession, viewer: Viewer,
    status: Annotated[list[EnrolmentStatus] | None, Query()] = None,
    mine: bool = False,
) -> schemas.EnrolmentList:
    """Approved projects for everyone; every status for reviewers (filter with ``status``);
    ``mine=true`` lists the caller's organization's applications (organization staff)."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=viewer)
    reviewer = viewer is not None and viewer.is_reviewer
    org_id: int | None = None
    if mine:
        org_id = organizations.staff_org_id(actor=_signed_in(viewer))
        statuses = status
    elif reviewer:
        statuses = status
    else:
        statuses = [EnrolmentStatus.APPROVED]
    views = campaigns.list_enrolments(session=session, campaign_id=campaign.id,
                                      organization_id=org_id, statuses=statuses)
    return schemas.EnrolmentList(items=[_enrolment_read(v, private=reviewer or mine)
                                        for v in views])


def _signed_in(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    return viewer


@router.post("/campaigns/{campaign_id}/enrolments", response_model=schemas.EnrolmentRead,
             status_code=201, summary="Apply with a project", dependencies=[CsrfChecked])
def apply(campaign_id: DbId, body: schemas.EnrolmentCreate, session: DbSession,
          user: OrgStaff) -> schemas.EnrolmentRead:
    """Enrol one of the organization's fundraising projects (organization staff; at most
    ``org_quota`` applied or approved projects per organization: ``org_quota_reached``)."""
    campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                              viewer=user)
    project = projects.get_project(session=session, project_id=body.project_id)
    enrolment = campaigns.do_apply(session=session, actor=user, campaign=campaign,
                                   project=project)
    return _enrolment_read(campaigns.enrolment_view(session=session, enrolment=enrolment),
                           private=True)


def _enrolment(session: Session, campaign_id: int, enrolment_id: int) -> Any:
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    return campaigns.get_enrolment(session=session, campaign=campaign,
                                   enrolment_id=enrolment_id)


def _done(session: Session, enrolment: Any) -> schemas.EnrolmentRead:
    return _enrolment_read(campaigns.enrolment_view(session=session, enrolment=enrolment),
                           private=True)


@router.post("/campaigns/{campaign_id}/enrolments/{enrolment_id}/approve",
             response_model=schemas.EnrolmentRead, summary="Approve an application",
             dependencies=[CsrfChecked])
def approve(campaign_id: DbId, enrolment_id: DbId, session: DbSession, user: Reviewer,
            body: schemas.Decision | None = None) -> schemas.EnrolmentRead:
    """Approve an applied project (reviewers); an optional note goes to the organization."""
    enrolment = _enrolment(session, campaign_id, enrolment_id)
    campaigns.do_decide_enrolment(session=session, actor=user, enrolment=enrolment,
                                  approve=True, note=body.note if body else "")
    return _done(session, enrolment)


@router.post("/campaigns/{campaign_id}/enrolments/{enrolment_id}/reject",
             response_model=schemas.EnrolmentRead, summary="Reject an application",
             dependencies=[CsrfChecked])
def reject(campaign_id: DbId, enrolment_id: DbId, session: DbSession, user: Reviewer,
           body: schemas.Decision | None = None) -> schemas.EnrolmentRead:
    """Reject an applied project with a note for the organization (``required`` without)."""
    enrolment = _enrolment(session, campaign_id, enrolment_id)
    campaigns.do_decide_enrolment(session=session, actor=user, enrolment=enrolment,
                                  approve=False, note=body.note if body else "")
    return _done(session, enrolment)


@router.post("/campaigns/{campaign_id}/enrolments/{enrolment_id}/withdraw",
             response_model=schemas.EnrolmentRead, summary="Withdraw a project",
             dependencies=[CsrfChecked])
def withdraw(campaign_id: DbId, enrolment_id: DbId, session: DbSession,
             user: OrgStaff) -> schemas.EnrolmentRead:
    """Withdraw the organization's application or enrolled project (organization staff)."""
    enrolment = _enrolment(session, campaign_id, enrolment_id)
    campaigns.do_withdraw(session=session, actor=user, enrolment=enrolment)
    return _done(session, enrolment)


@router.post("/campaigns/{campaign_id}/enrolments/{enrolment_id}/freeze",
             response_model=schemas.EnrolmentRead, summary="Freeze a project's matching",
             dependencies=[CsrfChecked])
def freeze(campaign_id: DbId, enrolment_id: DbId, session: DbSession, user: Reviewer,
           body: schemas.FreezeRequest | None = None) -> schemas.EnrolmentRead:
    """Stop matching gifts to this project (gifts are still accepted); a reason is required."""
    enrolment = _enrolment(session, campaign_id, enrolment_id)
    campaigns.do_set_frozen(session=session, actor=user, enrolment=enrolment, frozen=True,
                            reason=body.reason if body else "")
    return _done(session, enrolment)


@router.post("/campaigns/{campaign_id}/enrolments/{enrolment_id}/unfreeze",
             response_model=schemas.EnrolmentRead, summary="Unfreeze a project's matching",
             dependencies=[CsrfChecked])
def unfreeze(campaign_id: DbId, enrolment_id: DbId, session: DbSession,
             user: Reviewer) -> schemas.EnrolmentRead:
    """Let this project's gifts be matched again."""
    enrolment = _enrolment(session, campaign_id, enrolment_id)
    campaigns.do_set_frozen(session=session, actor=user, enrolment=enrolment, frozen=False)
    return _done(session, enrolment)


# --- quadratic funding: distributing a round (ops) -------------------------------------------


@router.post("/campaigns/pools/{pool_id}/distribute",
             response_model=schemas.DistributionRead, dependencies=[CsrfChecked],
             summary="Distribute a quadratic-funding round")
def distribute_pool(pool_id: DbId, session: DbSession,
                    user: Reviewer) -> schemas.DistributionRead:
    """Share a quadratic pool among its campaign's projects in proportion to (Σ√cᵢ)², once,
    after the campaign has ended (platform administrators). 409
    ``quadratic_round_not_ended`` / ``quadratic_already_distributed``; 422 ``not_quadratic``;
    403 ``quadratic_forbidden`` for reviewers who are not administrators."""
    quadratic.distribute(session=session, actor=user, pool_id=pool_id)
    shares = quadratic.list_shares(session, pool_id=pool_id)
    return schemas.DistributionRead(
        pool_id=pool_id, distributed_fen=sum(s.share_fen for s in shares),
        shares=[schemas.QuadraticShareRead(
            project_id=s.project_id, project_title=s.project_title,
            contributors=s.contributors, contributed_fen=s.contributed_fen,
            share_fen=s.share_fen) for s in shares])
