"""JSON API routes of the projects domain (under /api/v1).

Lifecycle moves are ``POST /projects/{id}/<action>`` with an optional ``{"reason": ...}``
body, one route per action of ``service.TRANSITIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from sqlalchemy.orm import Session

from shanju.core import files, web
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, OrgStaff, Viewer
from shanju.core.errors import InvalidInput
from shanju.core.files import Attachment
from shanju.core.masking import mask_name
from shanju.gifts import service as gifts
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization
from shanju.projects import goals, schemas
from shanju.projects import service as projects
from shanju.projects.models import FundUsage, Project, ProjectStatus, ProjectUpdate

router = APIRouter(tags=["projects"])

Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def _org_brief(org: Organization | None) -> schemas.OrgBrief | None:
    if org is None:
        return None
    return schemas.OrgBrief(
        id=org.id, name=org.name, uscc=org.uscc, fundraising_cert_no=org.fundraising_cert_no,
        fundraising_valid_from=org.fundraising_valid_from,
        fundraising_valid_until=org.fundraising_valid_until, contact_phone=org.contact_phone,
    )


def project_read(
    listing: projects.ProjectListing,
    *,
    orgs: dict[int, Organization] | None = None,
    disclosed_fen: int | None = None,
) -> schemas.ProjectRead:
    """Render a project listing for the API."""
    p = listing.project
    orgs = orgs or {}
    goal = listing.goal
    left = goals.project_time_left(p) if p.status == ProjectStatus.FUNDRAISING else None
    return schemas.ProjectRead(
        id=p.id, title=p.title, summary=p.summary, description=p.description,
        category=p.category, province=p.province, status=p.status, goal_fen=p.goal_fen,
        raised_fen=listing.raised_fen, donations=listing.donations, disclosed_fen=disclosed_fen,
        goal_policy=p.goal_policy, stretch_goal_fen=p.stretch_goal_fen, goal_state=goal.state,
        target_fen=goal.target_fen, fundraising_ends_at=goals.fundraising_ends_at(p),
        seconds_left=left.seconds if left is not None else None,
        fundraising_plan=p.fundraising_plan, filing_number=p.filing_number,
        filing_valid_from=p.filing_valid_from, filing_valid_until=p.filing_valid_until,
        starts_on=p.starts_on, ends_on=p.ends_on, organization_id=p.organization_id,
        recipient_org_id=p.recipient_org_id,
        cover_url=f"/files/{p.cover_image_id}" if p.cover_image_id else None,
        url=f"/projects/{p.id}",
        organization=_org_brief(orgs.get(p.organization_id)),
        recipient_organization=_org_brief(orgs.get(p.recipient_org_id)),
    )


def _detail(session: Session, project: Project) -> schemas.ProjectRead:
    listing = projects.with_totals(session=session, projects=[project])[0]
    orgs = organizations.organizations_by_id(
        session=session, ids=[project.organization_id, project.recipient_org_id])
    return project_read(
        listing, orgs=orgs,
        disclosed_fen=projects.disclosed_total(session=session, project_id=project.id))


def _attachment_read(a: Attachment) -> schemas.AttachmentRead:
    return schemas.AttachmentRead(id=a.id, filename=a.filename, content_type=a.content_type,
                                  size=a.size, url=f"/files/{a.id}")


@router.get("/projects", response_model=schemas.ProjectPage, summary="List public projects")
def list_projects(
    session: DbSession,
    province: str | None = None,
    category: str | None = None,
    organization_id: DbId | None = None,
    status: Annotated[list[ProjectStatus] | None, Query()] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> schemas.ProjectPage:
    """Projects in public states, fundraising first, with raised totals."""
    items, total = projects.list_public_projects(
        session=session, province=province, category=category,
        organization_id=organization_id,
        status_in=status or projects.LISTED_STATUSES, limit=limit, offset=offset)
    orgs = organizations.organizations_by_id(
        session=session,
        ids=[i.project.organization_id for i in items] + [i.project.recipient_org_id
                                                          for i in items])
    return schemas.ProjectPage(items=[project_read(i, orgs=orgs) for i in items], total=total,
                               limit=limit, offset=offset)


@router.get("/projects/{project_id}", response_model=schemas.ProjectRead,
            summary="Get a project with its totals")
def get_project(project_id: DbId, session: DbSession, viewer: Viewer) -> schemas.ProjectRead:
    """A project the caller may see (public states, or any state for its staff/reviewers)."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    return _detail(session, project)


def _fields(body: schemas.ProjectCreate | schemas.ProjectUpdate,
            base: projects.ProjectFields) -> projects.ProjectFields:
    data: dict[str, Any] = body.model_dump(exclude_unset=True)
    for key, value in data.items():
        if value is None and key in ("title", "summary", "category", "province", "goal_fen",
                                     "fundraising_plan"):
            raise InvalidInput("%(field)s cannot be null.", code="validation_error", field=key,
                               params={"field": key})
        setattr(base, key, value if value is not None else None)
    if "description" in data and data["description"] is None:
        base.description = ""
    return base


@router.post("/projects", response_model=schemas.ProjectRead, status_code=201,
             summary="Create a draft project", dependencies=[CsrfChecked])
def create_project(body: schemas.ProjectCreate, session: DbSession,
                   user: OrgStaff) -> schemas.ProjectRead:
    """Create a draft project for the caller's organization (organization staff only)."""
    project = projects.do_create_project(
        session=session, actor=user, fields=_fields(body, projects.ProjectFields()))
    return _detail(session, project)


@router.patch("/projects/{project_id}", response_model=schemas.ProjectRead,
              summary="Edit a draft or rejected project", dependencies=[CsrfChecked])
def update_project(project_id: DbId, body: schemas.ProjectUpdate, session: DbSession,
                   user: CurrentUser) -> schemas.ProjectRead:
    """Change fields of a project in draft or rejected state."""
    project = projects.get_project(session=session, project_id=project_id)
    projects.check_can_manage(actor=user, project=project)
    fields = _fields(body, projects.fields_of(project))
    projects.do_update_project(session=session, actor=user, project=project, fields=fields)
    return _detail(session, project)


@router.put("/projects/{project_id}/goal-setting", response_model=schemas.ProjectRead,
            summary="Choose what happens when the goal is reached (organization staff)",
            dependencies=[CsrfChecked])
def set_goal_setting(project_id: DbId, body: schemas.GoalSetting, session: DbSession,
                     user: CurrentUser) -> schemas.ProjectRead:
    """Keep taking gifts (donors confirm), stop, or raise a stretch goal; the goal as filed
    stays as it is. 409 goal_policy_locked once fundraising is over."""
    project = projects.get_project(session=session, project_id=project_id)
    projects.do_set_goal_policy(session=session, actor=user, project=project,
                                policy=body.goal_policy.value,
                                stretch_goal=body.stretch_goal_fen)
    return _detail(session, project)


_ACTION_DOCS = {
    "submit": "Submit for review (organization staff)",
    "approve": "Approve a submitted project (reviewer)",
    "reject": "Reject a submitted project with a reason (reviewer)",
    "start": "Start fundraising within the filing's validity (organization staff)",
    "end": "End fundraising (organization staff)",
    "execute": "Mark the project as executing (organization staff)",
    "complete": "Mark the project as completed (organization staff)",
    "pause": "Pause with a reason (organization staff or reviewer)",
    "resume": "Resume a paused project (whoever paused it; the platform always may)",
    "take_down": "Take the project down with a reason (reviewer; final)",
}


def _make_transition_route(action: str) -> Callable[..., schemas.ProjectRead]:
    def route(project_id: DbId, session: DbSession, user: CurrentUser,
              body: schemas.TransitionRequest | None = None) -> schemas.ProjectRead:
        project = projects.get_project(session=session, project_id=project_id)
        projects.do_transition(session=session, project=project, actor=user, action=action,
                               reason=body.reason if body else "")
        return _detail(session, project)

    route.__name__ = f"project_{action}"
    route.__doc__ = _ACTION_DOCS[action] + "."
    return route


for _action in projects.ACTIONS:
    router.add_api_route(
        f"/projects/{{project_id}}/{_action.replace('_', '-')}",
        _make_transition_route(_action), methods=["POST"], response_model=schemas.ProjectRead,
        summary=_ACTION_DOCS[_action], dependencies=[CsrfChecked],
    )


def _updates_read(session: Session,
                  updates: list[ProjectUpdate]) -> list[schemas.ProgressUpdateRead]:
    # One query for the photos of every update, not one per update.
    photos = files.attachments_of(session=session, owner_type="project_update",
                                  owner_ids=[u.id for u in updates])
    return [_update_read(u, photos[u.id]) for u in updates]


def _update_read(update: ProjectUpdate,
                 photos: list[Attachment]) -> schemas.ProgressUpdateRead:
    return schemas.ProgressUpdateRead(
        id=update.id, project_id=update.project_id, title=update.title, body=update.body,
        created_at=update.created_at, photos=[_attachment_read(a) for a in photos])


def _usages_read(session: Session, usages: list[FundUsage]) -> list[schemas.FundUsageRead]:
    # One query for the attachments of every disclosure, not one per disclosure.
    atts = files.attachments_of(session=session, owner_type="fund_usage",
                                owner_ids=[u.id for u in usages])
    return [_usage_read(u, atts[u.id]) for u in usages]


def _usage_read(usage: FundUsage, atts: list[Attachment]) -> schemas.FundUsageRead:
    return schemas.FundUsageRead(
        id=usage.id, project_id=usage.project_id, amount_fen=usage.amount_fen,
        purpose=usage.purpose, description=usage.description, spent_on=usage.spent_on,
        journal_entry_id=usage.journal_entry_id, created_at=usage.created_at,
        attachments=[_attachment_read(a) for a in atts])


@router.get("/projects/{project_id}/updates", response_model=list[schemas.ProgressUpdateRead],
            summary="List a project's progress updates")
def list_updates(project_id: DbId, session: DbSession,
                 viewer: Viewer) -> list[schemas.ProgressUpdateRead]:
    """Progress updates, newest first."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    return _updates_read(session, projects.list_updates(session=session, project_id=project.id))


@router.post("/projects/{project_id}/updates", response_model=schemas.ProgressUpdateRead,
             status_code=201, summary="Post a progress update (multipart, with photos)",
             dependencies=[CsrfChecked])
def post_update(
    request: Request,
    project_id: DbId,
    session: DbSession,
    user: CurrentUser,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
    photos: Annotated[list[UploadFile] | None, File()] = None,
) -> schemas.ProgressUpdateRead:
    """Post an update; photos are JPEG, PNG or WebP, at most 5 MB each."""
    uploads = web.read_uploads(photos)
    project = projects.get_project(session=session, project_id=project_id)
    update = projects.do_post_update(
        session=session, actor=user, project=project, title=title, body=body, photos=uploads,
        upload_dir=request.app.state.settings.upload_dir)
    return _updates_read(session, [update])[0]


@router.get("/projects/{project_id}/fund-usages", response_model=list[schemas.FundUsageRead],
            summary="List a project's fund-usage disclosures")
def list_fund_usages(project_id: DbId, session: DbSession,
                     viewer: Viewer) -> list[schemas.FundUsageRead]:
    """Fund-usage disclosures, newest first."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    return _usages_read(session,
                        projects.list_fund_usages(session=session, project_id=project.id))


@router.post("/projects/{project_id}/fund-usages", response_model=schemas.FundUsageRead,
             status_code=201, summary="Disclose fund usage (multipart, with attachments)",
             dependencies=[CsrfChecked])
def post_fund_usage(
    request: Request,
    project_id: DbId,
    session: DbSession,
    user: CurrentUser,
    amount_fen: Annotated[int, Form()],
    purpose: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    spent_on: Annotated[str, Form()] = "",
    attachments: Annotated[list[UploadFile] | None, File()] = None,
) -> schemas.FundUsageRead:
    """Disclose money spent from the project's fund (409 insufficient_funds if too much)."""
    uploads = web.read_uploads(attachments)
    project = projects.get_project(session=session, project_id=project_id)
    usage = projects.do_disclose_fund_usage(
        session=session, actor=user, project=project, amount=amount_fen, purpose=purpose,
        description=description, spent_on=spent_on, attachments=uploads,
        upload_dir=request.app.state.settings.upload_dir)
    return _usages_read(session, [usage])[0]


@router.get("/projects/{project_id}/donations", response_model=schemas.PublicDonationPage,
            summary="List a project's paid gifts (names masked)")
def list_project_donations(project_id: DbId, session: DbSession, viewer: Viewer,
                           limit: Limit = 20, offset: Offset = 0) -> schemas.PublicDonationPage:
    """Paid gifts of both kinds (ordinary and giving-day), newest first; donors' names masked,
    anonymous gifts as 爱心人士."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    rows, total = gifts.list_project_gifts(session=session, project_id=project.id,
                                           limit=limit, offset=offset)
    return schemas.PublicDonationPage(
        items=[schemas.PublicDonationRead(donor=mask_name(d.donor_name, anonymous=d.anonymous),
                                          amount_fen=d.amount_fen, message=d.message,
                                          paid_at=d.paid_at) for d in rows],
        total=total, limit=limit, offset=offset)
