"""JSON API routes of the projects domain (under /api/v1).

Lifecycle moves are ``POST /projects/{id}/<action>`` with an optional ``{"reason": ...}``
body, one route per action of ``service.TRANSITIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from sqlalchemy.orm import Session

from shanju.core import files, images, web
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, OrgStaff, Viewer
from shanju.core.errors import InvalidInput
from shanju.core.files import Attachment
from shanju.core.masking import mask_name
from shanju.discovery import service as discovery
from shanju.gifts import service as gifts
from shanju.moderation import service as moderation
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


def picture_read(picture: images.Picture) -> schemas.PictureRead:
    """Render a stored picture for the API."""
    return schemas.PictureRead(id=picture.id, url=picture.src(), alt=picture.alt,
                               width=picture.width, height=picture.height,
                               widths=list(picture.widths), srcset=picture.srcset)


def project_read(
    listing: projects.ProjectListing,
    *,
    orgs: dict[int, Organization] | None = None,
    disclosed_fen: int | None = None,
    gallery: list[images.Picture] | None = None,
) -> schemas.ProjectRead:
    """Render a project listing for the API."""
    p = listing.project
    orgs = orgs or {}
    goal = listing.goal
    left = goals.project_time_left(p) if p.status == ProjectStatus.FUNDRAISING else None
    return schemas.ProjectRead(
        id=p.id, title=p.title, summary=p.summary, description=p.description, story=p.story,
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
        cover=picture_read(listing.cover) if listing.cover else None,
        gallery=[picture_read(g) for g in gallery] if gallery is not None else None,
        url=f"/projects/{p.id}",
        organization=_org_brief(orgs.get(p.organization_id)),
        recipient_organization=_org_brief(orgs.get(p.recipient_org_id)),
    )


def _detail(session: Session, project: Project) -> schemas.ProjectRead:
    listing = projects.listing_of(session=session, project=project)
    orgs = organizations.organizations_by_id(
        session=session, ids=[project.organization_id, project.recipient_org_id])
    gallery = projects.list_gallery(session=session, project_id=project.id)
    shown = images.pictures_of(session=session, attachments=gallery)
    return project_read(
        listing, orgs=orgs,
        disclosed_fen=projects.disclosed_total(session=session, project_id=project.id),
        gallery=[shown[a.id] for a in gallery if a.id in shown])


def _attachment_read(a: Attachment,
                     pictures: dict[int, images.Picture] | None = None) -> schemas.AttachmentRead:
    picture = (pictures or {}).get(a.id)
    return schemas.AttachmentRead(id=a.id, filename=a.filename, content_type=a.content_type,
                                  size=a.size, url=f"/files/{a.id}",
                                  picture=picture_read(picture) if picture else None)


@router.get("/projects", response_model=schemas.ProjectPage,
            summary="Search, filter and sort public projects")
def list_projects(
    session: DbSession,
    q: Annotated[str | None, Query(
        description="Search text (Chinese or not): at most 50 characters and 5 words, split "
                    "at spaces and punctuation; every word must appear.")] = None,
    field: Annotated[str | None, Query(
        description="Field of work: " + ", ".join(projects.CATEGORIES) + ".")] = None,
    category: Annotated[str | None, Query(
        description="The same as field (its former name).", deprecated=True)] = None,
    province: Annotated[str | None, Query(
        description="Province: short or full Chinese name, GB/T 2260 code or English name.")
    ] = None,
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
) -> schemas.ProjectPage:
    """Public projects a search and filters find, in the order asked, with raised totals.

    ``q`` finds every word in a project's title, summary, description or beneficiary's story,
    or in its publishing organization's name. Codes of a 422: ``invalid_sort``,
    ``invalid_field``, ``invalid_province``, ``invalid_status``, ``invalid_campaign``,
    ``invalid_organization``, ``query_too_long``, ``too_many_terms``, ``invalid_query``, and
    ``validation_error`` for a number that is not one.
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
    shown = images.pictures_of(session=session,
                               attachments=[a for atts in photos.values() for a in atts])
    return [_update_read(u, photos[u.id], shown) for u in updates]


def _update_read(update: ProjectUpdate, photos: list[Attachment],
                 pictures: dict[int, images.Picture]) -> schemas.ProgressUpdateRead:
    return schemas.ProgressUpdateRead(
        id=update.id, project_id=update.project_id, title=update.title, body=update.body,
        created_at=update.created_at, photos=[_attachment_read(a, pictures) for a in photos])


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
    alt: Annotated[str, Form(description="Describes the photos for people who cannot see "
                                         "them.")] = "",
) -> schemas.ProgressUpdateRead:
    """Post an update; photos are JPEG, PNG or WebP, at most 5 MB and 40 megapixels each,
    stored resized as WebP without their metadata (EXIF, GPS)."""
    uploads = web.read_uploads(photos)
    project = projects.get_project(session=session, project_id=project_id)
    update = projects.do_post_update(
        session=session, actor=user, project=project, title=title, body=body, photos=uploads,
        upload_dir=request.app.state.settings.upload_dir, alt_text=alt)
    return _updates_read(session, [update])[0]


def _pictures_read(session: Session, stored: list[Attachment]) -> list[schemas.PictureRead]:
    shown = images.pictures_of(session=session, attachments=stored)
    return [picture_read(shown[a.id]) for a in stored]


@router.post("/projects/{project_id}/cover", response_model=schemas.PictureRead,
             status_code=201, summary="Set the project's cover picture (multipart)",
             dependencies=[CsrfChecked])
def set_cover(
    request: Request,
    project_id: DbId,
    session: DbSession,
    user: CurrentUser,
    photo: Annotated[UploadFile, File(description="JPEG, PNG or WebP.")],
    alt: Annotated[str, Form()] = "",
) -> schemas.PictureRead:
    """Replace the cover (the old one is deleted); 400 ``image_corrupt``, ``image_too_large``,
    ``file_type_not_allowed`` or ``file_too_large`` for a file that cannot be one."""
    uploads = web.read_uploads([photo])
    if not uploads:
        raise InvalidInput("Choose one picture for the cover.", code="cover_required",
                           field="photo")
    project = projects.get_project(session=session, project_id=project_id)
    cover = projects.do_set_cover(session=session, actor=user, project=project,
                                  upload=uploads[0], alt_text=alt,
                                  upload_dir=request.app.state.settings.upload_dir)
    return _pictures_read(session, [cover])[0]


@router.post("/projects/{project_id}/gallery", response_model=list[schemas.PictureRead],
             status_code=201, summary="Add photos to the project's gallery (multipart)",
             dependencies=[CsrfChecked])
def add_gallery_photos(
    request: Request,
    project_id: DbId,
    session: DbSession,
    user: CurrentUser,
    photos: Annotated[list[UploadFile] | None, File()] = None,
    alt: Annotated[str, Form()] = "",
) -> list[schemas.PictureRead]:
    """Add up to 9 photos at a time (24 in all), all or none."""
    uploads = web.read_uploads(photos)
    project = projects.get_project(session=session, project_id=project_id)
    stored = projects.do_add_gallery_photos(
        session=session, actor=user, project=project, photos=uploads, alt_text=alt,
        upload_dir=request.app.state.settings.upload_dir)
    return _pictures_read(session, stored)


@router.delete("/projects/{project_id}/pictures/{attachment_id}", status_code=204,
               summary="Remove a picture (cover, gallery or an update's photo)",
               dependencies=[CsrfChecked])
def remove_picture(project_id: DbId, attachment_id: DbId, session: DbSession,
                   user: CurrentUser) -> Response:
    """Remove one of the project's pictures; its address then answers 404."""
    project = projects.get_project(session=session, project_id=project_id)
    projects.do_remove_picture(session=session, actor=user, project=project,
                               attachment_id=attachment_id)
    return Response(status_code=204)


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
    shown = moderation.public_messages(session, rows)  # held and hidden messages left out
    return schemas.PublicDonationPage(
        items=[schemas.PublicDonationRead(gift_id=d.public_id,
                                          donor=mask_name(d.donor_name, anonymous=d.anonymous),
                                          amount_fen=d.amount_fen,
                                          message=shown.get(d.public_id, ""),
                                          paid_at=d.paid_at) for d in rows],
        total=total, limit=limit, offset=offset)
