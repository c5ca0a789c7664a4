"""HTML pages of the organizations domain: the public list and profile, registration, the
staff's edit page and payment accounts, and the reviewer console's organization and payment
account pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
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
from shanju.organizations import payment_routes, service
from shanju.organizations.models import (
    Organization,
    OrgStatus,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
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


def _decide(decisions: Mapping[str, Callable[..., object]], decision: str, *,
            apply: Callable[[Callable[..., object]], object],
            refused: Callable[[DomainError], Response], done: str) -> Response:
    """A reviewer's decision (a key of ``decisions``) on what is being reviewed: ``apply``
    runs its ``do_*``; a refusal shows ``refused(error)``, else back to ``done`` with
    ``?done=<decision>``. The caller has looked the reviewed thing up first (404 before an
    unknown decision)."""
    action = decisions.get(decision)
    if action is None:
        raise InvalidInput("Unknown decision.", code="unknown_decision")
    try:
        apply(action)
    except DomainError as exc:
        return refused(exc)
    return redirect(f"{done}?done={decision}")


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
    org = service.get_organization(session=session, org_id=org_id)
    return _decide(
        _DECISIONS, decision,
        apply=lambda action: action(session=session, org=org, actor=reviewer, reason=reason),
        refused=lambda exc: _review_page(request, session, org, exc, reason),
        done=f"/review/organizations/{org.id}")


# --- payment accounts (routes) ----------------------------------------------------------------


class RouteForm(BaseModel):
    """A payment account as typed in the staff's form (the token is never sent back)."""

    provider: str = ""
    merchant_id: str = ""
    sub_appid: str = ""
    app_auth_token: str = ""


RouteFormData = Annotated[RouteForm, Form()]


def _routes_page(request: Request, session: DbSession, org: Organization, *,
                 form: RouteForm | None = None, error: DomainError | None = None,
                 revoke_error: tuple[int, DomainError] | None = None) -> HTMLResponse:
    routes = payment_routes.routes_of_organization(session=session, organization_id=org.id)
    by_provider = {
        p: {
            "approved": next((r for r in routes if r.provider == p
                              and r.status == RouteStatus.APPROVED), None),
            "pending": next((r for r in routes if r.provider == p
                             and r.status == RouteStatus.PENDING), None),
        }
        for p in RouteProvider
    }
    failed = error or (revoke_error[1] if revoke_error else None)
    return render(request, "organizations/payment_routes.html", {
        "org": org, "providers": by_provider,
        "history": [r for r in routes
                    if r.status not in (RouteStatus.APPROVED, RouteStatus.PENDING)],
        "provider_labels": payment_routes.PROVIDER_LABELS,
        "status_labels": payment_routes.STATUS_LABELS,
        # The form that failed keeps what was typed (never the token); the others start empty.
        "form": form, "error": error,
        "revoke_error": revoke_error,
        "message": tr(request, failed.message) if failed else None,
        "submitted": request.query_params.get("submitted"),
        "revoked": request.query_params.get("revoked") == "1",
    }, status_code=failed.status_code if failed else 200)


@router.get("/console/payment-routes", response_class=HTMLResponse)
def routes_page(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The staff's page of their organization's payment accounts: in force, in review, past."""
    if viewer is None:
        return redirect(login_url("/console/payment-routes"))
    return _routes_page(request, session, _staff_org(session, viewer))


@router.post("/console/payment-routes", dependencies=[CsrfChecked])
def submit_route(request: Request, session: DbSession, viewer: Viewer, form: RouteFormData
                 ) -> Response:
    """Submit a payment account for review; errors re-render the form with what was typed."""
    if viewer is None:
        return redirect(login_url("/console/payment-routes"))
    org = _staff_org(session, viewer)
    try:
        route = payment_routes.do_submit_route(
            session=session, organization=org, actor=viewer, provider=form.provider,
            merchant_id=form.merchant_id, sub_appid=form.sub_appid,
            app_auth_token=form.app_auth_token,
            secret_key=request.app.state.settings.secret_key,
        )
    except DomainError as exc:
        kept = form.model_copy(update={"app_auth_token": ""})
        return _routes_page(request, session, org, form=kept, error=exc)
    return redirect(f"/console/payment-routes?submitted={route.provider.value}")


@router.post("/console/payment-routes/{route_id:int}/revoke", dependencies=[CsrfChecked])
def staff_revoke_route(
    request: Request, session: DbSession, viewer: Viewer, route_id: DbId,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """The organization takes one of its approved payment accounts out of force."""
    if viewer is None:
        return redirect(login_url("/console/payment-routes"))
    org = _staff_org(session, viewer)
    route = payment_routes.get_visible_route(session=session, route_id=route_id, viewer=viewer)
    try:
        payment_routes.do_revoke_route(session=session, route=route, actor=viewer,
                                       reason=reason)
    except DomainError as exc:
        return _routes_page(request, session, org, revoke_error=(route.id, exc))
    return redirect("/console/payment-routes?revoked=1")


@router.get("/review/payment-routes", response_class=HTMLResponse)
def review_routes(
    request: Request, session: DbSession, reviewer: Reviewer, status: str = "",
    page: PageNumber = 1,
) -> HTMLResponse:
    """Payment accounts for reviewers: pending first (oldest first), then the others."""
    del reviewer
    chosen = RouteStatus(status) if status in {s.value for s in RouteStatus} else None
    routes, total = payment_routes.list_for_review(session=session, status=chosen, page=page)
    orgs = service.organizations_by_id(session=session, ids=[r.organization_id for r in routes])
    return render(request, "review/payment_routes.html", {
        "routes": routes, "orgs": orgs, "total": total,
        "status": chosen.value if chosen else "",
        "statuses": payment_routes.STATUS_LABELS,
        "provider_labels": payment_routes.PROVIDER_LABELS,
    })


def _route_review_page(request: Request, session: DbSession, route: PaymentRoute,
                       error: DomainError | None = None, reason: str = "") -> HTMLResponse:
    org = service.get_organization(session=session, org_id=route.organization_id)
    in_force = payment_routes.approved_route(session=session, organization_id=org.id,
                                             provider=route.provider)
    return render(request, "review/payment_route.html", {
        "route": route, "org": org,
        "in_force": in_force if in_force is not None and in_force.id != route.id else None,
        "provider_labels": payment_routes.PROVIDER_LABELS,
        "status_labels": payment_routes.STATUS_LABELS,
        "org_status_labels": service.STATUS_LABELS,
        "error": error, "message": tr(request, error.message) if error else None,
        "reason": reason, "done": request.query_params.get("done"),
    }, status_code=error.status_code if error else 200)


@router.get("/review/payment-routes/{route_id:int}", response_class=HTMLResponse)
def review_route(request: Request, session: DbSession, reviewer: Reviewer, route_id: DbId
                 ) -> HTMLResponse:
    """One payment account with what a reviewer compares it to (the one in force)."""
    del reviewer
    route = payment_routes.get_route(session=session, route_id=route_id)
    return _route_review_page(request, session, route)


_ROUTE_DECISIONS = {
    "approve": payment_routes.do_approve_route,
    "reject": payment_routes.do_reject_route,
    "revoke": payment_routes.do_revoke_route,
}


@router.post("/review/payment-routes/{route_id:int}/{decision}", dependencies=[CsrfChecked])
def review_route_decide(
    request: Request, session: DbSession, reviewer: Reviewer, route_id: DbId, decision: str,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Approve, reject (reason required) or revoke (reason required) a payment account."""
    route = payment_routes.get_route(session=session, route_id=route_id)
    return _decide(
        _ROUTE_DECISIONS, decision,
        apply=lambda action: action(session=session, route=route, actor=reviewer,
                                    reason=reason),
        refused=lambda exc: _route_review_page(request, session, route, exc, reason),
        done=f"/review/payment-routes/{route.id}")
