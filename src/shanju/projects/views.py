"""HTML pages of the projects domain: the public list and project page, the organization
console and the reviewers' project pages, and ``/files/{id}``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from shanju.accounts.models import Role, User
from shanju.campaigns import live as campaigns_live
from shanju.campaigns import orders
from shanju.core import files, images
from shanju.core.clock import today_cn
from shanju.core.db import MAX_PAGE, DbId, is_digits
from shanju.core.deps import CsrfChecked, DbSession, FormFields, PostedForm, Viewer
from shanju.core.errors import (
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)
from shanju.core.web import login_url, read_uploads, redirect, render, tr
from shanju.donations import service as donations
from shanju.gifts import service as gifts
from shanju.gifts import views as gift_views
from shanju.moderation import service as moderation
from shanju.organizations import payment_routes
from shanju.organizations import service as organizations
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.projects.models import Project, ProjectStatus
from shanju.sharing import service as sharing

router = APIRouter()
PAGE_SIZE = 20


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, min(int(raw), MAX_PAGE)) if is_digits(raw) and len(raw) < 10 else 1


def _login(request: Request) -> Response:
    return redirect(login_url(str(request.url.path)))


def _require_staff(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    organizations.staff_org_id(actor=viewer)
    return viewer


def _require_reviewer(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    if not viewer.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
    return viewer


def _fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- public pages ----------------------------------------------------------------------------


def _detail_context(session: Session, project: Project) -> dict[str, Any]:
    listing = projects.listing_of(session=session, project=project)
    orgs = organizations.organizations_by_id(
        session=session, ids=[project.organization_id, project.recipient_org_id])
    updates = projects.list_updates(session=session, project_id=project.id)
    usages = projects.list_fund_usages(session=session, project_id=project.id)
    update_photos = files.attachments_of(session=session, owner_type="project_update",
                                         owner_ids=[u.id for u in updates])
    gallery = projects.list_gallery(session=session, project_id=project.id)
    shown = images.pictures_of(session=session, attachments=[
        *gallery, *(a for atts in update_photos.values() for a in atts)])
    return {
        "project": project,
        "listing": listing,
        "cover": listing.cover,
        "gallery": [shown[a.id] for a in gallery if a.id in shown],
        "org": orgs[project.organization_id],
        "recipient": orgs[project.recipient_org_id],
        "updates": updates,
        "update_photos": update_photos,
        "update_pictures": {uid: [shown[a.id] for a in atts if a.id in shown]
                            for uid, atts in update_photos.items()},
        "usages": usages,
        "usage_files": files.attachments_of(session=session, owner_type="fund_usage",
                                            owner_ids=[u.id for u in usages]),
        "disclosed_fen": sum(u.amount_fen for u in usages),
        "filing_valid_today": projects.filing_valid_on(project, today_cn()),
        "organization_id": project.organization_id,
        "project_id": project.id,
    }


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(project_id: DbId, request: Request, session: DbSession,
                 viewer: Viewer) -> HTMLResponse:
    """A project's public page with the disclosures the Charity Law requires."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    ctx = _detail_context(session, project)
    ctx["goal"] = ctx["listing"].goal
    settings = request.app.state.settings
    if project.status != ProjectStatus.TAKEN_DOWN:
        ctx["share"] = sharing.share_meta(project=project, base_url=settings.base_url,
                                          site_name=settings.platform_name)
    if project.status == ProjectStatus.FUNDRAISING:
        ctx["time_left"] = goals.project_time_left(project)
    ctx["donations"] = gifts.recent_gifts(session=session, project_id=project.id, limit=20)
    # Donors' messages as everyone may see them: held and hidden ones are left out.
    ctx["shown_messages"] = moderation.public_messages(session, ctx["donations"])
    ctx["campaign_matches"] = campaigns_live.project_match_status(session=session,
                                                                  project_id=project.id)
    try:
        projects.check_accepts_donations(project=project, on=today_cn())
        ctx["accepts_donations"] = True
    except DomainError:
        ctx["accepts_donations"] = False
    # The money settles to the receiving organization's own merchant account: without an
    # approved one at a configured provider, a reason replaces the donate form.
    ctx["payment_block"] = payment_routes.payment_block_reason(
        session=session, organization_id=project.recipient_org_id,
        providers=request.app.state.providers.names) if ctx["accepts_donations"] else None
    # What the donations domain's form expects (a fresh key per page view: one gift per key).
    ctx["provinces"] = projects.PROVINCES
    ctx["idempotency_key"] = uuid.uuid4().hex
    ctx["values"] = {"amount": "20", "donor_name": viewer.display_name if viewer else "",
                     "province": (viewer.province if viewer else "") or ""}
    # Enrolled in a live giving-day campaign: the form goes to the campaign's checkout.
    giving_day = orders.live_campaign_for_project(session=session, project_id=project.id)
    if giving_day is not None:
        ctx["giving_day"] = giving_day
        ctx["campaign"] = giving_day
        ctx["giving_day_left"] = campaigns_live.campaign_time_left(giving_day)
        ctx["donate_action"] = f"/campaigns/{giving_day.id}/projects/{project.id}/donate"
    # Real providers (WeChat Pay, Alipay) the organization takes: the form asks which.
    ctx["pay_methods"] = gift_views.pay_methods(request, session, project.recipient_org_id)
    return render(request, "projects/detail.html", ctx)


@router.get("/files/{attachment_id}")
def file_download(
    attachment_id: DbId, request: Request, session: DbSession, viewer: Viewer,
    w: Annotated[int | None, Query(ge=1, le=10_000,
                                   description="A picture's width: the smallest stored "
                                               "variant at least this wide.")] = None,
) -> Response:
    """Serve an uploaded file with the type its bytes were checked to be (a picture at the
    width asked for), to those who may see the project it belongs to."""
    attachment, public = projects.get_visible_attachment(
        session=session, attachment_id=attachment_id, viewer=viewer)
    sha256, content_type = attachment.sha256, attachment.content_type
    if w is not None:
        variant = images.variant_for(session=session, attachment=attachment, width=w)
        if variant is not None:
            sha256, content_type = variant.sha256, variant.content_type
    headers = {
        # Stored bytes never change: their hash is the validator.
        "ETag": f'"{sha256}"',
        # A draft's file must not stay in a shared cache for others to be served. A public
        # one is kept a day, not forever: a picture removed (consent withdrawn) must leave
        # shared caches too.
        "Cache-Control": "public, max-age=86400" if public else "private, no-store",
    }
    if public and sha256 in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    data = files.read_bytes(request.app.state.settings.upload_dir, attachment, sha256=sha256)
    name = quote(attachment.filename)
    return Response(
        content=data,
        media_type=content_type,
        headers={
            **headers,
            "Content-Disposition": f"inline; filename*=UTF-8''{name}",
            # A PDF opened inline must not run scripts in our origin.
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        },
    )


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak or strong, quotes removed)."""
    return {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")
            if tag.strip()}


# --- the organization console ----------------------------------------------------------------


@router.get("/console", response_class=HTMLResponse)
def console_home(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The organization's console: its status and its projects with totals."""
    if viewer is None:
        return _login(request)
    if viewer.role == Role.ORG_STAFF and viewer.organization_id is None:
        # Staff who just signed up have no organization yet: registering it is their next step.
        return redirect("/organizations/register")
    user = _require_staff(viewer)
    org = organizations.staff_organization(session=session, actor=user)
    return render(request, "console/index.html", {
        "org": org,
        "items": projects.list_org_projects(session=session, organization_id=org.id),
        "qualified": org.is_qualified_on(today_cn()),
        "payment_block": payment_routes.payment_block_reason(
            session=session, organization_id=org.id,
            providers=request.app.state.providers.names),
    })


def _form_context(session: Session, user: User, values: dict[str, str],
                  project: Project | None = None,
                  error: DomainError | None = None, request: Request | None = None,
                  ) -> dict[str, Any]:
    org = organizations.staff_organization(session=session, actor=user)
    return {
        "org": org,
        "project": project,
        "values": values,
        "qualified": org.is_qualified_on(today_cn()),
        "partners": projects.partner_candidates(session=session, exclude_id=user.organization_id),
        "provinces": projects.PROVINCES,
        "categories": projects.CATEGORIES,
        "error": error,
        "error_message": tr(request, error.message) if (error and request) else None,
    }


@router.get("/console/projects/new", response_class=HTMLResponse)
def new_project_form(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The form for a new draft project."""
    if viewer is None:
        return _login(request)
    user = _require_staff(viewer)
    values = dict.fromkeys(projects.FORM_FIELDS, "")
    values["category"] = "other"
    return render(request, "console/project_form.html", _form_context(session, user, values))


def _save_cover(request: Request, session: Session, user: User, project: Project,
                form: FormData) -> None:
    cover = form.get("cover")
    alt = form.get("cover_alt")
    if isinstance(cover, UploadFile):
        uploads = read_uploads([cover])
        if uploads:
            projects.do_set_cover(session=session, actor=user, project=project,
                                  upload=uploads[0],
                                  upload_dir=request.app.state.settings.upload_dir,
                                  alt_text=alt if isinstance(alt, str) else "")


@router.post("/console/projects/new", dependencies=[CsrfChecked])
def create_project(request: Request, session: DbSession, viewer: Viewer,
                   form: PostedForm) -> Response:
    """Create a draft project and go to its console page."""
    user = _require_staff(viewer)
    values = _fields(form)
    try:
        with session.begin_nested():
            project = projects.do_create_project(
                session=session, actor=user, fields=projects.parse_form(values))
            _save_cover(request, session, user, project, form)
    except DomainError as exc:
        return render(request, "console/project_form.html",
                      _form_context(session, user, values, error=exc, request=request),
                      status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}")


def _managed(session: Session, viewer: User | None, project_id: DbId) -> tuple[User, Project]:
    user = _require_staff(viewer)
    project = projects.get_project(session=session, project_id=project_id)
    projects.check_can_manage(actor=user, project=project)
    return user, project


@router.get("/console/projects/{project_id}/edit", response_class=HTMLResponse)
def edit_project_form(project_id: DbId, request: Request, session: DbSession,
                      viewer: Viewer) -> Response:
    """The edit form of a draft or rejected project."""
    if viewer is None:
        return _login(request)
    user, project = _managed(session, viewer, project_id)
    return render(request, "console/project_form.html",
                  _form_context(session, user, projects.form_values(project), project))


@router.post("/console/projects/{project_id}/edit", dependencies=[CsrfChecked])
def edit_project(project_id: DbId, request: Request, session: DbSession,
                 viewer: Viewer, form: PostedForm) -> Response:
    """Save a draft or rejected project."""
    user, project = _managed(session, viewer, project_id)
    values = _fields(form)
    try:
        with session.begin_nested():
            projects.do_update_project(session=session, actor=user, project=project,
                                       fields=projects.parse_form(values))
            _save_cover(request, session, user, project, form)
    except DomainError as exc:
        session.refresh(project)
        return render(request, "console/project_form.html",
                      _form_context(session, user, values, project, error=exc,
                                    request=request),
                      status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}")


def _console_project(request: Request, session: Session, user: User, project: Project,
                     *, error: DomainError | None = None, form: str = "",
                     values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    ctx = _detail_context(session, project)
    page = _page(request)
    rows, total = donations.list_donations(session=session, project_id=project.id,
                                           limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    ctx.update({
        "actions": projects.allowed_actions(project, projects.Actor.ORG),
        "editable": project.status in projects.EDITABLE_STATUSES,
        "reportable": project.status in projects.REPORTABLE_STATUSES,
        "fund_balance": projects.fund_balance(session=session, project=project),
        "donation_rows": rows, "donation_total": total, "page": page,
        # Held and hidden messages are not shown here (the review queue has them).
        "message_views": moderation.views_of(session, [(d.public_id, d.message) for d in rows]),
        "pages": max(1, -(-total // PAGE_SIZE)),
        "error": error, "error_message": tr(request, error.message) if error else None,
        "error_form": form, "values": values or {},
        "paused_by_platform": projects.paused_by_platform(project),
        "can_change_pictures": project.status != ProjectStatus.TAKEN_DOWN,
        "goal": ctx["listing"].goal,
        "goal_editable": project.status in goals.POLICY_EDITABLE,
        "today": today_cn().isoformat(),
        # The organizations that publish or receive the gifts see donors' names.
        "show_names": user.organization_id in (project.organization_id,
                                               project.recipient_org_id),
    })
    return render(request, "console/project.html", ctx, status_code=status_code)


@router.get("/console/projects/{project_id}", response_class=HTMLResponse)
def console_project(project_id: DbId, request: Request, session: DbSession,
                    viewer: Viewer) -> Response:
    """Manage one project: lifecycle buttons, updates, disclosures and donations."""
    if viewer is None:
        return _login(request)
    user, project = _managed(session, viewer, project_id)
    return _console_project(request, session, user, project)


@router.post("/console/projects/{project_id}/actions/{action}", dependencies=[CsrfChecked])
def console_action(project_id: DbId, action: str, request: Request, session: DbSession,
                   viewer: Viewer, values: FormFields) -> Response:
    """Make a lifecycle move as the organization."""
    user, project = _managed(session, viewer, project_id)
    try:
        with session.begin_nested():
            projects.do_transition(session=session, project=project, actor=user,
                                   action=action.replace("-", "_"),
                                   reason=values.get("reason", ""))
    except DomainError as exc:
        session.refresh(project)
        return _console_project(request, session, user, project, error=exc, form="action",
                                values=values, status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}")


@router.post("/console/projects/{project_id}/goal-setting", dependencies=[CsrfChecked])
def console_goal_setting(project_id: DbId, request: Request, session: DbSession,
                         viewer: Viewer, values: FormFields) -> Response:
    """Choose what happens when the goal is reached: continue, stop or a stretch goal."""
    user, project = _managed(session, viewer, project_id)
    try:
        with session.begin_nested():
            projects.do_set_goal_policy(session=session, actor=user, project=project,
                                        policy=values.get("goal_policy", ""),
                                        stretch_goal=values.get("stretch_goal", ""))
    except DomainError as exc:
        session.refresh(project)
        return _console_project(request, session, user, project, error=exc, form="goal",
                                values=values, status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}#goal-setting")


def _console_report(
    request: Request, session: Session, viewer: User | None, project_id: DbId, *,
    form: FormData, files_field: str, form_name: str, anchor: str,
    post: Callable[[User, Project, dict[str, str], list[files.Upload]], object],
) -> Response:
    """Post a report with files from the console form; on error show the project again."""
    user, project = _managed(session, viewer, project_id)
    values = _fields(form)
    uploaded = [v for v in form.getlist(files_field) if isinstance(v, UploadFile)]
    try:
        uploads = read_uploads(uploaded)
        # A refused post leaves nothing behind: the request's transaction still commits.
        with session.begin_nested():
            post(user, project, values, uploads)
    except DomainError as exc:
        return _console_project(request, session, user, project, error=exc, form=form_name,
                                values=values, status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}#{anchor}")


@router.post("/console/projects/{project_id}/updates", dependencies=[CsrfChecked])
def console_post_update(project_id: DbId, request: Request, session: DbSession,
                        viewer: Viewer, form: PostedForm) -> Response:
    """Post a progress update with photos."""
    def post(user: User, project: Project, values: dict[str, str],
             uploads: list[files.Upload]) -> object:
        return projects.do_post_update(
            session=session, actor=user, project=project, title=values.get("title", ""),
            body=values.get("body", ""), photos=uploads, alt_text=values.get("alt", ""),
            upload_dir=request.app.state.settings.upload_dir)

    return _console_report(request, session, viewer, project_id, form=form,
                           files_field="photos", form_name="update", anchor="updates",
                           post=post)


@router.post("/console/projects/{project_id}/pictures", dependencies=[CsrfChecked])
def console_add_pictures(project_id: DbId, request: Request, session: DbSession,
                         viewer: Viewer, form: PostedForm) -> Response:
    """Upload a new cover (``kind=cover``) or add photos to the gallery."""
    def post(user: User, project: Project, values: dict[str, str],
             uploads: list[files.Upload]) -> object:
        upload_dir = request.app.state.settings.upload_dir
        if values.get("kind") == "cover":
            if len(uploads) != 1:
                raise InvalidInput("Choose one picture for the cover.", code="cover_required",
                                   field="photos")
            return projects.do_set_cover(session=session, actor=user, project=project,
                                         upload=uploads[0], upload_dir=upload_dir,
                                         alt_text=values.get("alt", ""))
        return projects.do_add_gallery_photos(session=session, actor=user, project=project,
                                              photos=uploads, upload_dir=upload_dir,
                                              alt_text=values.get("alt", ""))

    return _console_report(request, session, viewer, project_id, form=form,
                           files_field="photos", form_name="pictures", anchor="pictures",
                           post=post)


@router.post("/console/projects/{project_id}/pictures/{attachment_id}/{action}",
             dependencies=[CsrfChecked])
def console_change_picture(project_id: DbId, attachment_id: DbId, action: str,
                           request: Request, session: DbSession, viewer: Viewer,
                           values: FormFields) -> Response:
    """Describe (``describe``, with ``alt``) or remove (``remove``) one picture."""
    user, project = _managed(session, viewer, project_id)
    try:
        with session.begin_nested():
            if action == "describe":
                projects.do_describe_picture(session=session, actor=user, project=project,
                                             attachment_id=attachment_id,
                                             alt_text=values.get("alt", ""))
            elif action == "remove":
                projects.do_remove_picture(session=session, actor=user, project=project,
                                           attachment_id=attachment_id)
            else:
                raise NotFound("No such picture action.", code="unknown_action")
    except DomainError as exc:
        session.refresh(project)
        return _console_project(request, session, user, project, error=exc, form="pictures",
                                values=values, status_code=exc.status_code)
    return redirect(f"/console/projects/{project.id}#pictures")


@router.post("/console/projects/{project_id}/fund-usages", dependencies=[CsrfChecked])
def console_post_fund_usage(project_id: DbId, request: Request, session: DbSession,
                            viewer: Viewer, form: PostedForm) -> Response:
    """Disclose fund usage with invoices and receipts."""
    def post(user: User, project: Project, values: dict[str, str],
             uploads: list[files.Upload]) -> object:
        return projects.do_disclose_fund_usage(
            session=session, actor=user, project=project, amount=values.get("amount", ""),
            purpose=values.get("purpose", ""), description=values.get("description", ""),
            spent_on=values.get("spent_on", ""), attachments=uploads,
            upload_dir=request.app.state.settings.upload_dir)

    return _console_report(request, session, viewer, project_id, form=form,
                           files_field="attachments", form_name="usage", anchor="usages",
                           post=post)


# --- reviewers --------------------------------------------------------------------------------


@router.get("/review/projects", response_class=HTMLResponse)
def review_projects(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """Projects for reviewers, submitted ones first."""
    if viewer is None:
        return _login(request)
    _require_reviewer(viewer)
    raw = request.query_params.get("status", "")
    status = ProjectStatus(raw) if raw in {s.value for s in ProjectStatus} else None
    page = _page(request)
    items, total = projects.list_for_review(session=session, status=status, limit=PAGE_SIZE,
                                            offset=(page - 1) * PAGE_SIZE)
    orgs = organizations.organizations_by_id(session=session,
                                        ids=[i.project.organization_id for i in items])
    return render(request, "review/projects.html", {
        "items": items, "orgs": orgs, "total": total, "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)), "status": status.value if status else "",
        "statuses": [s.value for s in ProjectStatus if s != ProjectStatus.DRAFT],
    })


def _review_project(request: Request, session: Session, project: Project, *,
                    error: DomainError | None = None, values: dict[str, str] | None = None,
                    status_code: int = 200) -> Response:
    ctx = _detail_context(session, project)
    ctx.update({
        "actions": projects.allowed_actions(project, projects.Actor.PLATFORM),
        "error": error, "error_message": tr(request, error.message) if error else None,
        "values": values or {},
        "today": today_cn(),
    })
    return render(request, "review/projects_detail.html", ctx, status_code=status_code)


@router.get("/review/projects/{project_id}", response_class=HTMLResponse)
def review_project(project_id: DbId, request: Request, session: DbSession,
                   viewer: Viewer) -> Response:
    """One project for a reviewer: everything it shows, and the reviewer's actions."""
    if viewer is None:
        return _login(request)
    _require_reviewer(viewer)
    project = projects.get_project(session=session, project_id=project_id)
    return _review_project(request, session, project)


@router.post("/review/projects/{project_id}/actions/{action}", dependencies=[CsrfChecked])
def review_action(project_id: DbId, action: str, request: Request, session: DbSession,
                  viewer: Viewer, values: FormFields) -> Response:
    """Approve, reject, pause, resume or take down a project as the platform."""
    user = _require_reviewer(viewer)
    project = projects.get_project(session=session, project_id=project_id)
    try:
        with session.begin_nested():
            projects.do_transition(session=session, project=project, actor=user,
                                   action=action.replace("-", "_"),
                                   reason=values.get("reason", ""))
    except DomainError as exc:
        session.refresh(project)
        return _review_project(request, session, project, error=exc, values=values,
                               status_code=exc.status_code)
    return redirect(f"/review/projects/{project.id}")
