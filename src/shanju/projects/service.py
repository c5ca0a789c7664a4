"""Projects: the lifecycle, the partner and filing rules, progress updates and fund usage.

The lifecycle is one table, :data:`TRANSITIONS`; every state change goes through
:func:`do_transition`, which checks who is acting, whether the move is allowed from the current
state and the move's own preconditions, then changes the state and audits it in the caller's
transaction. See ``docs/projects.md``.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import audit, files, images
from shanju.core.clock import today_cn, utcnow
from shanju.core.db import get_or_404, parse_id
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.files import Attachment
from shanju.core.i18n import N_
from shanju.core.money import check_amount_fen, format_fen, parse_yuan
from shanju.core.regions import PROVINCES as PROVINCES  # re-exported for the views
from shanju.core.text import check_characters
from shanju.gifts import service as gifts
from shanju.ledger import service as ledger
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects import goals, labels
from shanju.projects.models import FundUsage, Project, ProjectStatus, ProjectUpdate

S = ProjectStatus

CATEGORIES: tuple[str, ...] = (
    "education", "health", "poverty", "children", "elderly", "disability", "environment",
    "disaster", "animals", "culture", "other",
)
# States anyone may see a project in (the page of a taken-down project only says so).
PUBLIC_STATUSES = frozenset({S.FUNDRAISING, S.PAUSED, S.ENDED, S.EXECUTING, S.COMPLETED,
                             S.TAKEN_DOWN})
# States the public project list shows by default.
LISTED_STATUSES: tuple[ProjectStatus, ...] = (S.FUNDRAISING, S.ENDED, S.EXECUTING, S.COMPLETED)
EDITABLE_STATUSES = frozenset({S.DRAFT, S.REJECTED})
# After approval and before being taken down the organization reports on the project.
REPORTABLE_STATUSES = frozenset({S.FUNDRAISING, S.PAUSED, S.ENDED, S.EXECUTING, S.COMPLETED})


class Actor(enum.StrEnum):
    """Who makes a move: the publishing organization's staff or the platform's reviewers."""

    ORG = "org"
    PLATFORM = "platform"


@dataclass(frozen=True)
class Transition:
    """One allowed move: ``action`` takes a project from ``source`` to ``target``.

    ``target`` None means "back to ``status_before_pause``" (resume).
    """

    action: str
    source: ProjectStatus
    target: ProjectStatus | None
    by: frozenset[Actor]
    audit_verb: str
    reason_required: bool = False


_ORG = frozenset({Actor.ORG})
_PLATFORM = frozenset({Actor.PLATFORM})
_BOTH = frozenset({Actor.ORG, Actor.PLATFORM})
_PAUSABLE = (S.FUNDRAISING, S.ENDED, S.EXECUTING)
_TAKE_DOWN_FROM = (S.SUBMITTED, S.APPROVED, S.REJECTED, S.FUNDRAISING, S.PAUSED, S.ENDED,
                   S.EXECUTING, S.COMPLETED)

TRANSITIONS: tuple[Transition, ...] = (
    Transition("submit", S.DRAFT, S.SUBMITTED, _ORG, "submitted"),
    Transition("submit", S.REJECTED, S.SUBMITTED, _ORG, "submitted"),
    Transition("approve", S.SUBMITTED, S.APPROVED, _PLATFORM, "approved"),
    Transition("reject", S.SUBMITTED, S.REJECTED, _PLATFORM, "rejected", reason_required=True),
    Transition("start", S.APPROVED, S.FUNDRAISING, _ORG, "fundraising_started"),
    Transition("end", S.FUNDRAISING, S.ENDED, _ORG, "fundraising_ended"),
    Transition("execute", S.ENDED, S.EXECUTING, _ORG, "execution_started"),
    Transition("complete", S.EXECUTING, S.COMPLETED, _ORG, "completed"),
    *(Transition("pause", s, S.PAUSED, _BOTH, "paused", reason_required=True)
      for s in _PAUSABLE),
    Transition("resume", S.PAUSED, None, _BOTH, "resumed"),
    *(Transition("take_down", s, S.TAKEN_DOWN, _PLATFORM, "taken_down", reason_required=True)
      for s in _TAKE_DOWN_FROM),
)
ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(t.action for t in TRANSITIONS))
ACTION_TARGET: dict[str, ProjectStatus | None] = {t.action: t.target for t in TRANSITIONS}
ACTION_BY: dict[str, frozenset[Actor]] = {t.action: t.by for t in TRANSITIONS}


def find_transition(action: str, source: ProjectStatus) -> Transition | None:
    """Return the transition ``action`` makes from ``source``, if it is allowed at all."""
    for t in TRANSITIONS:
        if t.action == action and t.source == source:
            return t
    return None


def allowed_actions(project: Project, actor: Actor) -> list[str]:
    """Return the actions ``actor`` may try on ``project`` now (for buttons)."""
    return [
        t.action for t in TRANSITIONS
        if t.source == project.status and actor in t.by
        and not (t.action == "resume" and actor is Actor.ORG and paused_by_platform(project))
    ]


# --- reading -------------------------------------------------------------------------------


def get_project(*, session: Session, project_id: int) -> Project:
    """Return a project or raise NotFound ``project_not_found``."""
    return get_or_404(session, Project, project_id, message=N_("This project does not exist."),
                      code="project_not_found")


def get_visible_project(*, session: Session, project_id: int, viewer: User | None) -> Project:
    """Return a project the viewer may see: public states for all, every state for staff and
    reviewers; others get the same NotFound as for a missing project."""
    project = get_project(session=session, project_id=project_id)
    if project.status in PUBLIC_STATUSES or can_manage(viewer, project) or (
        viewer is not None and viewer.is_reviewer
    ):
        return project
    raise NotFound("This project does not exist.", code="project_not_found")


def _project_id_of(session: Session, attachment: Attachment) -> int | None:
    """The project an attachment belongs to (a cover, an update's photo, a disclosure's file)."""
    owner_id = attachment.owner_id
    if owner_id is None:
        return None
    if attachment.owner_type in ("project_cover", "project_gallery"):
        return owner_id if session.get(Project, owner_id) is not None else None
    if attachment.owner_type == "project_update":
        update = session.get(ProjectUpdate, owner_id)
        return update.project_id if update is not None else None
    if attachment.owner_type == "fund_usage":
        usage = session.get(FundUsage, owner_id)
        return usage.project_id if usage is not None else None
    return None


def get_visible_attachment(*, session: Session, attachment_id: int,
                           viewer: User | None) -> tuple[Attachment, bool]:
    """Return an uploaded file the viewer may see and whether everyone may see it.

    A file is seen by whoever may see the project it belongs to (a cover, an update's photo,
    a disclosure's receipt): everyone once the project is public, otherwise its organization's
    staff and reviewers. Anyone else gets the same NotFound as for a missing file, so the
    sequential ids reveal nothing of drafts.
    """
    attachment = files.get_attachment(session=session, attachment_id=attachment_id)
    project_id = _project_id_of(session, attachment)
    if project_id is None:
        # A file of no project (never linked, or its owner is gone): its uploader and
        # reviewers only.
        if viewer is not None and (viewer.is_reviewer or viewer.id == attachment.uploaded_by_id):
            return attachment, False
        raise NotFound("No such file.", code="file_not_found")
    try:
        project = get_visible_project(session=session, project_id=project_id, viewer=viewer)
    except NotFound:
        raise NotFound("No such file.", code="file_not_found") from None
    return attachment, project.status in PUBLIC_STATUSES


def can_manage(viewer: User | None, project: Project) -> bool:
    """Tell whether the viewer is staff of the project's publishing organization."""
    return (
        viewer is not None
        and viewer.role == Role.ORG_STAFF
        and viewer.organization_id is not None
        and viewer.organization_id == project.organization_id
    )


def check_accepts_donations(*, project: Project, on: dt.date) -> None:
    """Raise Conflict ``project_not_fundraising`` unless the project takes gifts on ``on``."""
    if project.status != S.FUNDRAISING:
        raise Conflict(
            "This project is not raising funds at the moment, so it cannot take donations.",
            code="project_not_fundraising",
            details={"status": project.status.value},
        )
    if project.ends_on is not None and on > project.ends_on:
        raise Conflict(
            "This project's fundraising period ended on %(ends_on)s, so it takes no more "
            "donations.",
            code="project_not_fundraising", params={"ends_on": project.ends_on.isoformat()},
            details={"status": project.status.value, "ends_on": project.ends_on.isoformat()},
        )
    if not filing_valid_on(project, on):
        raise Conflict(
            "This project is not raising funds now: its fundraising filing is not valid today.",
            code="project_not_fundraising",
            details={"status": project.status.value, "filing_valid_until":
                     project.filing_valid_until.isoformat() if project.filing_valid_until
                     else None},
        )


def filing_valid_on(project: Project, day: dt.date) -> bool:
    """Tell whether the project's fundraising filing (备案) covers ``day``."""
    return bool(
        project.filing_number
        and project.filing_valid_from is not None
        and project.filing_valid_until is not None
        and project.filing_valid_from <= day <= project.filing_valid_until
    )


@dataclass(frozen=True)
class ProjectListing:
    """A project with what it has raised, for lists and cards."""

    project: Project
    raised_fen: int
    donations: int
    cover: images.Picture | None = None

    @property
    def percent(self) -> int:
        """Progress toward the goal in force (a stretch goal once the goal is reached),
        0–100 (for the bar)."""
        return self.goal.percent

    @property
    def goal(self) -> goals.Goal:
        """Where the project stands against its goal (已筹满, a stretch goal, …)."""
        return goals.goal_of(self.project, self.raised_fen)


def with_totals(*, session: Session, projects: Sequence[Project],
                totals: Mapping[int, gifts.ProjectTotals] | None = None) -> list[ProjectListing]:
    """Attach raised totals, person-times and cover pictures to projects, for lists: from the
    process's totals snapshot (``gifts.totals_snapshot``, ≤ 1 s behind a gift) unless the
    caller passes ``totals`` (a project's own page passes the exact ``gifts.project_totals``)."""
    if totals is None:
        snapshot = gifts.totals_snapshot(session=session)
        totals = {p.id: snapshot.of(p.id) for p in projects}
    covers = images.pictures(session=session,
                             attachment_ids=[p.cover_image_id for p in projects])
    return [
        ProjectListing(project=p, raised_fen=totals[p.id].raised_fen,
                       donations=totals[p.id].donations,
                       cover=covers.get(p.cover_image_id) if p.cover_image_id else None)
        for p in projects
    ]


def listing_of(*, session: Session, project: Project) -> ProjectListing:
    """A project's own listing with its exact totals (its page, its API resource)."""
    exact = gifts.project_totals(session=session, project_ids=[project.id])
    return with_totals(session=session, projects=[project], totals=exact)[0]


def featured_projects(*, session: Session, limit: int = 6) -> list[ProjectListing]:
    """List projects for the home page: featured fundraising ones first, then the newest."""
    rows = session.scalars(
        select(Project)
        .where(Project.status == S.FUNDRAISING)
        .order_by(Project.featured.desc(), Project.id.desc())
        .limit(limit)
    )
    return with_totals(session=session, projects=list(rows))


def list_org_projects(*, session: Session, organization_id: int) -> list[ProjectListing]:
    """List every project of an organization, newest first (for its console)."""
    rows = session.scalars(
        select(Project).where(Project.organization_id == organization_id)
        .order_by(Project.id.desc())
    )
    return with_totals(session=session, projects=list(rows))


def list_for_review(
    *, session: Session, status: ProjectStatus | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[ProjectListing], int]:
    """List projects for reviewers: submitted ones first (oldest first), then the rest."""
    conditions = [Project.status != S.DRAFT]
    if status is not None:
        conditions = [Project.status == status]
    total = session.scalar(select(func.count()).select_from(Project).where(*conditions)) or 0
    rows = session.scalars(
        select(Project)
        .where(*conditions)
        .order_by(
            case((Project.status == S.SUBMITTED, 0), else_=1),
            Project.submitted_at.asc(),
            Project.id.desc(),
        )
        .limit(limit)
        .offset(offset)
    )
    return with_totals(session=session, projects=list(rows)), int(total)


def list_organization_projects(*, session: Session, organization_id: int) -> list[Project]:
    """List an organization's listed projects, its own and those it receives funds for."""
    return list(session.scalars(
        select(Project)
        .where(
            or_(Project.organization_id == organization_id,
                Project.recipient_org_id == organization_id),
            Project.status.in_(LISTED_STATUSES),
        )
        .order_by(Project.id.desc())
    ))


def count_submitted(*, session: Session) -> int:
    """Count the projects waiting for review."""
    return session.scalar(
        select(func.count()).select_from(Project).where(Project.status == S.SUBMITTED)
    ) or 0


def partner_candidates(*, session: Session, exclude_id: int | None = None) -> list[Organization]:
    """List the organizations that may receive a project's funds today, by name."""
    partners = organizations.qualified_partners(session=session, on=today_cn())
    return sorted((o for o in partners if o.id != exclude_id), key=lambda o: o.name)


# --- creating and editing ------------------------------------------------------------------


@dataclass
class ProjectFields:
    """The editable fields of a project, already parsed (money in fen, dates as dates)."""

    title: str = ""
    summary: str = ""
    description: str = ""
    category: str = "other"
    province: str = ""
    goal_fen: int = 0
    story: str = ""
    fundraising_plan: str = ""
    filing_number: str | None = None
    filing_valid_from: dt.date | None = None
    filing_valid_until: dt.date | None = None
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    recipient_org_id: int | None = None


FORM_FIELDS = (
    "title", "summary", "description", "category", "province", "goal", "fundraising_plan",
    "filing_number", "filing_valid_from", "filing_valid_until", "starts_on", "ends_on",
    "recipient_org_id", "story",
)


def parse_date(text: str, *, field: str) -> dt.date | None:
    """Parse ``YYYY-MM-DD`` (empty → None) or raise InvalidInput ``invalid_date``."""
    text = text.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "Enter the date as YYYY-MM-DD.", code="invalid_date", field=field
        ) from None


def parse_form(form: dict[str, str]) -> ProjectFields:
    """Parse a project form's strings into fields (raise InvalidInput naming the field)."""
    goal_text = form.get("goal", "").strip()
    if not goal_text:
        raise InvalidInput("Enter the fundraising goal in yuan.", code="goal_required",
                           field="goal")
    recipient = form.get("recipient_org_id", "").strip()
    if recipient and parse_id(recipient) is None:
        raise InvalidInput("Choose a partner organization from the list.",
                           code="partner_required", field="recipient_org_id")
    return ProjectFields(
        title=form.get("title", ""),
        summary=form.get("summary", ""),
        description=form.get("description", ""),
        category=form.get("category", "other") or "other",
        province=form.get("province", ""),
        goal_fen=parse_yuan(goal_text, field="goal"),
        fundraising_plan=form.get("fundraising_plan", ""),
        filing_number=form.get("filing_number", "").strip() or None,
        filing_valid_from=parse_date(form.get("filing_valid_from", ""),
                                     field="filing_valid_from"),
        filing_valid_until=parse_date(form.get("filing_valid_until", ""),
                                      field="filing_valid_until"),
        starts_on=parse_date(form.get("starts_on", ""), field="starts_on"),
        ends_on=parse_date(form.get("ends_on", ""), field="ends_on"),
        recipient_org_id=parse_id(recipient) if recipient else None,
        story=form.get("story", ""),
    )


def fields_of(project: Project) -> ProjectFields:
    """Return the current fields of a project (to merge a partial update into)."""
    return ProjectFields(
        title=project.title, summary=project.summary, description=project.description,
        category=project.category, province=project.province, goal_fen=project.goal_fen,
        fundraising_plan=project.fundraising_plan, filing_number=project.filing_number,
        filing_valid_from=project.filing_valid_from,
        filing_valid_until=project.filing_valid_until, starts_on=project.starts_on,
        ends_on=project.ends_on,
        recipient_org_id=(project.recipient_org_id
                          if project.recipient_org_id != project.organization_id else None),
        story=project.story,
    )


def form_values(project: Project) -> dict[str, str]:
    """Return a project's fields as form strings (to fill the edit form)."""
    f = fields_of(project)
    return {
        "title": f.title, "summary": f.summary, "description": f.description,
        "category": f.category, "province": f.province, "goal": f"{f.goal_fen / 100:g}"
        if f.goal_fen % 100 == 0 else f"{f.goal_fen // 100}.{f.goal_fen % 100:02d}",
        "fundraising_plan": f.fundraising_plan, "filing_number": f.filing_number or "",
        "filing_valid_from": f.filing_valid_from.isoformat() if f.filing_valid_from else "",
        "filing_valid_until": f.filing_valid_until.isoformat() if f.filing_valid_until else "",
        "starts_on": f.starts_on.isoformat() if f.starts_on else "",
        "ends_on": f.ends_on.isoformat() if f.ends_on else "",
        "recipient_org_id": str(f.recipient_org_id or ""),
        "story": f.story,
    }


# Texts of several lines; titles, purposes and numbers are one line.
_MULTILINE_FIELDS = frozenset({"description", "fundraising_plan", "body", "reason", "story"})
STORY_MAX_LENGTH = 3_000


def _text(value: str, *, field: str, label: str, max_len: int, required: bool = True) -> str:
    cleaned = value.strip()
    check_characters(cleaned, field=field, multiline=field in _MULTILINE_FIELDS)
    if required and not cleaned:
        raise InvalidInput("Enter the %(label)s.", code=field + "_required", field=field,
                           params={"label": labels.field(label)})
    if len(cleaned) > max_len:
        raise InvalidInput(
            "The %(label)s can be at most %(max)s characters.", code=field + "_too_long",
            field=field, params={"label": labels.field(label), "max": max_len},
        )
    return cleaned


def check_fields(fields: ProjectFields) -> ProjectFields:
    """Validate and normalize a project's fields (no database look-ups)."""
    title = _text(fields.title, field="title", label="title", max_len=80)
    summary = _text(fields.summary, field="summary", label="summary", max_len=200)
    description = _text(fields.description, field="description", label="description",
                        max_len=20_000, required=False)
    plan = _text(fields.fundraising_plan, field="fundraising_plan", label="fundraising plan",
                 max_len=5_000)
    story = _text(fields.story, field="story", label="story", max_len=STORY_MAX_LENGTH,
                  required=False)
    if fields.category not in CATEGORIES:
        raise InvalidInput("Choose a category from the list.", code="invalid_category",
                           field="category")
    province = fields.province.strip()
    if province not in PROVINCES:
        raise InvalidInput("Choose a province from the list.", code="invalid_province",
                           field="province")
    if type(fields.goal_fen) is not int or fields.goal_fen <= 0:
        raise InvalidInput("The goal must be greater than zero.", code="goal_not_positive",
                           field="goal")
    check_amount_fen(fields.goal_fen, field="goal")
    filing_number = (fields.filing_number or "").strip() or None
    check_characters(filing_number or "", field="filing_number")
    if filing_number is not None and len(filing_number) > 60:
        raise InvalidInput("The filing number can be at most 60 characters.",
                           code="filing_number_too_long", field="filing_number")
    if (fields.filing_valid_from and fields.filing_valid_until
            and fields.filing_valid_from > fields.filing_valid_until):
        raise InvalidInput("The filing's validity must end after it starts.",
                           code="filing_dates_reversed", field="filing_valid_until")
    if fields.starts_on and fields.ends_on and fields.starts_on > fields.ends_on:
        raise InvalidInput("The project must end after it starts.", code="dates_reversed",
                           field="ends_on")
    return replace(fields, title=title, summary=summary, description=description,
                   fundraising_plan=plan, province=province, filing_number=filing_number,
                   story=story)


def check_recipient(
    *, session: Session, organization: Organization, recipient_org_id: int | None,
    on: dt.date,
) -> int:
    """Return who receives the funds: the organization itself if qualified, else its partner.

    An organization without a valid public-fundraising qualification must name a qualified,
    approved partner (Charity Law Art. 26).
    """
    if organization.is_qualified_on(on):
        return organization.id
    if recipient_org_id is None or recipient_org_id == organization.id:
        raise InvalidInput(
            "Your organization has no valid public-fundraising qualification: name a qualified "
            "partner organization to receive the funds.",
            code="partner_required", field="recipient_org_id",
        )
    partner = session.get(Organization, recipient_org_id)
    if partner is None or not organizations.can_raise_publicly(partner, on=on):
        raise InvalidInput(
            "The partner organization must be approved on the platform and hold a valid "
            "public-fundraising qualification.",
            code="partner_required", field="recipient_org_id",
        )
    return partner.id


def check_can_manage(*, actor: User, project: Project) -> None:
    """Raise unless ``actor`` is staff of the organization that publishes the project."""
    org_id = organizations.staff_org_id(actor=actor)
    if org_id != project.organization_id:
        raise PermissionDenied("This project belongs to another organization.",
                               code="not_your_project")


def do_create_project(*, session: Session, actor: User, fields: ProjectFields) -> Project:
    """Create a draft project for the actor's organization."""
    org = organizations.staff_organization(session=session, actor=actor)
    clean = check_fields(fields)
    recipient_id = check_recipient(session=session, organization=org,
                                   recipient_org_id=clean.recipient_org_id, on=today_cn())
    project = Project(
        organization_id=org.id, recipient_org_id=recipient_id, title=clean.title,
        summary=clean.summary, description=clean.description, category=clean.category,
        province=clean.province, goal_fen=clean.goal_fen,
        fundraising_plan=clean.fundraising_plan, filing_number=clean.filing_number,
        filing_valid_from=clean.filing_valid_from, filing_valid_until=clean.filing_valid_until,
        starts_on=clean.starts_on, ends_on=clean.ends_on, status=S.DRAFT,
        created_by_id=actor.id, story=clean.story,
    )
    session.add(project)
    session.flush()
    audit.record(
        session, actor_id=actor.id, action="projects.project.created", object_type="project",
        object_id=project.id,
        data={"new": {"title": project.title, "goal_fen": project.goal_fen,
                      "organization_id": org.id, "recipient_org_id": recipient_id}},
    )
    return project


def do_update_project(
    *, session: Session, actor: User, project: Project, fields: ProjectFields
) -> Project:
    """Change a draft or rejected project's fields."""
    check_can_manage(actor=actor, project=project)
    if project.status not in EDITABLE_STATUSES:
        raise Conflict(
            "A project can be edited only as a draft or after rejection; this one is "
            "%(status)s.",
            code="project_not_editable", params={"status": labels.status(project.status)},
        )
    org = organizations.get_organization(session=session, org_id=project.organization_id)
    clean = check_fields(fields)
    if project.stretch_goal_fen is not None and clean.goal_fen >= project.stretch_goal_fen:
        raise InvalidInput(
            "The goal must stay below the stretch goal (%(stretch)s); change the goal setting "
            "first.", code="goal_above_stretch_goal", field="goal",
            params={"stretch": format_fen(project.stretch_goal_fen, cents=False)})
    recipient_id = check_recipient(session=session, organization=org,
                                   recipient_org_id=clean.recipient_org_id, on=today_cn())
    data = audit.changes(
        project, title=clean.title, summary=clean.summary, description=clean.description,
        category=clean.category, province=clean.province, goal_fen=clean.goal_fen,
        fundraising_plan=clean.fundraising_plan, filing_number=clean.filing_number,
        filing_valid_from=clean.filing_valid_from, filing_valid_until=clean.filing_valid_until,
        starts_on=clean.starts_on, ends_on=clean.ends_on, recipient_org_id=recipient_id,
        story=clean.story,
    )
    if data["new"]:
        audit.record(session, actor_id=actor.id, action="projects.project.updated",
                     object_type="project", object_id=project.id, data=data)
    session.flush()
    return project


# --- pictures ----------------------------------------------------------------------------

# Pictures of a project: its cover, its gallery and its updates' photos (owner types).
PICTURE_OWNERS = ("project_cover", "project_gallery", "project_update")
MAX_GALLERY_PHOTOS = 24


def check_can_change_pictures(*, actor: User, project: Project) -> None:
    """Raise unless ``actor`` may change the project's pictures now (its staff, until the
    platform takes it down)."""
    check_can_manage(actor=actor, project=project)
    if project.status == S.TAKEN_DOWN:
        raise Conflict("The platform took this project down; its pictures cannot be changed.",
                       code="project_taken_down")


def check_images(photos: Sequence[files.Upload], *, field: str) -> list[images.PreparedImage]:
    """Check and prepare several pictures, all or nothing (nothing is written)."""
    if len(photos) > files.MAX_FILES_PER_POST:
        raise InvalidInput("Attach at most %(n)s files at a time.", code="too_many_files",
                           field=field, params={"n": files.MAX_FILES_PER_POST})
    return [images.check_image(photo, field=field) for photo in photos]


def do_set_cover(
    *, session: Session, actor: User, project: Project, upload: files.Upload, upload_dir: Path,
    alt_text: str = "",
) -> Attachment:
    """Store a new cover picture (resized, metadata stripped) for a project the actor
    manages; the previous cover is deleted."""
    check_can_change_pictures(actor=actor, project=project)
    alt = images.check_alt_text(alt_text, field="cover_alt")
    prepared = images.check_image(upload, field="cover")
    attachment = images.do_store_image(
        session=session, upload_dir=upload_dir, image=prepared, owner_type="project_cover",
        owner_id=project.id, actor_id=actor.id, alt_text=alt,
    )
    old = session.get(Attachment, project.cover_image_id) if project.cover_image_id else None
    data = audit.changes(project, cover_image_id=attachment.id)
    audit.record(session, actor_id=actor.id, action="projects.project.cover_changed",
                 object_type="project", object_id=project.id, data=data)
    session.flush()
    if old is not None:
        images.do_delete_image(session=session, attachment=old)
    return attachment


def list_gallery(*, session: Session, project_id: int) -> list[Attachment]:
    """Return a project's gallery pictures, oldest first."""
    return files.attachments_of(session=session, owner_type="project_gallery",
                                owner_ids=[project_id])[project_id]


def do_add_gallery_photos(
    *, session: Session, actor: User, project: Project, photos: Sequence[files.Upload],
    upload_dir: Path, alt_text: str = "",
) -> list[Attachment]:
    """Add pictures to the project's gallery (at most :data:`MAX_GALLERY_PHOTOS` in all)."""
    check_can_change_pictures(actor=actor, project=project)
    alt = images.check_alt_text(alt_text, field="alt")
    if not photos:
        raise InvalidInput("Choose at least one photo.", code="photos_required",
                           field="photos")
    have = len(list_gallery(session=session, project_id=project.id))
    if have + len(photos) > MAX_GALLERY_PHOTOS:
        raise InvalidInput(
            "A project's gallery holds at most %(n)s photos; it has %(have)s.",
            code="too_many_photos", field="photos",
            params={"n": MAX_GALLERY_PHOTOS, "have": have},
        )
    prepared = check_images(photos, field="photos")
    stored = [
        images.do_store_image(session=session, upload_dir=upload_dir, image=image,
                              owner_type="project_gallery", owner_id=project.id,
                              actor_id=actor.id, alt_text=alt)
        for image in prepared
    ]
    audit.record(session, actor_id=actor.id, action="projects.project.photos_added",
                 object_type="project", object_id=project.id,
                 data={"new": {"attachments": [a.id for a in stored]}})
    return stored


def get_project_picture(*, session: Session, project: Project,
                        attachment_id: int) -> Attachment:
    """Return a picture of the project (cover, gallery or an update's photo), or raise
    NotFound ``picture_not_found``."""
    attachment = session.get(Attachment, attachment_id)
    if (attachment is None or attachment.owner_type not in PICTURE_OWNERS
            or _project_id_of(session, attachment) != project.id):
        raise NotFound("This picture does not exist.", code="picture_not_found")
    return attachment


def do_describe_picture(*, session: Session, actor: User, project: Project,
                        attachment_id: int, alt_text: str) -> Attachment:
    """Change a picture's description (its alt text)."""
    check_can_change_pictures(actor=actor, project=project)
    attachment = get_project_picture(session=session, project=project,
                                     attachment_id=attachment_id)
    alt = images.check_alt_text(alt_text, field="alt")
    data = audit.changes(attachment, alt_text=alt)
    if data["new"]:
        audit.record(session, actor_id=actor.id, action="projects.picture.described",
                     object_type="attachment", object_id=attachment.id, data=data)
    session.flush()
    return attachment


def do_remove_picture(*, session: Session, actor: User, project: Project,
                      attachment_id: int) -> None:
    """Remove a picture (the cover, a gallery or an update's photo): no page or address
    shows it any more (e.g. when someone withdraws consent)."""
    check_can_change_pictures(actor=actor, project=project)
    attachment = get_project_picture(session=session, project=project,
                                     attachment_id=attachment_id)
    if project.cover_image_id == attachment.id:
        audit.changes(project, cover_image_id=None)
        session.flush()
    audit.record(session, actor_id=actor.id, action="projects.picture.removed",
                 object_type="attachment", object_id=attachment.id,
                 data={"old": {"owner_type": attachment.owner_type,
                               "owner_id": attachment.owner_id,
                               "sha256": attachment.sha256}})
    images.do_delete_image(session=session, attachment=attachment)


# --- the lifecycle -------------------------------------------------------------------------


def actor_kind(*, actor: User, project: Project) -> Actor:
    """Return whether ``actor`` acts for the publishing organization or the platform."""
    if actor.is_reviewer:
        return Actor.PLATFORM
    check_can_manage(actor=actor, project=project)
    return Actor.ORG


def paused_by_platform(project: Project) -> bool:
    """Tell whether the platform made the current pause (only the platform lifts it)."""
    from sqlalchemy.orm import object_session

    session = object_session(project)
    if session is None or project.status != S.PAUSED:
        return False
    entry = session.scalar(
        select(audit.AuditEntry)
        .where(audit.AuditEntry.object_type == "project",
               audit.AuditEntry.object_id == str(project.id),
               audit.AuditEntry.action == "projects.project.paused")
        .order_by(audit.AuditEntry.id.desc())
        .limit(1)
    )
    return bool(entry and entry.data.get("by") == Actor.PLATFORM.value)


def _illegal(project: Project, action: str) -> Conflict:
    target = ACTION_TARGET.get(action)
    return Conflict(
        "A project cannot go from %(from)s to %(to)s.",
        code="illegal_transition",
        params={"from": labels.status(project.status), "to": labels.status(target)},
        details={"from": project.status.value, "to": target.value if target else None,
                 "action": action},
    )


def check_transition(
    *, session: Session, project: Project, actor: User, action: str, reason: str = "",
    on: dt.date | None = None,
) -> tuple[Transition, Actor, str]:
    """Check that ``actor`` may make ``action`` on ``project`` now; return what applies."""
    if action not in ACTIONS:
        raise NotFound("No such project action.", code="unknown_action")
    kind = actor_kind(actor=actor, project=project)
    if kind not in ACTION_BY[action]:
        if kind is Actor.ORG:
            raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
        raise PermissionDenied("Only the organization's staff may do this.",
                               code="org_staff_only")
    transition = find_transition(action, project.status)
    if transition is None:
        raise _illegal(project, action)
    reason = reason.strip()
    check_characters(reason, field="reason", multiline=True)
    if transition.reason_required and not reason:
        raise InvalidInput("Give a reason.", code="reason_required", field="reason")
    if len(reason) > 1000:
        raise InvalidInput("The reason can be at most 1000 characters.", code="reason_too_long",
                           field="reason")
    day = on or today_cn()
    if action == "submit":
        _check_ready_to_submit(session=session, project=project, on=day)
    elif action == "start":
        _check_ready_to_start(session=session, project=project, on=day)
    elif action == "resume" and kind is Actor.ORG and paused_by_platform(project):
        raise PermissionDenied(
            "The platform paused this project; only the platform can resume it.",
            code="paused_by_platform",
        )
    elif action == "resume" and project.status_before_pause is None:
        raise _illegal(project, action)
    return transition, kind, reason


def _check_filing(project: Project, *, on: dt.date, starting: bool) -> None:
    if not (project.filing_number and project.filing_valid_from and project.filing_valid_until):
        raise InvalidInput(
            "Enter the fundraising filing number (备案号) and its validity period first.",
            code="filing_required", field="filing_number",
        )
    period = f"{project.filing_valid_from.isoformat()} – {project.filing_valid_until.isoformat()}"
    if on > project.filing_valid_until:
        raise InvalidInput(
            "The fundraising filing expired (valid %(period)s).", code="filing_not_valid",
            field="filing_valid_until", params={"period": period},
        )
    if starting and on < project.filing_valid_from:
        raise InvalidInput(
            "Fundraising can start only within the filing's validity (%(period)s).",
            code="filing_not_valid", field="filing_valid_from", params={"period": period},
        )


def _check_ready_to_submit(*, session: Session, project: Project, on: dt.date) -> None:
    org = organizations.get_organization(session=session, org_id=project.organization_id)
    if org.status != OrgStatus.APPROVED:
        raise Conflict(
            "Your organization must be approved by the platform before it submits projects.",
            code="organization_not_approved",
        )
    check_fields(fields_of(project))
    check_recipient(session=session, organization=org, recipient_org_id=(
        project.recipient_org_id if project.recipient_org_id != org.id else None), on=on)
    _check_filing(project, on=on, starting=False)


def _check_ready_to_start(*, session: Session, project: Project, on: dt.date) -> None:
    org = organizations.get_organization(session=session, org_id=project.organization_id)
    if org.status != OrgStatus.APPROVED:
        raise Conflict("Your organization is not approved by the platform now.",
                       code="organization_not_approved")
    recipient = organizations.get_organization(session=session, org_id=project.recipient_org_id)
    if not organizations.can_raise_publicly(recipient, on=on):
        raise InvalidInput(
            "The organization receiving the funds has no valid public-fundraising "
            "qualification today.",
            code="partner_required", field="recipient_org_id",
        )
    _check_filing(project, on=on, starting=True)


def do_transition(
    *, session: Session, project: Project, actor: User, action: str, reason: str = "",
    on: dt.date | None = None,
) -> Project:
    """Make one lifecycle move (see :data:`TRANSITIONS`), audited with its reason."""
    transition, kind, reason = check_transition(
        session=session, project=project, actor=actor, action=action, reason=reason, on=on)
    now = utcnow()
    new: dict[str, object] = {}
    if action == "resume":
        new["status"] = project.status_before_pause
        new["status_before_pause"] = None
    else:
        assert transition.target is not None  # noqa: S101 - only resume has no fixed target
        new["status"] = transition.target
    if action == "pause":
        new["status_before_pause"] = project.status
    if action == "submit":
        new["submitted_at"] = now
        new["review_note"] = None
    if action in ("approve", "reject"):
        new["reviewed_at"] = now
        new["review_note"] = reason or None
    if action == "take_down":
        new["review_note"] = reason
        new["featured"] = False
    data: dict[str, object] = dict(audit.changes(project, **new))
    data["by"] = kind.value
    if reason:
        data["reason"] = reason
    audit.record(session, actor_id=actor.id, action=f"projects.project.{transition.audit_verb}",
                 object_type="project", object_id=project.id, data=data)
    session.flush()
    if kind is Actor.PLATFORM and action in ("pause", "take_down"):
        _notify_of_platform_action(session=session, project=project, action=action,
                                   reason=reason)
    if action in ("approve", "reject"):
        _notify_staff_of_review(session=session, project=project, approved=action == "approve",
                                reason=reason)
    return project


# Notification texts: msgids filled in with the project's title (and the reason) when shown.
_REVIEW_NOTICES = {
    True: N_("Your project “%(project)s” was approved."),
    False: N_("Your project “%(project)s” was not approved."),
}
_DONOR_NOTICES = {
    "pause": N_("The platform paused the project “%(project)s” that you support."),
    "take_down": N_("The platform took down the project “%(project)s” that you support."),
}
_STAFF_NOTICES = {
    "pause": N_("The platform paused your project “%(project)s”."),
    "take_down": N_("The platform took down your project “%(project)s”."),
}
_REVIEW_NOTE = N_("Reviewer's note: %(reason)s")
_REASON = N_("Reason: %(reason)s")


def _notify_staff_of_review(
    *, session: Session, project: Project, approved: bool, reason: str
) -> int:
    # The console promises the organization it will hear of the decision on a submission.
    staff_ids = session.scalars(
        select(User.id).where(User.organization_id == project.organization_id,
                              User.role == Role.ORG_STAFF)
    ).all()
    return accounts.do_notify(
        session=session, user_ids=staff_ids,
        kind="projects.approve" if approved else "projects.reject",
        title=_REVIEW_NOTICES[approved], body=_REVIEW_NOTE if reason else "",
        params={"project": project.title, "reason": reason},
        link=f"/console/projects/{project.id}",
    )


def _notify_of_platform_action(
    *, session: Session, project: Project, action: str, reason: str
) -> int:
    params = {"project": project.title, "reason": reason}
    donor_ids = gifts.donor_ids_of_project(session=session, project_id=project.id)
    sent = accounts.do_notify(
        session=session, user_ids=donor_ids, kind=f"projects.{action}",
        title=_DONOR_NOTICES[action], body=_REASON, params=params,
        link=f"/projects/{project.id}",
    )
    staff_ids = session.scalars(
        select(User.id).where(User.organization_id == project.organization_id,
                              User.role == Role.ORG_STAFF)
    ).all()
    sent += accounts.do_notify(
        session=session, user_ids=[uid for uid in staff_ids if uid not in donor_ids],
        kind=f"projects.{action}", title=_STAFF_NOTICES[action], body=_REASON, params=params,
        link=f"/console/projects/{project.id}",
    )
    return sent


# --- the goal ---------------------------------------------------------------------------------


def do_set_goal_policy(*, session: Session, actor: User, project: Project, policy: str,
                       stretch_goal: str | int | None = None) -> Project:
    """Set what happens when the project's goal is reached (its organization's staff), audited.

    The original goal never changes (it is the one filed): a stretch goal is shown beside it.
    """
    check_can_manage(actor=actor, project=project)
    raised = goals.goal_for(session=session, project=project).raised_fen
    chosen, stretch_fen = goals.check_goal_policy(project=project, policy=policy,
                                                  stretch_goal=stretch_goal, raised_fen=raised)
    data = audit.changes(project, goal_policy=chosen, stretch_goal_fen=stretch_fen)
    if data["new"]:
        audit.record(session, actor_id=actor.id, action="projects.project.goal_policy_set",
                     object_type="project", object_id=project.id, data=data)
    session.flush()
    return project


# --- progress updates and fund usage -------------------------------------------------------


def _check_reportable(project: Project) -> None:
    if project.status not in REPORTABLE_STATUSES:
        raise Conflict(
            "Updates and disclosures can be posted once fundraising has started; this "
            "project is %(status)s.",
            code="project_not_reportable", params={"status": labels.status(project.status)},
        )


def do_post_update(
    *, session: Session, actor: User, project: Project, title: str, body: str,
    photos: Sequence[files.Upload] = (), upload_dir: Path, alt_text: str = "",
) -> ProjectUpdate:
    """Post a progress update with photos (JPEG/PNG/WebP; stored resized, metadata
    stripped, all described by ``alt_text``)."""
    check_can_manage(actor=actor, project=project)
    _check_reportable(project)
    clean_title = _text(title, field="title", label="title", max_len=120)
    clean_body = _text(body, field="body", label="text", max_len=10_000)
    alt = images.check_alt_text(alt_text, field="alt")
    prepared = check_images(photos, field="photos")
    update = ProjectUpdate(project_id=project.id, title=clean_title, body=clean_body,
                           author_id=actor.id)
    session.add(update)
    session.flush()
    for image in prepared:
        images.do_store_image(session=session, upload_dir=upload_dir, image=image,
                              owner_type="project_update", owner_id=update.id,
                              actor_id=actor.id, alt_text=alt)
    audit.record(session, actor_id=actor.id, action="projects.update.posted",
                 object_type="project_update", object_id=update.id,
                 data={"new": {"project_id": project.id, "title": clean_title,
                               "photos": len(photos)}})
    return update


def fund_balance(*, session: Session, project: Project) -> int:
    """Return what the project's fund holds (raised, less refunds and disclosed usage)."""
    return ledger.balance(session, ledger.project_fund(project.id))


def usage_log_detail(usage: FundUsage, *, organization_id: int,
                     attachments: Sequence[str]) -> ledger.LogDetail:
    """The log's view of a disbursement: purpose, date and the SHA-256 of each attachment
    (anyone holding a published invoice can check it is the one disclosed)."""
    return ledger.LogDetail(ref=f"usage:{usage.id}", public={
        "project": usage.project_id, "organization": organization_id,
        "purpose": usage.purpose, "spent_on": usage.spent_on.isoformat(),
        "attachments": sorted(attachments)})


def do_disclose_fund_usage(
    *, session: Session, actor: User, project: Project, amount: str | int, purpose: str,
    description: str = "", spent_on: str | dt.date | None, attachments:
    Sequence[files.Upload] = (), upload_dir: Path,
) -> FundUsage:
    """Disclose money used from the project's fund; moves it to the receiving organization.

    ``amount`` is yuan text from a form or integer fen from the API. Refused with
    InsufficientFunds ``insufficient_funds`` (nothing saved) when the fund holds less.
    """
    check_can_manage(actor=actor, project=project)
    _check_reportable(project)
    amount_fen = (parse_yuan(amount, field="amount") if isinstance(amount, str)
                  else check_amount_fen(amount, field="amount"))
    clean_purpose = _text(purpose, field="purpose", label="purpose", max_len=200)
    clean_description = _text(description, field="description", label="description",
                              max_len=5_000, required=False)
    day = spent_on if isinstance(spent_on, dt.date) else parse_date(spent_on or "",
                                                                     field="spent_on")
    if day is None:
        raise InvalidInput("Enter the date the money was spent.", code="spent_on_required",
                           field="spent_on")
    if day > today_cn():
        raise InvalidInput("The date cannot be in the future.", code="spent_on_in_future",
                           field="spent_on")
    files.check_uploads(list(attachments), field="attachments")
    available = fund_balance(session=session, project=project)
    if amount_fen > available:
        raise _insufficient(amount_fen, available)
    try:
        # A refused movement (a concurrent refund drained the fund) leaves nothing behind.
        with session.begin_nested():
            usage = FundUsage(project_id=project.id, amount_fen=amount_fen,
                              purpose=clean_purpose, description=clean_description,
                              spent_on=day, created_by_id=actor.id)
            session.add(usage)
            session.flush()
            entry = ledger.post(session, ledger.transfer(
                "project.funds_used", source=ledger.project_fund(project.id),
                destination=ledger.organization(project.recipient_org_id),
                amount_fen=amount_fen, memo=clean_purpose[:200],
                dedupe_key=f"fund_usage:{usage.id}", actor_id=actor.id,
                no_overdraft_source=True,
                detail=usage_log_detail(
                    usage, organization_id=project.recipient_org_id,
                    attachments=[hashlib.sha256(u.data).hexdigest() for u in attachments]),
            ))
            usage.journal_entry_id = entry.id
            for upload in attachments:
                files.do_store_upload(session=session, upload_dir=upload_dir, upload=upload,
                                      owner_type="fund_usage", owner_id=usage.id,
                                      actor_id=actor.id)
            audit.record(session, actor_id=actor.id, action="projects.fund_usage.disclosed",
                         object_type="fund_usage", object_id=usage.id,
                         data={"new": {"project_id": project.id, "amount_fen": amount_fen,
                                       "purpose": clean_purpose, "spent_on": day.isoformat(),
                                       "journal_entry_id": entry.id}})
            session.flush()
    except ledger.InsufficientFunds:
        raise _insufficient(amount_fen, fund_balance(session=session, project=project)) from None
    return usage


def _insufficient(amount_fen: int, available: int) -> ledger.InsufficientFunds:
    return ledger.InsufficientFunds(
        "The project's fund holds %(available)s; a disclosure of %(amount)s is more than "
        "that.",
        field="amount",
        params={"available": format_fen(available), "amount": format_fen(amount_fen)},
        details={"available_fen": available, "amount_fen": amount_fen},
    )


def list_updates(*, session: Session, project_id: int) -> list[ProjectUpdate]:
    """Return a project's progress updates, newest first."""
    return list(session.scalars(
        select(ProjectUpdate).where(ProjectUpdate.project_id == project_id)
        .order_by(ProjectUpdate.created_at.desc(), ProjectUpdate.id.desc())
    ))


def list_fund_usages(*, session: Session, project_id: int) -> list[FundUsage]:
    """Return a project's fund-usage disclosures, newest first."""
    return list(session.scalars(
        select(FundUsage).where(FundUsage.project_id == project_id)
        .order_by(FundUsage.spent_on.desc(), FundUsage.id.desc())
    ))


def disclosed_total(*, session: Session, project_id: int) -> int:
    """Total fen disclosed as used for a project."""
    value = session.scalar(
        select(func.coalesce(func.sum(FundUsage.amount_fen), 0))
        .where(FundUsage.project_id == project_id)
    )
    return int(value or 0)
