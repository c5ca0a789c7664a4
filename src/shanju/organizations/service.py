"""Organizations: registration with USCC validation, staff edits, reviewer decisions, and the
public profile's queries.

Status moves: ``pending → approved | rejected``, ``approved → suspended → approved``; staff
editing a legal field (see :data:`LEGAL_FIELDS`) of an approved or rejected organization sends
it back to ``pending``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import audit, regions
from shanju.core.clock import utcnow
from shanju.core.db import flush_unless_duplicate, get_or_404
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.core.text import check_characters
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.organizations.schemas import OrganizationCreate, OrganizationUpdate

# Fields whose change needs a reviewer's look again: they are what the public relies on.
LEGAL_FIELDS = (
    "name",
    "uscc",
    "org_type",
    "registering_authority",
    "fundraising_cert_no",
    "fundraising_valid_from",
    "fundraising_valid_until",
)
ORG_TYPE_LABELS = {
    OrgType.FOUNDATION: N_("Foundation"),
    OrgType.SOCIAL_GROUP: N_("Social group"),
    OrgType.SOCIAL_SERVICE: N_("Social service organization"),
}
STATUS_LABELS = {
    OrgStatus.PENDING: N_("Pending review"),
    OrgStatus.APPROVED: N_("Approved"),
    OrgStatus.REJECTED: N_("Rejected"),
    OrgStatus.SUSPENDED: N_("Suspended"),
}
# (max length, required) of each free-text field; the lengths match the columns.
_TEXT_FIELDS: dict[str, tuple[int, bool]] = {
    "name": (120, True),
    "short_name": (40, False),
    "registering_authority": (120, True),
    "city": (40, False),
    "address": (200, False),
    "contact_name": (60, False),
    "contact_phone": (40, True),
    "contact_email": (254, False),
    "website": (200, False),
    "description": (5000, False),
    "fundraising_cert_no": (60, False),
}
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()\-]{4,38}$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
REVIEW_REASON_MAX = 2000
# Texts of several lines; every other text is one line.
MULTILINE_FIELDS = frozenset({"description"})


# --- validation -------------------------------------------------------------------------------


def _clean_text(value: str, *, field: str, max_len: int, required: bool) -> str | None:
    text = value.strip()
    check_characters(text, field=field, multiline=field in MULTILINE_FIELDS)
    if not text:
        if required:
            raise InvalidInput("This field is required.", code="required", field=field)
        return None
    if len(text) > max_len:
        raise InvalidInput(
            "This text is too long.", code="too_long", field=field,
            details={"max_length": max_len},
        )
    return text


def parse_org_type(value: str, *, field: str = "org_type") -> OrgType:
    """Return the organization type for a form or API value, or an InvalidInput."""
    try:
        return OrgType(value.strip())
    except ValueError:
        raise InvalidInput(
            "Choose the organization type: foundation, social group or social service "
            "organization.",
            code="invalid_org_type",
            field=field,
        ) from None


def check_details(
    *, session: Session, data: OrganizationCreate, exclude_org_id: int | None = None
) -> tuple[dict[str, Any], uscc.UsccResult]:
    """Validate an organization's details; return the column values and the USCC result."""
    # Checked in the form's order, so the first error shown is the first one on the page.
    values: dict[str, Any] = {}

    def text(*fields: str) -> None:
        for field in fields:
            max_len, required = _TEXT_FIELDS[field]
            values[field] = _clean_text(
                getattr(data, field), field=field, max_len=max_len, required=required
            )

    text("name", "short_name")
    result = uscc.validate(data.uscc)
    values["uscc"] = result.code
    taken = select(Organization.id).where(Organization.uscc == result.code)
    if exclude_org_id is not None:
        taken = taken.where(Organization.id != exclude_org_id)
    if session.scalar(taken) is not None:
        raise Conflict(
            "An organization with this Unified Social Credit Code is already registered.",
            code="uscc_taken",
            field="uscc",
        )
    values["org_type"] = parse_org_type(data.org_type)
    text("registering_authority", "fundraising_cert_no")
    _check_qualification(data, values)
    province = regions.normalize_province(data.province)
    if province is None:
        raise InvalidInput(
            "Choose a province from the list.", code="invalid_province", field="province"
        )
    values["province"] = province
    text("city", "address", "contact_name", "contact_phone", "contact_email", "website",
         "description")
    values["description"] = values["description"] or ""
    phone = values["contact_phone"]
    if not _PHONE_RE.match(phone) or sum(c.isdigit() for c in phone) < 5:
        raise InvalidInput(
            "Enter a phone number with digits only, e.g. 010-12345678.",
            code="invalid_phone",
            field="contact_phone",
        )
    email = values["contact_email"]
    if email is not None:
        email = email.lower()
        if not accounts.EMAIL_RE.match(email):
            raise InvalidInput(
                "Enter a valid email address.", code="invalid_email", field="contact_email"
            )
        values["contact_email"] = email
    website = values["website"]
    if website is not None:
        if "://" not in website:
            website = "https://" + website
        if not _URL_RE.match(website) or len(website) > 200:
            raise InvalidInput(
                "Enter the website as an address like https://www.example.org.",
                code="invalid_website",
                field="website",
            )
        values["website"] = website
    return values, result


def _check_qualification(data: OrganizationCreate, values: dict[str, Any]) -> None:
    cert = values["fundraising_cert_no"]
    valid_from, valid_until = data.fundraising_valid_from, data.fundraising_valid_until
    if cert is None:
        if valid_from is not None or valid_until is not None:
            raise InvalidInput(
                "Enter the certificate number of the public-fundraising qualification, or "
                "leave its dates empty.",
                code="qualification_incomplete",
                field="fundraising_cert_no",
            )
    elif valid_from is None:
        raise InvalidInput(
            "Enter the date from which the public-fundraising qualification is valid.",
            code="qualification_incomplete",
            field="fundraising_valid_from",
        )
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise InvalidInput(
            "The qualification cannot end before it begins.",
            code="qualification_dates_reversed",
            field="fundraising_valid_until",
        )
    values["fundraising_valid_from"] = valid_from
    values["fundraising_valid_until"] = valid_until


def review_warnings(org: Organization) -> list[str]:
    """Return what a reviewer should double-check about the organization's credit code."""
    warnings: list[str] = []
    if org.uscc_warning:
        warnings.append(org.uscc_warning)
    result = uscc.UsccResult(code=org.uscc)
    if not result.registered_with_civil_affairs:
        warnings.append(N_(
            "This credit code was not issued by civil affairs (its first character is not 5); "
            "charitable organizations register with civil affairs."
        ))
    elif result.org_type_hint is not None and result.org_type_hint != org.org_type.value:
        warnings.append(N_(
            "The organization type in the credit code (its second character) does not match "
            "the type chosen at registration."
        ))
    return warnings


# --- registration and staff edits -------------------------------------------------------------


def check_can_register(*, actor: User) -> None:
    """Refuse users who cannot register an organization (staff already, reviewers, ...)."""
    if actor.role == Role.ORG_STAFF and actor.organization_id is not None:
        raise Conflict(
            "You are already a staff member of an organization; one account can represent "
            "only one organization.",
            code="already_org_staff",
        )
    if actor.role not in (Role.DONOR, Role.ORG_STAFF):
        raise PermissionDenied(
            "Reviewer and enterprise accounts cannot register an organization; sign up with "
            "another account.",
            code="role_cannot_register",
        )


def _flush_unique(session: Session) -> None:
    if not flush_unless_duplicate(session):
        # Two registrations of one code raced past the check; the unique index decided.
        raise Conflict(
            "An organization with this Unified Social Credit Code is already registered.",
            code="uscc_taken",
            field="uscc",
        )


def do_register(*, session: Session, data: OrganizationCreate, actor: User) -> Organization:
    """Register an organization for review and make ``actor`` its staff member."""
    check_can_register(actor=actor)
    values, result = check_details(session=session, data=data)
    org = Organization(
        **values,
        uscc_warning=result.warning[:200] if result.warning else None,
        status=OrgStatus.PENDING,
        created_by_id=actor.id,
    )
    session.add(org)
    _flush_unique(session)
    audit.record(
        session,
        actor_id=actor.id,
        action="organizations.organization.registered",
        object_type="organization",
        object_id=org.id,
        data={"new": {"name": org.name, "uscc": org.uscc, "org_type": org.org_type.value,
                      "status": org.status.value, "uscc_warning": org.uscc_warning}},
    )
    audit.record(
        session,
        actor_id=actor.id,
        action="organizations.staff.added",
        object_type="user",
        object_id=actor.id,
        data=audit.changes(actor, role=Role.ORG_STAFF, organization_id=org.id),
    )
    session.flush()
    return org


def can_manage(org: Organization, user: User | None) -> bool:
    """Tell whether ``user`` is a staff member of ``org``."""
    return (
        user is not None and user.role == Role.ORG_STAFF and user.organization_id == org.id
    )


def can_see(org: Organization, user: User | None) -> bool:
    """Tell whether ``user`` may see ``org`` (approved: anyone; else staff and reviewers)."""
    if org.status == OrgStatus.APPROVED:
        return True
    return user is not None and (user.is_reviewer or can_manage(org, user))


def staff_org_id(*, actor: User) -> int:
    """Return the id of the organization ``actor`` works for; PermissionDenied if none."""
    if actor.role != Role.ORG_STAFF or actor.organization_id is None:
        raise PermissionDenied(
            "Only an organization's staff may do this.", code="org_staff_only"
        )
    return actor.organization_id


def staff_organization(*, session: Session, actor: User) -> Organization:
    """Return the organization ``actor`` works for; PermissionDenied if none."""
    return get_organization(session=session, org_id=staff_org_id(actor=actor))


def do_update(
    *, session: Session, org: Organization, data: OrganizationUpdate, actor: User
) -> bool:
    """Apply a staff member's edit; return whether it sent the organization back to review."""
    if not can_manage(org, actor):
        raise PermissionDenied(
            "Only this organization's staff may edit it.", code="not_your_organization"
        )
    values, result = check_details(session=session, data=data, exclude_org_id=org.id)
    legal_changed = any(values[f] != getattr(org, f) for f in LEGAL_FIELDS)
    if legal_changed and org.status == OrgStatus.SUSPENDED:
        raise Conflict(
            "A suspended organization cannot change its legal details; contact the platform.",
            code="organization_suspended",
        )
    new = dict(values)
    if values["uscc"] != org.uscc:
        new["uscc_warning"] = result.warning[:200] if result.warning else None
    back_to_review = legal_changed and org.status != OrgStatus.PENDING
    if back_to_review:
        new["status"] = OrgStatus.PENDING
    diff = audit.changes(org, **new)
    if not diff["new"]:
        return False
    _flush_unique(session)
    audit.record(
        session,
        actor_id=actor.id,
        action="organizations.organization.updated",
        object_type="organization",
        object_id=org.id,
        data=diff,
    )
    return back_to_review


# --- reviewer decisions -----------------------------------------------------------------------

_ALLOWED_FROM = {
    "approved": (OrgStatus.PENDING, OrgStatus.SUSPENDED),
    "rejected": (OrgStatus.PENDING,),
    "suspended": (OrgStatus.APPROVED,),
}
# Notifications are stored text shown as is (like the projects domain's), so they are written
# in Chinese, the platform's default language.
# Notification texts: msgids filled in with the organization's name when shown.
_NOTICE_TITLES = {
    "approved": N_("The platform approved your organization “%(name)s”."),
    "rejected": N_("The platform did not approve your organization “%(name)s”."),
    "suspended": N_("The platform suspended your organization “%(name)s”."),
}
_NOTICE_NOTE = N_("Reviewer's note: %(reason)s")


def _check_reviewer(actor: User) -> None:
    if not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")


def _decide(
    *, session: Session, org: Organization, actor: User, verb: str, reason: str
) -> Organization:
    _check_reviewer(actor)
    if org.status not in _ALLOWED_FROM[verb]:
        raise Conflict(
            "This decision is not possible in the organization's current status.",
            code="invalid_transition",
            details={"status": org.status.value},
        )
    note = reason.strip()
    check_characters(note, field="reason", multiline=True)
    if verb != "approved" and not note:
        raise InvalidInput("Give a reason for this decision.", code="reason_required",
                           field="reason")
    if len(note) > REVIEW_REASON_MAX:
        raise InvalidInput("This text is too long.", code="too_long", field="reason",
                           details={"max_length": REVIEW_REASON_MAX})
    diff = audit.changes(
        org, status=OrgStatus(verb), review_note=note or None, reviewed_at=utcnow()
    )
    audit.record(
        session,
        actor_id=actor.id,
        action=f"organizations.organization.{verb}",
        object_type="organization",
        object_id=org.id,
        data=diff,
    )
    staff_ids = session.scalars(
        select(User.id).where(User.organization_id == org.id, User.role == Role.ORG_STAFF)
    ).all()
    accounts.do_notify(
        session=session,
        user_ids=staff_ids,
        kind=f"organization.{verb}",
        title=_NOTICE_TITLES[verb],
        body=_NOTICE_NOTE if note else "",
        params={"name": org.name, "reason": note},
        link="/console/organization",
    )
    session.flush()
    return org


def do_approve(
    *, session: Session, org: Organization, actor: User, reason: str = ""
) -> Organization:
    """Approve a pending (or reinstate a suspended) organization."""
    return _decide(session=session, org=org, actor=actor, verb="approved", reason=reason)


def do_reject(*, session: Session, org: Organization, actor: User, reason: str) -> Organization:
    """Reject a pending organization's registration, with a reason for its staff."""
    return _decide(session=session, org=org, actor=actor, verb="rejected", reason=reason)


def do_suspend(*, session: Session, org: Organization, actor: User, reason: str) -> Organization:
    """Suspend an approved organization, with a reason for its staff."""
    return _decide(session=session, org=org, actor=actor, verb="suspended", reason=reason)


# --- queries ----------------------------------------------------------------------------------


def get_organization(*, session: Session, org_id: int) -> Organization:
    """Return the organization with ``org_id`` whatever its status (NotFound if none)."""
    return get_or_404(session, Organization, org_id,
                      message=N_("This organization does not exist."),
                      code="organization_not_found")


def get_visible_organization(
    *, session: Session, org_id: int, viewer: User | None
) -> Organization:
    """Return the organization if ``viewer`` may see it; NotFound otherwise (do not reveal it)."""
    org = session.get(Organization, org_id)
    if org is None or not can_see(org, viewer):
        raise NotFound("This organization does not exist.", code="organization_not_found")
    return org


def can_raise_publicly(org: Organization, *, on: dt.date) -> bool:
    """Tell whether ``org`` may raise public funds on ``on`` (approved and qualified)."""
    return org.status == OrgStatus.APPROVED and org.is_qualified_on(on)


def check_can_raise_publicly(*, org: Organization, on: dt.date, field: str | None = None) -> None:
    """Refuse an organization that may not raise public funds on ``on`` (Charity Law Art. 22)."""
    if org.status != OrgStatus.APPROVED:
        raise InvalidInput(
            "This organization has not been approved by the platform.",
            code="organization_not_approved",
            field=field,
        )
    if not org.is_qualified_on(on):
        raise InvalidInput(
            "This organization holds no valid public-fundraising qualification on that date.",
            code="organization_not_qualified",
            field=field,
        )


def qualified_on(on: dt.date) -> Any:
    """The condition "holds a valid public-fundraising qualification on ``on``" (SQL)."""
    return (
        Organization.fundraising_cert_no.is_not(None)
        & Organization.fundraising_valid_from.is_not(None)
        & (Organization.fundraising_valid_from <= on)
        & or_(
            Organization.fundraising_valid_until.is_(None),
            Organization.fundraising_valid_until >= on,
        )
    )


def qualified_partners(*, session: Session, on: dt.date) -> list[Organization]:
    """List approved organizations qualified to raise public funds on ``on``, by id."""
    return list(
        session.scalars(
            select(Organization)
            .where(Organization.status == OrgStatus.APPROVED, qualified_on(on))
            .order_by(Organization.id)
        )
    )


def count_approved(*, session: Session) -> int:
    """How many organizations are approved (those the public may see and give through)."""
    return session.scalar(
        select(func.count()).select_from(Organization).where(
            Organization.status == OrgStatus.APPROVED)
    ) or 0


def organizations_by_id(*, session: Session, ids: Iterable[int]) -> dict[int, Organization]:
    """Load organizations by id."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {o.id: o for o in session.scalars(
        select(Organization).where(Organization.id.in_(wanted)))}


def list_for_review(
    *, session: Session, status: OrgStatus | None = None, page: int = 1, per_page: int = 50
) -> tuple[list[Organization], int]:
    """List organizations for reviewers: pending ones first, oldest first within a status."""
    query = select(Organization)
    if status is not None:
        query = query.where(Organization.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pending_first = case((Organization.status == OrgStatus.PENDING, 0), else_=1)
    page = max(page, 1)
    items = session.scalars(
        query.order_by(pending_first, Organization.created_at, Organization.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(items), total


def count_pending(*, session: Session) -> int:
    """Count how many organizations wait for review."""
    return session.scalar(
        select(func.count()).where(Organization.status == OrgStatus.PENDING)
    ) or 0

