"""Complaints (举报): filing by anyone, the 5-working-day answer deadline, reviewer answers.

MZ/T 088-2017 requires a report channel on fundraising pages and an answer within 5 working
days; ``due_on`` is the 5th working day (see :mod:`workdays`) after the filing date in China.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

import structlog
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.complaints.schemas import ComplaintCreate
from shanju.complaints.workdays import (
    HolidaysUnknown,
    add_weekdays,
    add_working_days,
    known_years,
)
from shanju.core import audit
from shanju.core.clock import CHINA_TZ, today_cn, utcnow
from shanju.core.db import get_or_404
from shanju.core.errors import InvalidInput, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.core.text import check_characters
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects import service as projects
from shanju.projects.models import Project

ANSWER_WORKING_DAYS = 5
CONTENT_MIN, CONTENT_MAX = 10, 2000
CONTACT_MAX = 120
ANSWER_MAX = 5000
CATEGORIES: dict[str, str] = {
    "fraud": N_("Fraud"),
    "false_information": N_("False information"),
    "misuse_of_funds": N_("Misuse of funds"),
    "commercial_ads": N_("Commercial advertising"),
    "other": N_("Other"),
}


@dataclass(frozen=True)
class Target:
    """What a complaint is about."""

    org: Organization
    project: Project | None


def complaint_number(complaint: Complaint) -> str:
    """Return the number a reporter quotes, e.g. ``JB20261130-00042``."""
    day = complaint.created_at.astimezone(CHINA_TZ)
    return f"JB{day:%Y%m%d}-{complaint.id:05d}"


def receipt_key(*, complaint_id: int, secret: str) -> str:
    """Return the unguessable key of a complaint's receipt page (an HMAC of its id).

    The receipt shows the complaint's number and what was reported; its address carries this
    key so that nobody can read another reporter's receipt by counting ids (reporters may be
    anonymous, so "only the reporter" cannot be decided by the account alone).
    """
    message = f"shanju.complaints.receipt:{complaint_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def receipt_path(*, complaint_id: int, secret: str) -> str:
    """Return the address of a complaint's receipt page."""
    key = receipt_key(complaint_id=complaint_id, secret=secret)
    return f"/complaints/{complaint_id}/thanks?key={key}"


def get_receipt(*, session: Session, complaint_id: int, key: str, secret: str,
                viewer: User | None) -> Complaint:
    """Return the complaint whose receipt ``key`` opens (or whose reporter is the viewer);
    NotFound ``complaint_not_found`` otherwise, as for a complaint that does not exist."""
    complaint = session.get(Complaint, complaint_id)
    expected = receipt_key(complaint_id=complaint_id, secret=secret)
    if complaint is not None and (
        hmac.compare_digest(key.encode(), expected.encode())
        or (viewer is not None and complaint.reporter_id == viewer.id)
    ):
        return complaint
    raise NotFound("This complaint does not exist.", code="complaint_not_found")


def due_date(filed_on: dt.date) -> dt.date:
    """Return the answer deadline of a complaint filed on ``filed_on`` (a China date).

    Raises :class:`~shanju.complaints.workdays.HolidaysUnknown` when the deadline reaches a
    year the installed holiday calendar does not know; :func:`deadline_for` decides then.
    """
    return add_working_days(filed_on, ANSWER_WORKING_DAYS)


def deadline_for(filed_on: dt.date) -> dt.date:
    """Return the deadline to store for a complaint filed on ``filed_on``; never refuse one.

    A report must never be lost because the platform's holiday calendar is out of date. For a
    year the calendar does not know, the deadline counts Monday–Friday only — never later than
    the legal one, since holidays only push it back — and an error is logged on every such
    filing, so that operators upgrade ``chinesecalendar`` (``shanju serve`` warns at start-up too).
    """
    try:
        return due_date(filed_on)
    except HolidaysUnknown as exc:
        fallback = add_weekdays(filed_on, ANSWER_WORKING_DAYS)
        # A fresh logger (not a cached module-level one): rare, and visible to capture_logs.
        structlog.get_logger(__name__).error(
            "complaints.holiday_calendar_unknown", year=exc.year, error=str(exc),
            filed_on=filed_on.isoformat(), due_on=fallback.isoformat())
        return fallback


def warn_if_calendar_runs_out(today: dt.date) -> int | None:
    """Log a warning when complaints filed in the next 30 days would need an unknown year.

    Returns that year (or None). Called at start-up, so an operator hears of it before the
    first complaint of the new year is filed (the arrangement is published each November).
    """
    _first, last = known_years()
    horizon = today + dt.timedelta(days=30 + 14)  # the last filing day and its 5 working days
    if horizon.year <= last:
        return None
    structlog.get_logger(__name__).warning(
        "complaints.holiday_calendar_runs_out", known_until=last, needed=horizon.year,
        advice="upgrade the chinesecalendar package when the State Council publishes the "
               "arrangement; meanwhile deadlines count Monday–Friday only")
    return horizon.year


def is_overdue(complaint: Complaint, today: dt.date) -> bool:
    """Tell whether an open complaint is past its due date."""
    return complaint.status == ComplaintStatus.OPEN and today > complaint.due_on


def days_remaining(complaint: Complaint, today: dt.date) -> int:
    """Count calendar days until the due date (0 on the day, negative once late)."""
    return (complaint.due_on - today).days


def report_target(
    *,
    session: Session,
    organization_id: int | None,
    project_id: int | None,
    viewer: User | None,
) -> Target:
    """Find what is being reported; NotFound for anything the viewer could not have seen."""
    project: Project | None = None
    if project_id is not None:
        project = session.get(Project, project_id)
        # Only a project whose page the public can see makes sense to report.
        if project is None or project.status not in projects.PUBLIC_STATUSES:
            raise NotFound("This project does not exist.", code="project_not_found",
                           field="project_id")
        if organization_id is None:
            organization_id = project.organization_id
        elif organization_id not in (project.organization_id, project.recipient_org_id):
            raise InvalidInput(
                "This project does not belong to that organization.",
                code="project_not_of_organization",
                field="project_id",
            )
    if organization_id is None:
        raise InvalidInput(
            "Say which organization or project you are reporting.",
            code="target_required",
            field="organization_id",
        )
    org = session.get(Organization, organization_id)
    if org is None or not (
        org.status == OrgStatus.SUSPENDED or organizations.can_see(org, viewer)
    ):
        raise NotFound("This organization does not exist.", code="organization_not_found",
                       field="organization_id")
    return Target(org=org, project=project)


def do_file(
    *,
    session: Session,
    data: ComplaintCreate,
    actor: User | None,
    today: dt.date | None = None,
) -> Complaint:
    """File a complaint (``actor`` is None for anonymous visitors); it is due in 5 working days."""
    target = report_target(
        session=session,
        organization_id=data.organization_id,
        project_id=data.project_id,
        viewer=actor,
    )
    category = data.category.strip()
    if category not in CATEGORIES:
        raise InvalidInput("Choose what kind of problem you are reporting.",
                           code="invalid_category", field="category")
    content = data.content.strip()
    check_characters(content, field="content", multiline=True)
    if len(content) < CONTENT_MIN:
        raise InvalidInput(
            "Describe the problem in at least 10 characters.", code="content_too_short",
            field="content",
        )
    if len(content) > CONTENT_MAX:
        raise InvalidInput(
            "Keep the description to at most 2000 characters.", code="content_too_long",
            field="content",
        )
    contact = data.contact.strip()
    check_characters(contact, field="contact")
    if len(contact) > CONTACT_MAX:
        raise InvalidInput("The contact can have at most 120 characters.",
                           code="contact_too_long", field="contact")
    filed_on = today or today_cn()
    complaint = Complaint(
        organization_id=target.org.id,
        project_id=target.project.id if target.project else None,
        reporter_id=actor.id if actor else None,
        reporter_contact=contact or None,
        category=category,
        content=content,
        status=ComplaintStatus.OPEN,
        due_on=deadline_for(filed_on),
        created_at=utcnow(),
    )
    session.add(complaint)
    session.flush()
    audit.record(
        session,
        actor_id=actor.id if actor else None,
        action="complaints.complaint.filed",
        object_type="complaint",
        object_id=complaint.id,
        data={"new": {"organization_id": complaint.organization_id,
                      "project_id": complaint.project_id, "category": category,
                      "due_on": complaint.due_on.isoformat()}},
    )
    return complaint


def get_complaint(*, session: Session, complaint_id: int) -> Complaint:
    """Return the complaint with ``complaint_id`` (NotFound if none)."""
    return get_or_404(session, Complaint, complaint_id,
                      message=N_("This complaint does not exist."), code="complaint_not_found")


def do_answer(
    *, session: Session, complaint: Complaint, actor: User, answer: str
) -> Complaint:
    """Record a reviewer's answer; the complaint is then answered (and the reporter told)."""
    if not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
    text = answer.strip()
    check_characters(text, field="answer", multiline=True)
    if not text:
        raise InvalidInput("Write the answer.", code="answer_required", field="answer")
    if len(text) > ANSWER_MAX:
        raise InvalidInput("The answer can have at most 5000 characters.",
                           code="answer_too_long", field="answer")
    diff = audit.changes(
        complaint,
        status=ComplaintStatus.ANSWERED,
        answer=text,
        answered_by_id=actor.id,
        answered_at=utcnow(),
    )
    session.flush()
    audit.record(
        session,
        actor_id=actor.id,
        action="complaints.complaint.answered",
        object_type="complaint",
        object_id=complaint.id,
        data=diff,
    )
    if complaint.reporter_id is not None:
        accounts.do_notify(
            session=session,
            user_ids=[complaint.reporter_id],
            kind="complaint.answered",
            title=N_("The platform answered your report %(number)s."),
            body=N_("The platform's answer: %(answer)s"),
            params={"number": complaint_number(complaint), "answer": text},
        )
    return complaint


def list_for_review(
    *,
    session: Session,
    status: ComplaintStatus | None = None,
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[tuple[Complaint, str]], int]:
    """List complaints with their organization's name: open first, soonest due first."""
    query = select(Complaint, Organization.name).join(
        Organization, Organization.id == Complaint.organization_id
    )
    if status is not None:
        query = query.where(Complaint.status == status)
    total = session.scalar(
        select(func.count()).select_from(query.with_only_columns(Complaint.id).subquery())
    ) or 0
    open_first = case((Complaint.status == ComplaintStatus.OPEN, 0), else_=1)
    page = max(page, 1)
    rows = session.execute(
        query.order_by(open_first, Complaint.due_on, Complaint.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return [(c, name) for c, name in rows], total


def organization_name(*, session: Session, complaint: Complaint) -> str:
    """Return the name of the organization a complaint is about."""
    return organizations.get_organization(session=session, org_id=complaint.organization_id).name


@dataclass(frozen=True)
class Counts:
    """Open and overdue complaints, for the reviewer console."""

    open: int
    overdue: int


def counts(*, session: Session, today: dt.date) -> Counts:
    """Count how many complaints are open and how many of those are overdue."""
    is_open = Complaint.status == ComplaintStatus.OPEN
    open_count = session.scalar(select(func.count()).where(is_open)) or 0
    overdue = session.scalar(
        select(func.count()).where(is_open, Complaint.due_on < today)
    ) or 0
    return Counts(open=open_count, overdue=overdue)
