"""JSON API routes of the organizations domain (under /api/v1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import regions
from shanju.core.clock import today_cn
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, Reviewer, Viewer
from shanju.core.errors import InvalidInput
from shanju.organizations import service
from shanju.organizations.models import Organization
from shanju.organizations.schemas import (
    OrganizationCreate,
    OrganizationPage,
    OrganizationRead,
    OrganizationReviewRead,
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


@router.get("/organizations", response_model=OrganizationPage,
            summary="List approved organizations")
def list_organizations(
    session: DbSession,
    province: str = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrganizationPage:
    """Approved organizations, optionally of one province (short or full Chinese name)."""
    chosen = None
    if province:
        chosen = regions.normalize_province(province)
        if chosen is None:
            raise InvalidInput("Unknown province.", code="invalid_province", field="province")
    orgs, total = service.list_public(
        session=session, province=chosen, page=page, per_page=per_page
    )
    return OrganizationPage(items=[to_read(o) for o in orgs], total=total, page=page,
                            per_page=per_page)


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
