"""HTML pages of the organizations domain: the public list and profile, registration, the
staff's edit page and the reviewer console (its index and organization pages)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from shanju.accounts.models import User
from shanju.core import regions
from shanju.core.clock import today_cn
from shanju.core.db import DbId, PageNumber
from shanju.core.deps import CsrfChecked, DbSession, Reviewer, Viewer
from shanju.core.errors import DomainError, InvalidInput
from shanju.core.web import login_url, redirect, render, tr
from shanju.organizations import service
from shanju.organizations.models import Organization, OrgStatus
from shanju.organizations.schemas import OrganizationCreate, OrganizationUpdate
from shanju.projects import service as projects

router = APIRouter()
PER_PAGE = 20


class OrganizationForm(BaseModel):
    """The registration/edit form as submitted: strings only, validated by the service."""

    name: str = ""
    short_name: str = ""
    uscc: str = ""
    org_type: str = ""
    registering_authority: str = ""
    province: str = ""
    city: str = ""
    address: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    website: str = ""
    description: str = ""
    fundraising_cert_no: str = ""
    fundraising_valid_from: str = ""
    fundraising_valid_until: str = ""


OrgFormData = Annotated[OrganizationForm, Form()]


def _parse_date(text: str, *, field: str) -> dt.date | None:
    cleaned = text.strip()
    if not cleaned:
        return None
    try:
        return dt.date.fromisoformat(cleaned)
    except ValueError:
        raise InvalidInput(
            "Enter the date as YYYY-MM-DD.", code="invalid_date", field=field
        ) from None


def _to_create(form: OrganizationForm) -> OrganizationCreate:
    values = form.model_dump()
    for field in ("fundraising_valid_from", "fundraising_valid_until"):
        values[field] = _parse_date(values[field], field=field)
    return OrganizationCreate(**values)


def _form_from_org(org: Organization) -> OrganizationForm:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(getattr(value, "value", value))

    return OrganizationForm(**{
        name: text(getattr(org, name)) for name in OrganizationForm.model_fields
    })


def _form_context(form: OrganizationForm, error: DomainError | None = None,
                  request: Request | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "form": form,
        "provinces": regions.DIVISIONS,
        "org_types": service.ORG_TYPE_LABELS,
        "error": error,
        "message": tr(request, error.message) if (error and request) else None,
    }
    return ctx


# --- public -----------------------------------------------------------------------------------


@router.get("/organizations", response_class=HTMLResponse)
def organization_list(
    request: Request, session: DbSession, viewer: Viewer, province: str = "", page: PageNumber = 1
) -> HTMLResponse:
    """Approved organizations, optionally of one province."""
    del viewer  # loaded for the layout
    chosen = regions.normalize_province(province) if province else None
    orgs, total = service.list_public(
        session=session, province=chosen, page=page, per_page=PER_PAGE
    )
    return render(request, "organizations/list.html", {
        "orgs": orgs, "total": total, "page": max(page, 1), "per_page": PER_PAGE,
        "province": chosen or "", "provinces": regions.DIVISIONS,
        "org_types": service.ORG_TYPE_LABELS,
    })


@router.get("/organizations/register", response_class=HTMLResponse)
def register_form(request: Request, viewer: Viewer) -> Response:
    """The registration form (for a signed-in user)."""
    if viewer is None:
        return redirect(login_url("/organizations/register"))
    try:
        service.check_can_register(actor=viewer)
    except DomainError as exc:
        return render(request, "organizations/register.html",
                      {"blocked": True, **_form_context(OrganizationForm(), exc, request)},
                      status_code=exc.status_code)
    return render(request, "organizations/register.html", _form_context(OrganizationForm()))


@router.post("/organizations/register", dependencies=[CsrfChecked])
def register(request: Request, session: DbSession, viewer: Viewer, form: OrgFormData) -> Response:
    """Register the organization and make the user its staff member."""
    if viewer is None:
        return redirect(login_url("/organizations/register"))
    try:
        org = service.do_register(session=session, data=_to_create(form), actor=viewer)
    except DomainError as exc:
        return render(request, "organizations/register.html",
                      _form_context(form, exc, request), status_code=exc.status_code)
    return redirect(f"/organizations/{org.id}?registered=1")


@router.get("/organizations/{org_id:int}", response_class=HTMLResponse)
def profile(request: Request, session: DbSession, viewer: Viewer, org_id: DbId) -> HTMLResponse:
    """An organization's public profile with its legally required disclosures."""
    org = service.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    return render(request, "organizations/profile.html", {
        "org": org, "qualified": org.is_qualified_on(today_cn()),
        "projects": projects.list_organization_projects(session=session, organization_id=org.id),
        "org_types": service.ORG_TYPE_LABELS, "status_labels": service.STATUS_LABELS,
        "organization_id": org.id, "is_staff": service.can_manage(org, viewer),
        "registered": request.query_params.get("registered") == "1",
    })


# --- staff ------------------------------------------------------------------------------------


def _staff_org(session: DbSession, viewer: User) -> Organization:
    return service.staff_organization(session=session, actor=viewer)


@router.get("/console/organization", response_class=HTMLResponse)
def edit_form(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The staff's page to edit their organization's details."""
    if viewer is None:
        return redirect(login_url("/console/organization"))
    org = _staff_org(session, viewer)
    return render(request, "organizations/console.html", {
        "org": org, "status_labels": service.STATUS_LABELS,
        "saved": request.query_params.get("saved"), **_form_context(_form_from_org(org)),
    })


@router.post("/console/organization", dependencies=[CsrfChecked])
def edit(request: Request, session: DbSession, viewer: Viewer, form: OrgFormData) -> Response:
    """Save the staff's edit; legal changes send the organization back to review."""
    if viewer is None:
        return redirect(login_url("/console/organization"))
    org = _staff_org(session, viewer)
    try:
        back = service.do_update(
            session=session, org=org,
            data=OrganizationUpdate(**_to_create(form).model_dump()), actor=viewer,
        )
    except DomainError as exc:
        return render(request, "organizations/console.html", {
            "org": org, "status_labels": service.STATUS_LABELS,
            **_form_context(form, exc, request),
        }, status_code=exc.status_code)
    return redirect("/console/organization?saved=" + ("review" if back else "1"))


# --- reviewer console -------------------------------------------------------------------------


@router.get("/review/organizations", response_class=HTMLResponse)
def review_list(
    request: Request, session: DbSession, reviewer: Reviewer, status: str = "", page: PageNumber = 1
) -> HTMLResponse:
    """Organizations for reviewers, pending first, with credit-code warnings."""
    del reviewer
    chosen = OrgStatus(status) if status in {s.value for s in OrgStatus} else None
    orgs, total = service.list_for_review(session=session, status=chosen, page=page)
    return render(request, "review/organizations.html", {
        "orgs": [(org, service.review_warnings(org)) for org in orgs],
        "total": total, "status": chosen.value if chosen else "",
        "statuses": service.STATUS_LABELS, "org_types": service.ORG_TYPE_LABELS,
    })


def _review_page(request: Request, session: DbSession, org: Organization,
                 error: DomainError | None = None, reason: str = "") -> HTMLResponse:
    return render(request, "review/organization.html", {
        "org": org, "warnings": service.review_warnings(org),
        "qualified": org.is_qualified_on(today_cn()),
        "org_types": service.ORG_TYPE_LABELS, "status_labels": service.STATUS_LABELS,
        "error": error, "message": tr(request, error.message) if error else None,
        "reason": reason, "done": request.query_params.get("done"),
        "projects": projects.list_organization_projects(session=session, organization_id=org.id),
    }, status_code=error.status_code if error else 200)


@router.get("/review/organizations/{org_id:int}", response_class=HTMLResponse)
def review_detail(
    request: Request, session: DbSession, reviewer: Reviewer, org_id: DbId
) -> HTMLResponse:
    """One organization with everything a reviewer needs to decide."""
    del reviewer
    org = service.get_organization(session=session, org_id=org_id)
    return _review_page(request, session, org)


_DECISIONS = {
    "approve": service.do_approve,
    "reject": service.do_reject,
    "suspend": service.do_suspend,
}


@router.post("/review/organizations/{org_id:int}/{decision}", dependencies=[CsrfChecked])
def review_decide(
    request: Request,
    session: DbSession,
    reviewer: Reviewer,
    org_id: DbId,
    decision: str,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Approve, reject (reason required) or suspend (reason required) an organization."""
    action = _DECISIONS.get(decision)
    org = service.get_organization(session=session, org_id=org_id)
    if action is None:
        raise InvalidInput("Unknown decision.", code="unknown_decision")
    try:
        action(session=session, org=org, actor=reviewer, reason=reason)
    except DomainError as exc:
        return _review_page(request, session, org, exc, reason)
    return redirect(f"/review/organizations/{org.id}?done={decision}")
