"""JSON API of summit registration, tickets, check-in and attendance (under /api/v1).

- ``POST /summits/{slug}/delegation`` — register my organization's delegation (staff);
- ``POST /summits/{slug}/registration`` — ``{"kind": "delegate"|"audience"}``: take a seat in
  my organization's delegation, or register as public audience;
- ``GET /summits/{slug}/registration`` — my registration, with the ticket token if approved;
- ``DELETE /summits/{slug}/registration`` — cancel it;
- organizers: ``GET /summits/{slug}/delegations``, ``POST .../delegations/{id}/decision``,
  ``POST /summits/{slug}/checkin``;
- ``GET /summits/{slug}/attendance`` and ``.../attendance/export?format=csv|xlsx`` —
  organizers (every organization) and an organization's staff (their own organization).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession
from shanju.core.errors import NotFound
from shanju.core.masking import mask_name
from shanju.summit import attendance, exports
from shanju.summit import registration as reg
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    Summit,
    SummitDelegation,
    SummitRegistration,
)

router = APIRouter(prefix="/summits", tags=["summit"])


class DelegationCreate(BaseModel):
    seats: int = Field(ge=1, le=1000)
    note: str = Field(default="", max_length=2000)


class RegistrationCreate(BaseModel):
    kind: Literal["delegate", "audience"]


class DecisionCreate(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=2000)


class CheckInCreate(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class DelegationRead(BaseModel):
    id: int
    organization_id: int
    organization_name: str
    status: RegistrationStatus
    seats: int
    seats_taken: int
    note: str
    decision_note: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime


class RegistrationRead(BaseModel):
    id: int
    summit_slug: str
    kind: RegistrationKind
    status: RegistrationStatus
    organization_id: int | None
    delegation_id: int | None
    name: str = Field(description="The holder's name, masked")
    ticket_token: str | None = Field(
        description="The e-ticket's token (only when approved; shown only to its holder)")
    checked_in_at: dt.datetime | None
    created_at: dt.datetime


class DelegationRegistered(BaseModel):
    delegation: DelegationRead
    registration: RegistrationRead | None


class CheckInRead(BaseModel):
    registration_id: int
    name: str = Field(description="The holder's full name (organizers only)")
    kind: RegistrationKind
    organization_name: str | None
    checked_in_at: dt.datetime
    already_checked_in: bool


class Counts(BaseModel):
    approved: int
    capacity: int | None
    delegates: int
    audience: int
    checked_in: int
    pending_delegations: int
    approved_delegations: int


class SessionAttendance(BaseModel):
    session_id: int
    title: str
    starts_at: dt.datetime
    people: int
    minutes: int


class OrganizationAttendance(BaseModel):
    organization_id: int | None = Field(description="None: the public audience")
    name: str
    uscc: str
    people: int
    minutes: int


class AttendanceRead(BaseModel):
    summit_slug: str
    organization_id: int | None = Field(description="Set when limited to one organization")
    sessions: list[SessionAttendance]
    organizations: list[OrganizationAttendance]
    exports: dict[str, str]


def delegation_read(session: Session, delegation: SummitDelegation) -> DelegationRead:
    from shanju.organizations.models import Organization

    org = session.get(Organization, delegation.organization_id)
    return DelegationRead(
        id=delegation.id, organization_id=delegation.organization_id,
        organization_name=org.name if org else "", status=delegation.status,
        seats=delegation.seats, seats_taken=reg.seats_taken(session, delegation.id),
        note=delegation.note, decision_note=delegation.decision_note,
        decided_at=delegation.decided_at, created_at=delegation.created_at,
    )


def registration_read(session: Session, summit: Summit, registration: SummitRegistration,
                      ) -> RegistrationRead:
    user = session.get(User, registration.user_id)
    approved = registration.status == RegistrationStatus.APPROVED
    return RegistrationRead(
        id=registration.id, summit_slug=summit.slug, kind=registration.kind,
        status=registration.status, organization_id=registration.organization_id,
        delegation_id=registration.delegation_id,
        name=mask_name(user.display_name if user else None),
        ticket_token=reg.ticket_token(registration) if approved else None,
        checked_in_at=registration.checked_in_at, created_at=registration.created_at,
    )


@router.post("/{slug}/delegation", response_model=DelegationRegistered, status_code=201,
             summary="Register my organization's delegation", dependencies=[CsrfChecked])
def register_delegation(slug: str, body: DelegationCreate, session: DbSession,
                        user: CurrentUser) -> DelegationRegistered:
    """A verified organization's delegation is approved at once and the registrant seated;
    others wait for the organizers. Registering again returns the existing delegation.
    Errors: ``not_org_staff``, ``registration_closed``, ``invalid_seats``."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    result = reg.do_register_delegation(session=session, summit=summit, actor=user,
                                        seats=body.seats, note=body.note)
    return DelegationRegistered(
        delegation=delegation_read(session, result.delegation),
        registration=(registration_read(session, summit, result.registration)
                      if result.registration else None),
    )


@router.post("/{slug}/registration", response_model=RegistrationRead, status_code=201,
             summary="Take a seat in my delegation, or register as public audience",
             dependencies=[CsrfChecked])
def register(slug: str, body: RegistrationCreate, session: DbSession,
             user: CurrentUser) -> RegistrationRead:
    """Approved at once while places last; registering again returns the registration.
    Errors: ``capacity_full``, ``delegation_full``, ``no_delegation``, ``delegation_pending``,
    ``registration_closed``, ``not_org_staff``."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    if body.kind == "delegate":
        registration = reg.do_take_seat(session=session, summit=summit, actor=user)
    else:
        registration = reg.do_register_audience(session=session, summit=summit, actor=user)
    return registration_read(session, summit, registration)


@router.get("/{slug}/registration", response_model=RegistrationRead,
            summary="My registration and e-ticket")
def my_registration(slug: str, session: DbSession, user: CurrentUser) -> RegistrationRead:
    """``not_registered`` (404) when I have none."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    registration = reg.registration_of(session=session, summit_id=summit.id, user_id=user.id)
    if registration is None:
        raise NotFound("You are not registered for this summit.", code="not_registered")
    return registration_read(session, summit, registration)


@router.delete("/{slug}/registration", response_model=RegistrationRead,
               summary="Cancel my registration", dependencies=[CsrfChecked])
def cancel(slug: str, session: DbSession, user: CurrentUser) -> RegistrationRead:
    """The ticket stops working and the place is freed."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    return registration_read(session, summit,
                             reg.do_cancel(session=session, summit=summit, actor=user))


@router.get("/{slug}/registrations/counts", response_model=Counts,
            summary="Registration numbers (organizers)")
def registration_counts(slug: str, session: DbSession, user: CurrentUser) -> Counts:
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    reg.require_organizer(user, summit)
    c = reg.counts(session=session, summit=summit)
    return Counts(**c.__dict__)


@router.get("/{slug}/delegations", response_model=list[DelegationRead],
            summary="Delegations and applications (organizers)")
def delegations(slug: str, session: DbSession, user: CurrentUser,
                status: RegistrationStatus | None = None) -> list[DelegationRead]:
    """Oldest first; ``?status=pending`` is the applications queue."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    reg.require_organizer(user, summit)
    return [delegation_read(session, a.delegation)
            for a in reg.applications(session=session, summit=summit, status=status)]


@router.post("/{slug}/delegations/{delegation_id}/decision", response_model=DelegationRead,
             summary="Approve or reject an application (organizers)",
             dependencies=[CsrfChecked])
def decide(slug: str, delegation_id: DbId, body: DecisionCreate, session: DbSession,
           user: CurrentUser) -> DelegationRead:
    """Rejecting needs a note (``note_required``); ``already_decided`` (409) otherwise."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    delegation = reg.get_delegation(session=session, summit=summit,
                                    delegation_id=delegation_id)
    reg.do_decide_delegation(session=session, summit=summit, delegation=delegation, actor=user,
                             approve=body.approve, note=body.note)
    return delegation_read(session, delegation)


@router.post("/{slug}/checkin", response_model=CheckInRead,
             summary="Check in a ticket (organizers)", dependencies=[CsrfChecked])
def check_in(slug: str, body: CheckInCreate, session: DbSession,
             user: CurrentUser) -> CheckInRead:
    """``ticket_not_found`` (404) for a token that is not an approved ticket of the summit."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    result = reg.do_check_in(session=session, summit=summit, actor=user, token=body.token)
    assert result.registration.checked_in_at is not None  # noqa: S101 - just set
    return CheckInRead(
        registration_id=result.registration.id, name=result.user.display_name,
        kind=result.registration.kind,
        organization_name=result.organization.name if result.organization else None,
        checked_in_at=result.registration.checked_in_at, already_checked_in=result.already,
    )


@router.get("/{slug}/attendance", response_model=AttendanceRead,
            summary="Attendance per session and per organization")
def attendance_json(slug: str, session: DbSession, user: CurrentUser,
                    organization_id: DbId | None = None) -> AttendanceRead:
    """Organizers see every organization (or one with ``?organization_id=``); an
    organization's staff see their own organization only."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    scope = exports.attendance_scope(user, summit, organization_id)
    return AttendanceRead(
        summit_slug=summit.slug, organization_id=scope,
        sessions=[SessionAttendance(session_id=s.session_id, title=s.title,
                                    starts_at=s.starts_at, people=s.people,
                                    minutes=attendance.minutes(s.seconds))
                  for s in attendance.session_totals(session, summit_id=summit.id,
                                                     organization_id=scope)],
        organizations=[OrganizationAttendance(organization_id=o.organization_id, name=o.name,
                                              uscc=o.uscc, people=o.people,
                                              minutes=attendance.minutes(o.seconds))
                       for o in attendance.organization_totals(session, summit_id=summit.id,
                                                               organization_id=scope)],
        exports=exports.links(summit.slug, scope),
    )


@router.get("/{slug}/attendance/export", summary="Attendance as CSV or Excel",
            response_class=Response,
            responses={200: {"content": {t: {} for t in exports.MEDIA_TYPES.values()}}})
def attendance_export(
    slug: str, request: Request, session: DbSession, user: CurrentUser,
    format: Annotated[str, Query()] = "csv",  # noqa: A002 - the query's name
    organization_id: DbId | None = None,
) -> Response:
    """Columns: organization, uscc, person, session, minutes, seconds, first_seen, last_seen
    (China time). Organizers get full names; an organization's staff, masked names."""
    summit = reg.get_summit(session=session, slug=slug, viewer=user)
    return exports.download(request, session, summit=summit, viewer=user, fmt=format,
                            organization_id=organization_id)
