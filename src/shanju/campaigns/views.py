"""HTML pages for configuring giving-day campaigns: the reviewers' campaign list and campaign
page (schedule, status, sponsors, pools and their rules, enrolments, freezing) and the
organization console's campaign page (apply with a project, see the status, withdraw).

Every form posts, the service decides, and a refusal shows the page again with a readable
error next to the form it came from (nothing is changed: each change runs in a savepoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import quadratic
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import Campaign, CampaignStatus, PoolKind, SponsorKind
from shanju.campaigns.rules import RuleParams
from shanju.core.clock import today_cn
from shanju.core.db import DbId, parse_id
from shanju.core.deps import CsrfChecked, DbSession, FormFields, Viewer
from shanju.core.errors import DomainError, InvalidInput, NotAuthenticated, NotFound
from shanju.core.web import login_url, redirect, render, tr
from shanju.organizations import service as organizations
from shanju.projects import service as projects

router = APIRouter()


def _login(request: Request) -> Response:
    return redirect(login_url(str(request.url.path)))


def _reviewer(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    return campaigns.check_reviewer(viewer)


def _error_ctx(request: Request, error: DomainError | None, form: str,
               values: dict[str, str] | None) -> dict[str, Any]:
    return {
        "error": error, "error_message": tr(request, error.message) if error else None,
        "error_field": error.field if error else None,
        "error_form": form if error else "", "values": values or {},
    }


# --- reviewers: the list and a new campaign --------------------------------------------------


def _review_list(request: Request, session: Session, *, error: DomainError | None = None,
                 values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    items, total = campaigns.list_campaigns(session=session, limit=200)
    defaults = {"starts_on": today_cn().isoformat(), "days": "3", "opens_at": "10:00",
                "closes_at": "23:59", "org_quota": "3", "hold_days": "7"}
    ctx = _error_ctx(request, error, "create", values)
    ctx.update({"items": items, "total": total, "values": values or defaults,
                "days_of": campaigns.campaign_days})
    return render(request, "campaigns/review/list.html", ctx, status_code=status_code)


@router.get("/review/campaigns", response_class=HTMLResponse)
def review_campaigns(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """Every campaign for reviewers, live first, with the form for a new one."""
    if viewer is None:
        return _login(request)
    _reviewer(viewer)
    return _review_list(request, session)


@router.post("/review/campaigns", dependencies=[CsrfChecked])
def create_campaign(request: Request, session: DbSession, viewer: Viewer,
                    values: FormFields) -> Response:
    """Create a draft campaign and go to its page."""
    user = _reviewer(viewer)
    try:
        with session.begin_nested():
            campaign = campaigns.do_create_campaign(
                session=session, actor=user, fields=campaigns.parse_campaign_form(values))
    except DomainError as exc:
        return _review_list(request, session, error=exc, values=values,
                            status_code=exc.status_code)
    return redirect(f"/review/campaigns/{campaign.id}")


# --- reviewers: one campaign -----------------------------------------------------------------


def _review_page(request: Request, session: Session, campaign: Campaign, *,
                 error: DomainError | None = None, form: str = "",
                 values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    pools = campaigns.list_pools(session=session, campaign_id=campaign.id)
    ctx = _error_ctx(request, error, form, values)
    ctx.update({
        "campaign": campaign,
        "last_day": campaigns.campaign_days(campaign)[1],
        "actions": campaigns.allowed_campaign_actions(campaign),
        "campaign_values": (values if error and form == "campaign"
                            else campaigns.campaign_form_values(campaign)),
        "sponsors": campaigns.list_sponsors(session=session, campaign_id=campaign.id),
        "sponsor_kinds": [k.value for k in SponsorKind],
        "pools": pools,
        "rule_values": {v.pool.id: campaigns.rule_form_values(v.rule) for v in pools},
        "new_rule_values": campaigns.rule_form_values(RuleParams()),
        "committed_fen": sum(v.pool.committed_fen for v in pools),
        "remaining_fen": sum(v.pool.remaining_fen for v in pools),
        "enrolments": campaigns.list_enrolments(session=session, campaign_id=campaign.id),
        "counts": campaigns.enrolment_counts(session=session, campaign_id=campaign.id),
        "ended": campaign.status is CampaignStatus.ENDED,
        "schedule_locked": campaign.status in (CampaignStatus.LIVE, CampaignStatus.ENDED),
        **_quadratic_ctx(request, session, pools),
    })
    return render(request, "campaigns/review/detail.html", ctx, status_code=status_code)


@router.get("/review/campaigns/{campaign_id}", response_class=HTMLResponse)
def review_campaign(campaign_id: DbId, request: Request, session: DbSession,
                    viewer: Viewer) -> Response:
    """One campaign: schedule, status, sponsors, pools and rules, enrolments."""
    if viewer is None:
        return _login(request)
    _reviewer(viewer)
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    return _review_page(request, session, campaign)


def _review_post(request: Request, session: Session, viewer: User | None,
                 campaign_id: int, values: dict[str, str], *, form: str, anchor: str,
                 change: Callable[[User, Campaign, dict[str, str]], object]) -> Response:
    """Make one change from a form of the campaign page; on refusal show the page again."""
    user = _reviewer(viewer)
    campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
    try:
        with session.begin_nested():
            change(user, campaign, values)
    except DomainError as exc:
        session.refresh(campaign)
        return _review_page(request, session, campaign, error=exc, form=form, values=values,
                            status_code=exc.status_code)
    return redirect(f"/review/campaigns/{campaign.id}#{anchor}")


@router.post("/review/campaigns/{campaign_id}/edit", dependencies=[CsrfChecked])
def edit_campaign(campaign_id: DbId, request: Request, session: DbSession,
                  viewer: Viewer, values: FormFields) -> Response:
    """Save the campaign's names, schedule, quota and notice period."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        return campaigns.do_update_campaign(session=session, actor=user, campaign=campaign,
                                            fields=campaigns.parse_campaign_form(values))

    return _review_post(request, session, viewer, campaign_id, values, form="campaign",
                        anchor="schedule", change=change)


@router.post("/review/campaigns/{campaign_id}/actions/{action}", dependencies=[CsrfChecked])
def campaign_action(campaign_id: DbId, action: str, request: Request, session: DbSession,
                    viewer: Viewer, values: FormFields) -> Response:
    """Publish, take back to draft, set live or end the campaign."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        del values
        return campaigns.do_campaign_transition(session=session, actor=user,
                                                campaign=campaign, action=action)

    return _review_post(request, session, viewer, campaign_id, values, form="status",
                        anchor="status", change=change)


@router.post("/review/campaigns/{campaign_id}/sponsors", dependencies=[CsrfChecked])
def add_sponsor(campaign_id: DbId, request: Request, session: DbSession,
                viewer: Viewer, values: FormFields) -> Response:
    """Add a sponsor."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        return campaigns.do_add_sponsor(session=session, actor=user, campaign=campaign,
                                        name=values.get("name", ""),
                                        kind=values.get("kind", "enterprise"))

    return _review_post(request, session, viewer, campaign_id, values, form="sponsor",
                        anchor="sponsors", change=change)


def _pool_and_rule(values: dict[str, str]) -> tuple[int, dict[str, Any]]:
    budget = campaigns.parse_yuan_field(values.get("budget", ""), field="budget")
    if budget is None:
        raise InvalidInput("Enter the pool's budget in yuan.", code="required",
                                     field="budget")
    return budget, campaigns.parse_rule_form(values)


@router.post("/review/campaigns/{campaign_id}/pools", dependencies=[CsrfChecked])
def create_pool(campaign_id: DbId, request: Request, session: DbSession,
                viewer: Viewer, values: FormFields) -> Response:
    """Create a sponsor's pool with its budget and its first rule."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        raw_sponsor = values.get("sponsor_id", "")
        sponsor = campaigns.get_sponsor(
            session=session, campaign=campaign,
            sponsor_id=parse_id(raw_sponsor) or 0)
        budget, params = _pool_and_rule(values)
        priority = campaigns.parse_int_field(values.get("priority", "") or "100",
                                             field="priority", code="invalid_priority")
        return campaigns.do_create_pool(
            session=session, actor=user, campaign=campaign, sponsor=sponsor,
            name=values.get("name", ""), budget_fen=budget, params=params,
            kind=values.get("kind", "matching"), priority=priority)

    return _review_post(request, session, viewer, campaign_id, values, form="pool",
                        anchor="pools", change=change)


@router.post("/review/campaigns/{campaign_id}/pools/{pool_id}/{action}",
             dependencies=[CsrfChecked])
def pool_action(campaign_id: DbId, pool_id: DbId, action: str, request: Request,
                session: DbSession, viewer: Viewer, values: FormFields) -> Response:
    """Top up, pause or resume a pool, or put a new rule version in force."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
        if action == "top-up":
            amount = campaigns.parse_yuan_field(values.get("amount", ""), field="amount")
            if amount is None:
                raise InvalidInput("Enter the amount in yuan.", code="required",
                                             field="amount")
            return campaigns.do_top_up_pool(session=session, actor=user, campaign=campaign,
                                            pool=pool, amount_fen=amount)
        if action == "rule":
            return campaigns.do_set_rule(session=session, actor=user, campaign=campaign,
                                         pool=pool, params=campaigns.parse_rule_form(values))
        return campaigns.do_set_pool_status(session=session, actor=user, campaign=campaign,
                                            pool=pool, action=action)

    return _review_post(request, session, viewer, campaign_id, values,
                        form=f"pool-{pool_id}", anchor=f"pool-{pool_id}", change=change)


@router.post("/review/campaigns/{campaign_id}/enrolments/{enrolment_id}/{action}",
             dependencies=[CsrfChecked])
def enrolment_action(campaign_id: DbId, enrolment_id: DbId, action: str,
                     request: Request, session: DbSession, viewer: Viewer,
                     values: FormFields) -> Response:
    """Approve or reject an application; freeze or unfreeze a project's matching."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        enrolment = campaigns.get_enrolment(session=session, campaign=campaign,
                                            enrolment_id=enrolment_id)
        if action in ("approve", "reject"):
            return campaigns.do_decide_enrolment(
                session=session, actor=user, enrolment=enrolment, approve=action == "approve",
                note=values.get("note", ""))
        if action in ("freeze", "unfreeze"):
            return campaigns.do_set_frozen(session=session, actor=user, enrolment=enrolment,
                                           frozen=action == "freeze",
                                           reason=values.get("reason", ""))
        raise NotFound("Unknown action.", code="unknown_action")

    return _review_post(request, session, viewer, campaign_id, values,
                        form=f"enrolment-{enrolment_id}", anchor="enrolments",
                        change=change)


# --- organizations ---------------------------------------------------------------------------


def _staff(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    organizations.staff_org_id(actor=viewer)
    return viewer


def _org_page(request: Request, session: Session, user: User, *,
              error: DomainError | None = None, form: str = "",
              values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    org = organizations.staff_organization(session=session, actor=user)
    open_campaigns = campaigns.open_for_enrolment(session=session)
    mine = campaigns.list_enrolments(session=session, organization_id=org.id)
    by_campaign: dict[int, list[campaigns.EnrolmentView]] = {}
    for view in mine:
        by_campaign.setdefault(view.enrolment.campaign_id, []).append(view)
    all_ids = {c.id for c in open_campaigns} | set(by_campaign)
    shown = {c.id: c for c in open_campaigns}
    for cid in all_ids - set(shown):
        shown[cid] = campaigns.get_campaign(session=session, campaign_id=cid)
    eligible = campaigns.eligible_projects(session=session, organization_id=org.id)
    ctx = _error_ctx(request, error, form, values)
    ctx.update({
        "org": org,
        "campaigns": sorted(shown.values(), key=lambda c: (c.status is CampaignStatus.ENDED,
                                                            c.starts_on, c.id)),
        "open_ids": {c.id for c in open_campaigns},
        "by_campaign": by_campaign,
        "projects_by_campaign": {
            c.id: [p for p in eligible
                   if p.id not in {v.enrolment.project_id for v in by_campaign.get(c.id, [])
                                   if v.enrolment.status in campaigns.QUOTA_STATUSES}]
            for c in open_campaigns},
        "quota_left": {c.id: campaigns.quota_left(session=session, campaign=c,
                                                  organization_id=org.id)
                       for c in open_campaigns},
        "days_of": campaigns.campaign_days,
        "withdrawable": campaigns.QUOTA_STATUSES,
    })
    return render(request, "campaigns/org/index.html", ctx, status_code=status_code)


@router.get("/org/campaigns", response_class=HTMLResponse)
def org_campaigns(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """Giving days the organization may join, and its projects' enrolments."""
    if viewer is None:
        return _login(request)
    if viewer.role == Role.ORG_STAFF and viewer.organization_id is None:
        return redirect("/organizations/register")
    return _org_page(request, session, _staff(viewer))


@router.post("/org/campaigns/{campaign_id}/apply", dependencies=[CsrfChecked])
def org_apply(campaign_id: DbId, request: Request, session: DbSession,
              viewer: Viewer, values: FormFields) -> Response:
    """Apply with one of the organization's fundraising projects."""
    user = _staff(viewer)
    try:
        with session.begin_nested():
            campaign = campaigns.get_visible_campaign(session=session, campaign_id=campaign_id,
                                                      viewer=user)
            raw = values.get("project_id", "")
            chosen = parse_id(raw)
            if chosen is None:
                raise InvalidInput("Choose one of your fundraising projects.",
                                             code="required", field="project_id")
            project = projects.get_project(session=session, project_id=chosen)
            campaigns.do_apply(session=session, actor=user, campaign=campaign, project=project)
    except DomainError as exc:
        return _org_page(request, session, user, error=exc, form=f"apply-{campaign_id}",
                         values=values, status_code=exc.status_code)
    return redirect(f"/org/campaigns#campaign-{campaign_id}")


@router.post("/org/campaigns/{campaign_id}/enrolments/{enrolment_id}/withdraw",
             dependencies=[CsrfChecked])
def org_withdraw(campaign_id: DbId, enrolment_id: DbId, request: Request,
                 session: DbSession, viewer: Viewer, values: FormFields) -> Response:
    """Withdraw an application or an enrolled project."""
    user = _staff(viewer)
    try:
        with session.begin_nested():
            campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
            enrolment = campaigns.get_enrolment(session=session, campaign=campaign,
                                                enrolment_id=enrolment_id)
            campaigns.do_withdraw(session=session, actor=user, enrolment=enrolment)
    except DomainError as exc:
        return _org_page(request, session, user, error=exc, form=f"apply-{campaign_id}",
                         values=values, status_code=exc.status_code)
    return redirect(f"/org/campaigns#campaign-{campaign_id}")



# --- reviewers: distributing a quadratic-funding round (ops) --------------------------------


def _quadratic_ctx(request: Request, session: Session,
                   pools: list[campaigns.PoolView]) -> dict[str, Any]:
    """The shares of distributed quadratic pools and whether the viewer may distribute."""
    user = getattr(request.state, "user", None)
    return {
        "qf_shares": {v.pool.id: quadratic.list_shares(session, pool_id=v.pool.id)
                      for v in pools if v.pool.kind is PoolKind.QUADRATIC},
        "can_distribute": user is not None and user.role is Role.ADMIN,
    }


@router.post("/review/campaigns/{campaign_id}/quadratic/{pool_id}/distribute",
             dependencies=[CsrfChecked])
def distribute_pool(campaign_id: DbId, pool_id: DbId, request: Request,
                    session: DbSession, viewer: Viewer, values: FormFields) -> Response:
    """Share an ended campaign's quadratic pool among its projects (administrators)."""
    def change(user: User, campaign: Campaign, values: dict[str, str]) -> object:
        del values
        pool = campaigns.get_pool(session=session, campaign=campaign, pool_id=pool_id)
        return quadratic.distribute(session=session, actor=user, pool_id=pool.id)

    return _review_post(request, session, viewer, campaign_id, values,
                        form=f"pool-{pool_id}", anchor=f"pool-{pool_id}", change=change)
