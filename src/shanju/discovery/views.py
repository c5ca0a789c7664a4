"""HTML pages of discovery: the project list (search, filters, sorts) and the organization
directory. Both work without JavaScript: links for chips, GET forms for the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from shanju.campaigns.models import Campaign
from shanju.core import regions
from shanju.core.db import PageNumber, parse_id
from shanju.core.deps import DbSession, Viewer
from shanju.core.errors import DomainError, InvalidInput
from shanju.core.web import render, tr
from shanju.discovery import service as discovery
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization
from shanju.projects import service as projects

router = APIRouter()
PAGE_SIZE = 20
# The states the list's select offers (the API takes paused and taken down too).
PAGE_STATUSES = ("fundraising", "ended", "executing", "completed")


def _id(raw: str, *, code: str, field: str, message: str) -> int | None:
    """An id from a link or a select ("" is none); InvalidInput ``code`` otherwise."""
    if not raw.strip():
        return None
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(message, code=code, field=field)
    return value


def _linker(path: str, current: Mapping[str, Any]) -> Callable[..., str]:
    """``link(**changes)``: this page's address with ``changes`` applied (None removes a
    value; the page number goes back to 1 unless given)."""
    def link(**changes: Any) -> str:
        params = {**current, "page": None, **changes}
        clean = {k: v for k, v in params.items()
                 if v is not None and v != "" and not (k == "page" and v == 1)}
        return f"{path}?{urlencode(clean)}" if clean else path
    return link


@router.get("/projects", response_class=HTMLResponse)
def project_list(
    request: Request, session: DbSession, viewer: Viewer, q: str = "", field: str = "",
    category: str = "", province: str = "", status: str = "", campaign_id: str = "",
    organization_id: str = "", sort: str = "", page: PageNumber = 1,
) -> HTMLResponse:
    """Public projects: a search box, field chips, more filters, a sort and pages."""
    del viewer  # loaded for the layout
    values = {"q": q, "field": field or category, "province": province, "status": status,
              "campaign_id": campaign_id, "organization_id": organization_id, "sort": sort}
    error: DomainError | None = None
    try:
        query = discovery.check_project_query(
            session=session, q=q, field=values["field"], province=province,
            organization_id=_id(organization_id, code="invalid_organization",
                                field="organization_id",
                                message="There is no such organization."),
            campaign_id=_id(campaign_id, code="invalid_campaign", field="campaign_id",
                            message="There is no such giving day."),
            status=[status] if status else [], sort=sort)
    except DomainError as exc:
        error, query = exc, None
    items: list[projects.ProjectListing] = []
    total = 0
    orgs: list[Organization] = []
    orgs_total = 0
    current: dict[str, Any] = {}
    if query is not None:
        items, total = discovery.search_projects(session=session, query=query,
                                                 limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        orgs, orgs_total = discovery.matching_organizations(session=session, terms=query.terms)
        current = {
            "q": query.text, "field": query.field, "province": query.province,
            "status": ",".join(s.value for s in query.statuses)
            if query.statuses != projects.LISTED_STATUSES else None,
            "campaign_id": query.campaign_id, "organization_id": query.organization_id,
            "sort": query.sort if query.sort != discovery.DEFAULT_SORT else None,
        }
        values = {k: "" if v is None else str(v) for k, v in current.items()}
        values["sort"] = query.sort
    chosen_org = (organizations.organizations_by_id(
        session=session, ids=[query.organization_id]).get(query.organization_id)
        if query is not None and query.organization_id is not None else None)
    campaign_list = discovery.public_campaigns(session=session)
    chosen_campaign = (session.get(Campaign, query.campaign_id)
                       if query is not None and query.campaign_id is not None else None)
    return render(request, "discovery/projects.html", {
        "items": items, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "values": values, "link": _linker("/projects", current),
        "error": error, "error_message": tr(request, error.message) if error else None,
        "provinces": projects.PROVINCES, "categories": projects.CATEGORIES,
        "statuses": PAGE_STATUSES, "sorts": discovery.SORTS, "campaigns": campaign_list,
        "chosen_org": chosen_org, "chosen_campaign": chosen_campaign,
        "orgs": orgs, "orgs_total": orgs_total,
        "filtered": bool(current.get("province") or current.get("status")
                         or current.get("campaign_id")),
    }, status_code=error.status_code if error else 200)


@router.get("/organizations", response_class=HTMLResponse)
def organization_list(
    request: Request, session: DbSession, viewer: Viewer, q: str = "", kind: str = "",
    province: str = "", field: str = "", page: PageNumber = 1,
) -> HTMLResponse:
    """The directory: charities raising funds apart from other registered organizations,
    with a search, a province and a field filter, and pages."""
    del viewer  # loaded for the layout
    values = {"q": q, "kind": kind or "fundraising", "province": province, "field": field}
    error: DomainError | None = None
    listings: list[discovery.OrgListing] = []
    total = 0
    counts = {"fundraising": 0, "other": 0}
    current: dict[str, Any] = {"kind": values["kind"]}
    try:
        query = discovery.check_org_query(q=q, province=province, field=field, kind=kind,
                                          default_kind="fundraising")
        if query.kind == "all":
            raise InvalidInput("Choose which organizations to list: %(allowed)s.",
                               code="invalid_kind", field="kind",
                               params={"allowed": ", ".join(discovery.ORG_KINDS)})
    except DomainError as exc:
        error = exc
    else:
        listings, total = discovery.search_organizations(session=session, query=query,
                                                         page=page, per_page=PAGE_SIZE)
        counts = discovery.count_by_kind(session=session, query=query)
        current = {"q": query.text, "kind": query.kind, "province": query.province,
                   "field": query.field}
        values = {k: "" if v is None else str(v) for k, v in current.items()}
    return render(request, "discovery/organizations.html", {
        "listings": listings, "total": total, "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)), "counts": counts, "values": values,
        "kinds": discovery.ORG_KINDS, "link": _linker("/organizations", current),
        "error": error, "error_message": tr(request, error.message) if error else None,
        "provinces": regions.DIVISIONS, "categories": projects.CATEGORIES,
        "org_types": organizations.ORG_TYPE_LABELS,
    }, status_code=error.status_code if error else 200)
