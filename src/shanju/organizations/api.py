"""JSON API routes of the organizations domain (under /api/v1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core.clock import today_cn
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, Reviewer, Viewer
from shanju.discovery import schemas as directory
from shanju.discovery import service as discovery
from shanju.organizations import payment_routes, service
from shanju.organizations.models import Organization, PaymentRoute, RouteStatus
from shanju.organizations.schemas import (
    OrganizationCreate,
    OrganizationRead,
    OrganizationReviewRead,
    PaymentRoutePage,
    PaymentRouteRead,
    PaymentRouteSubmit,
    ReviewDecision,
)

router = APIRouter(tags=["organizations"])


def to_read(org: Organization) -> OrganizationRead:
    """The public view of an organization."""
    return OrganizationRead.model_validate(
        {**_columns(org), "publicly_qualified": org.is_qualified_on(today_cn())}
    )


def to_review_read(org: Organization) -> OrganizationReviewRead:
    """The reviewers' (and own staff's) view of an organization."""
    return OrganizationReviewRead.model_validate({
        **_columns(org),
        "publicly_qualified": org.is_qualified_on(today_cn()),
        "review_warnings": service.review_warnings(org),
    })


def _columns(org: Organization) -> dict[str, object]:
    return {c.key: getattr(org, c.key) for c in Organization.__table__.columns}


def _read_for(org: Organization, viewer: User | None) -> OrganizationRead:
    if viewer is not None and (viewer.is_reviewer or service.can_manage(org, viewer)):
        return to_review_read(org)
    return to_read(org)


@router.get("/organizations", response_model=directory.DirectoryPage,
            summary="Search the directory of approved organizations")
def list_organizations(
    session: DbSession,
    q: Annotated[str | None, Query(
        description="Search text (Chinese or not) in names, short names and descriptions: at "
                    "most 50 characters and 5 words; every word must appear.")] = None,
    kind: Annotated[str | None, Query(
        description="fundraising: charities raising funds (a listed project, or a valid "
                    "public-fundraising qualification); other: every other approved "
                    "organization; all (default).")] = None,
    province: Annotated[str | None, Query(
        description="Province: short or full Chinese name, GB/T 2260 code or English name.")
    ] = None,
    field: Annotated[str | None, Query(
        description="Field of work of its listed projects: "
                    + ", ".join(discovery.FIELDS) + ".")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> directory.DirectoryPage:
    """Approved organizations a search and filters find: names holding every word first, then
    those with the most listed projects. Codes of a 422: ``invalid_kind``,
    ``invalid_province``, ``invalid_field``, ``query_too_long``, ``too_many_terms``,
    ``invalid_query``, ``validation_error``."""
    query = discovery.check_org_query(q=q, province=province, field=field, kind=kind,
                                      default_kind="all")
    items, total = discovery.search_organizations(session=session, query=query, page=page,
                                                  per_page=per_page)
    counts = discovery.count_by_kind(session=session, query=query)
    return directory.DirectoryPage(
        items=[directory.DirectoryOrganization.model_validate({
            **to_read(i.organization).model_dump(), "raises_funds": i.raises_funds,
            "listed_projects": i.projects}) for i in items],
        total=total, page=page, per_page=per_page,
        counts=directory.DirectoryCounts(fundraising=counts["fundraising"],
                                         other=counts["other"]))


@router.get(
    "/organizations/{org_id}",
    response_model=OrganizationReviewRead | OrganizationRead,
    summary="Get an organization's public profile",
)
def get_organization(session: DbSession, viewer: Viewer, org_id: DbId) -> OrganizationRead:
    """An approved organization; others are visible only to their staff and reviewers."""
    org = service.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    return _read_for(org, viewer)


@router.post(
    "/organizations",
    response_model=OrganizationReviewRead,
    status_code=201,
    summary="Register an organization (you become its staff member)",
    dependencies=[CsrfChecked],
)
def register_organization(
    session: DbSession, user: CurrentUser, body: OrganizationCreate
) -> OrganizationReviewRead:
    """Register an organization for review; a wrong USCC is refused with a specific code."""
    org = service.do_register(session=session, data=body, actor=user)
    return to_review_read(org)


def _decide(
    session: Session, reviewer: User, org_id: int, decide: Callable[..., Organization],
    reason: str,
) -> OrganizationReviewRead:
    org = service.get_organization(session=session, org_id=org_id)
    decide(session=session, org=org, actor=reviewer, reason=reason)
    return to_review_read(org)


@router.post(
    "/organizations/{org_id}/approve",
    response_model=OrganizationReviewRead,
    summary="Approve an organization (reviewers)",
    dependencies=[CsrfChecked],
)
def approve_organization(
    session: DbSession, reviewer: Reviewer, org_id: DbId, body: ReviewDecision | None = None
) -> OrganizationReviewRead:
    """Approve a pending organization or reinstate a suspended one."""
    return _decide(session, reviewer, org_id, service.do_approve, body.reason if body else "")


@router.post(
    "/organizations/{org_id}/reject",
    response_model=OrganizationReviewRead,
    summary="Reject an organization's registration (reviewers; reason required)",
    dependencies=[CsrfChecked],
)
def reject_organization(
    session: DbSession, reviewer: Reviewer, org_id: DbId, body: ReviewDecision
) -> OrganizationReviewRead:
    """Reject a pending organization, telling its staff why."""
    return _decide(session, reviewer, org_id, service.do_reject, body.reason)


@router.post(
    "/organizations/{org_id}/suspend",
    response_model=OrganizationReviewRead,
    summary="Suspend an approved organization (reviewers; reason required)",
    dependencies=[CsrfChecked],
)
def suspend_organization(
    session: DbSession, reviewer: Reviewer, org_id: DbId, body: ReviewDecision
) -> OrganizationReviewRead:
    """Suspend an approved organization, telling its staff why."""
    return _decide(session, reviewer, org_id, service.do_suspend, body.reason)


# --- payment routes (the organization's merchant accounts) ---------------------------------------


def route_read(route: PaymentRoute) -> PaymentRouteRead:
    """A payment route as the API shows it: whether a token is set, never the token."""
    return PaymentRouteRead.model_validate({
        **{c.key: getattr(route, c.key) for c in PaymentRoute.__table__.columns
           if c.key != "auth_token_sealed"},
        "app_auth_token_set": route.auth_token_sealed is not None,
    })


@router.get(
    "/organizations/{org_id}/payment-routes",
    response_model=list[PaymentRouteRead],
    summary="An organization's payment accounts (its staff and reviewers)",
)
def list_payment_routes(session: DbSession, user: CurrentUser, org_id: DbId
                        ) -> list[PaymentRouteRead]:
    """Every pending and approved payment account of the organization, then recent others."""
    org = service.get_organization(session=session, org_id=org_id)
    payment_routes.check_can_view(actor=user, organization_id=org.id)
    return [route_read(r) for r in payment_routes.routes_of_organization(
        session=session, organization_id=org.id)]


@router.post(
    "/organizations/{org_id}/payment-routes",
    response_model=PaymentRouteRead,
    status_code=201,
    summary="Submit a payment account for review (the organization's staff)",
    dependencies=[CsrfChecked],
)
def submit_payment_route(
    request: Request, session: DbSession, user: CurrentUser, org_id: DbId,
    body: PaymentRouteSubmit,
) -> PaymentRouteRead:
    """Submit the organization's WeChat Pay sub-merchant or Alipay merchant for review.

    The approved account of that provider, if any, stays in force until this one is approved.
    A wrong id is refused with a specific code (``invalid_sub_mchid``, ``invalid_alipay_pid``,
    ``invalid_sub_appid``, ``invalid_app_auth_token`` …) and changes nothing.
    """
    org = service.get_organization(session=session, org_id=org_id)
    route = payment_routes.do_submit_route(
        session=session, organization=org, actor=user, provider=body.provider,
        merchant_id=body.merchant_id, sub_appid=body.sub_appid,
        app_auth_token=body.app_auth_token,
        secret_key=request.app.state.settings.secret_key,
    )
    return route_read(route)


@router.get(
    "/payment-routes",
    response_model=PaymentRoutePage,
    summary="Payment accounts for review (reviewers)",
)
def review_payment_routes(
    session: DbSession,
    reviewer: Reviewer,
    status: RouteStatus | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> PaymentRoutePage:
    """Payment accounts, pending first (oldest first), optionally of one status."""
    del reviewer
    items, total = payment_routes.list_for_review(
        session=session, status=status, page=page, per_page=per_page)
    return PaymentRoutePage(items=[route_read(r) for r in items], total=total, page=page,
                            per_page=per_page)


@router.get(
    "/payment-routes/{route_id}",
    response_model=PaymentRouteRead,
    summary="One payment account (its organization's staff and reviewers)",
)
def get_payment_route(session: DbSession, user: CurrentUser, route_id: DbId
                      ) -> PaymentRouteRead:
    """One payment account with its review details (never the token)."""
    route = payment_routes.get_visible_route(session=session, route_id=route_id, viewer=user)
    return route_read(route)


def _decide_route(
    session: Session, actor: User, route_id: int, decide: Callable[..., PaymentRoute],
    reason: str,
) -> PaymentRouteRead:
    # Looked up as the actor sees it: reviewers (approve, reject) see every route, so this is
    # get_route for them; the staff (revoke) see only their organization's.
    route = payment_routes.get_visible_route(session=session, route_id=route_id, viewer=actor)
    decide(session=session, route=route, actor=actor, reason=reason)
    return route_read(route)


@router.post(
    "/payment-routes/{route_id}/approve",
    response_model=PaymentRouteRead,
    summary="Approve a payment account (reviewers)",
    dependencies=[CsrfChecked],
)
def approve_payment_route(session: DbSession, reviewer: Reviewer, route_id: DbId,
                          body: ReviewDecision | None = None) -> PaymentRouteRead:
    """Approve a pending account: it takes force and replaces the one approved before."""
    return _decide_route(session, reviewer, route_id, payment_routes.do_approve_route,
                         body.reason if body else "")


@router.post(
    "/payment-routes/{route_id}/reject",
    response_model=PaymentRouteRead,
    summary="Reject a payment account (reviewers; reason required)",
    dependencies=[CsrfChecked],
)
def reject_payment_route(session: DbSession, reviewer: Reviewer, route_id: DbId,
                         body: ReviewDecision) -> PaymentRouteRead:
    """Reject a pending account, telling the organization's staff why."""
    return _decide_route(session, reviewer, route_id, payment_routes.do_reject_route,
                         body.reason)


@router.post(
    "/payment-routes/{route_id}/revoke",
    response_model=PaymentRouteRead,
    summary="Revoke an approved payment account (reviewers or its organization's staff)",
    dependencies=[CsrfChecked],
)
def revoke_payment_route(session: DbSession, user: CurrentUser, route_id: DbId,
                         body: ReviewDecision) -> PaymentRouteRead:
    """Take an approved account out of force (reason required); gifts stop until another is
    approved."""
    return _decide_route(session, user, route_id, payment_routes.do_revoke_route, body.reason)
