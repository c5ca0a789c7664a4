"""JSON API routes of discovery (under /api/v1): the project search and the organization
directory. A bad parameter is a 422 whose ``error.code`` names it (docs/search.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shanju.core.db import DbId
from shanju.core.deps import DbSession
from shanju.core.errors import InvalidInput
from shanju.discovery import schemas
from shanju.discovery import service as discovery
from shanju.organizations import service as organizations
from shanju.organizations.api import to_read
from shanju.projects import schemas as project_schemas
from shanju.projects import service as projects
from shanju.projects.api import project_read

router = APIRouter()

Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
SearchText = Annotated[str | None, Query(
    description="Search text (Chinese or not): at most 50 characters and 5 words, split at "
                "spaces and punctuation; every word must appear.")]
Province = Annotated[str | None, Query(
    description="Province: short or full Chinese name, GB/T 2260 code or English name.")]
Field = Annotated[str | None, Query(
    description="Field of work: " + ", ".join(projects.CATEGORIES) + ".")]


@router.get("/projects", response_model=project_schemas.ProjectPage, tags=["projects"],
            summary="Search, filter and sort public projects")
def list_projects(
    session: DbSession,
    q: SearchText = None,
    field: Field = None,
    category: Annotated[str | None, Query(
        description="The same as field (its former name).", deprecated=True)] = None,
    province: Province = None,
    organization_id: Annotated[DbId | None, Query(
        description="An approved organization: the projects it publishes or receives the "
                    "funds of.")] = None,
    campaign_id: Annotated[DbId | None, Query(
        description="A public giving day: the projects enrolled in it.")] = None,
    status: Annotated[list[str] | None, Query(
        description="Project states, repeated or comma-separated: "
                    + ", ".join(s.value for s in discovery.FILTER_STATUSES)
                    + ". Default: fundraising, ended, executing, completed.")] = None,
    sort: Annotated[str | None, Query(
        description="recommended (default), ending_soon, nearly_there (the highest share of "
                    "the goal not yet reached first), newest, most_donors.")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> project_schemas.ProjectPage:
    """Public projects a search and filters find, in the order asked, with raised totals.

    ``q`` finds every word in a project's title, summary or story, or in its publishing
    organization's name. Codes of a 422: ``invalid_sort``, ``invalid_field``,
    ``invalid_province``, ``invalid_status``, ``invalid_campaign``, ``invalid_organization``,
    ``query_too_long``, ``too_many_terms``, ``invalid_query``, and ``validation_error`` for a
    number that is not one.
    """
    if field is not None and category is not None and field.strip() != category.strip():
        raise InvalidInput("Give the field once: field and category differ.",
                           code="invalid_field", field="field")
    query = discovery.check_project_query(
        session=session, q=q, field=field if field is not None else category,
        province=province, organization_id=organization_id, campaign_id=campaign_id,
        status=status or (), sort=sort)
    items, total = discovery.search_projects(session=session, query=query, limit=limit,
                                             offset=offset)
    orgs = organizations.organizations_by_id(
        session=session,
        ids=[i.project.organization_id for i in items] + [i.project.recipient_org_id
                                                          for i in items])
    return project_schemas.ProjectPage(items=[project_read(i, orgs=orgs) for i in items],
                                       total=total, limit=limit, offset=offset)


@router.get("/organizations", response_model=schemas.DirectoryPage, tags=["organizations"],
            summary="Search the directory of approved organizations")
def list_organizations(
    session: DbSession,
    q: SearchText = None,
    kind: Annotated[str | None, Query(
        description="fundraising: charities raising funds (a listed project, or a valid "
                    "public-fundraising qualification); other: every other approved "
                    "organization; all (default).")] = None,
    province: Province = None,
    field: Annotated[str | None, Query(
        description="Field of work of its listed projects: "
                    + ", ".join(projects.CATEGORIES) + ".")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.DirectoryPage:
    """Approved organizations a search and filters find: names holding every word first, then
    those with the most listed projects. Codes of a 422: ``invalid_kind``,
    ``invalid_province``, ``invalid_field``, ``query_too_long``, ``too_many_terms``,
    ``invalid_query``, ``validation_error``."""
    query = discovery.check_org_query(q=q, province=province, field=field, kind=kind,
                                      default_kind="all")
    items, total = discovery.search_organizations(session=session, query=query, page=page,
                                                  per_page=per_page)
    counts = discovery.count_by_kind(session=session, query=query)
    return schemas.DirectoryPage(
        items=[schemas.DirectoryOrganization.model_validate({
            **to_read(i.organization).model_dump(), "raises_funds": i.raises_funds,
            "listed_projects": i.projects}) for i in items],
        total=total, page=page, per_page=per_page,
        counts=schemas.DirectoryCounts(fundraising=counts["fundraising"],
                                       other=counts["other"]))
