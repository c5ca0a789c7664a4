"""Summit registration: delegations, delegates' seats, public audience, e-tickets, check-in.

- An organization's staff member registers the organization's **delegation** with N seats
  (at most ``summit.delegation_size``). A verified organization (``OrgStatus.APPROVED``) is
  approved at once; any other organization's delegation is an application that the summit's
  organizers approve or reject with a note. The person who registers it is seated in it
  (their delegate registration waits with the application and is approved with it).
- Staff of an organization with an approved delegation **take a seat** (a delegate
  registration, approved at once) while the delegation has seats left.
- Anyone signed in registers as **public audience** (approved at once).
- ``summit.capacity`` caps the approved registrations (people). Every path that approves one
  first locks the summit row (:func:`lock_summit`: ``SELECT … FOR UPDATE`` on PostgreSQL; on
  SQLite write transactions are serialized already), then counts: two people racing for the
  last place cannot both get it (docs/locking.md, "Summit capacity").
- Registering twice returns the existing registration (idempotent); a cancelled or rejected
  registration is reused (one row per summit and person).

**E-tickets.** The QR code carries only an opaque token; the database keeps its SHA-256
(``ticket_hash``). So that the ticket page can show the token again later, it is derived, not
drawn at random: ``base64url(HMAC-SHA256(secret_key, "summit-ticket:<id>:<created_at>"))`` —
unguessable without the platform's secret, stable for the registration, never stored.
Rotating ``secret_key`` invalidates issued tickets (:func:`do_reissue_tickets` re-derives them).

Services never commit; the request's transaction does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.config import get_settings
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.core.security import token_hash
from shanju.organizations.models import Organization, OrgStatus
from shanju.summit.access import is_organizer
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    Summit,
    SummitDelegation,
    SummitRegistration,
    SummitStatus,
)

NOTE_MAX = 1000
TICKET_PURPOSE = "summit-ticket"
ACTIVE = (RegistrationStatus.PENDING, RegistrationStatus.APPROVED)


# --- finding things --------------------------------------------------------------------------


def get_summit(*, session: Session, slug: str, viewer: User | None) -> Summit:
    """The summit with ``slug``; a draft exists only for its organizers."""
    summit = session.scalars(select(Summit).where(Summit.slug == slug)).first()
    if summit is None or (summit.status == SummitStatus.DRAFT
                          and not is_organizer(viewer, summit)):
        raise NotFound("This summit does not exist.", code="summit_not_found")
    return summit


def lock_summit(session: Session, summit_id: int) -> Summit:
    """Lock the summit row for the rest of the transaction (PostgreSQL ``FOR UPDATE``; a
    no-op on SQLite, whose write transactions hold the database) and re-read it."""
    summit = session.scalars(
        select(Summit).where(Summit.id == summit_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return summit


def registration_of(*, session: Session, summit_id: int, user_id: int
                    ) -> SummitRegistration | None:
    """The person's registration at the summit in any state (one row per summit and person)."""
    return session.scalars(select(SummitRegistration).where(
        SummitRegistration.summit_id == summit_id, SummitRegistration.user_id == user_id,
    )).first()


def delegation_of(*, session: Session, summit_id: int, organization_id: int
                  ) -> SummitDelegation | None:
    """The organization's delegation at the summit, in any state."""
    return session.scalars(select(SummitDelegation).where(
        SummitDelegation.summit_id == summit_id,
        SummitDelegation.organization_id == organization_id,
    )).first()


def get_delegation(*, session: Session, summit: Summit, delegation_id: int) -> SummitDelegation:
    """The delegation ``delegation_id`` of ``summit`` (NotFound otherwise)."""
    delegation = session.get(SummitDelegation, delegation_id)
    if delegation is None or delegation.summit_id != summit.id:
        raise NotFound("This delegation does not exist.", code="delegation_not_found")
    return delegation


def approved_count(session: Session, summit_id: int) -> int:
    """Approved registrations (people) of the summit: what ``capacity`` limits."""
    return int(session.scalar(select(func.count()).select_from(SummitRegistration).where(
        SummitRegistration.summit_id == summit_id,
        SummitRegistration.status == RegistrationStatus.APPROVED,
    )) or 0)


def seats_taken(session: Session, delegation_id: int) -> int:
    """Approved delegate registrations of a delegation."""
    return int(session.scalar(select(func.count()).select_from(SummitRegistration).where(
        SummitRegistration.delegation_id == delegation_id,
        SummitRegistration.status == RegistrationStatus.APPROVED,
    )) or 0)


def places_left(session: Session, summit: Summit) -> int | None:
    """How many more people can be approved (None: no limit)."""
    if summit.capacity is None:
        return None
    return max(0, summit.capacity - approved_count(session, summit.id))


def is_open(summit: Summit, now: dt.datetime | None = None) -> bool:
    """Registration is open on a published summit until ``registration_closes_at``."""
    if summit.status != SummitStatus.PUBLISHED:
        return False
    closes = summit.registration_closes_at
    return closes is None or (now or utcnow()) < closes


def _check_open(summit: Summit, now: dt.datetime | None) -> None:
    if not is_open(summit, now):
        raise Conflict("Registration for this summit is closed.", code="registration_closed")


def _staff_org(session: Session, actor: User) -> Organization:
    if actor.role != Role.ORG_STAFF or actor.organization_id is None:
        raise PermissionDenied("Only an organization's staff can register its delegation.",
                               code="not_org_staff")
    org = session.get(Organization, actor.organization_id)
    if org is None or org.status in (OrgStatus.SUSPENDED, OrgStatus.REJECTED):
        raise PermissionDenied("Your organization cannot register for summits.",
                               code="organization_not_eligible")
    return org


# --- tickets ---------------------------------------------------------------------------------


def ticket_token(registration: SummitRegistration, *, secret: str | None = None) -> str:
    """The registration's e-ticket token (derived; see the module's docstring)."""
    key = (secret or get_settings().secret_key).encode()
    created = registration.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    message = f"{TICKET_PURPOSE}:{registration.id}:{created}".encode()
    digest = hmac.digest(key, message, "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _issue_ticket(registration: SummitRegistration) -> None:
    registration.ticket_hash = token_hash(ticket_token(registration))


def do_reissue_tickets(*, session: Session, summit_id: int) -> int:
    """Re-derive the ticket hashes of the approved registrations (after a key rotation)."""
    rows = session.scalars(select(SummitRegistration).where(
        SummitRegistration.summit_id == summit_id,
        SummitRegistration.status == RegistrationStatus.APPROVED,
    )).all()
    for row in rows:
        _issue_ticket(row)
    session.flush()
    return len(rows)


def _approve(session: Session, registration: SummitRegistration, *,
             decided_by: User | None, now: dt.datetime) -> None:
    registration.status = RegistrationStatus.APPROVED
    registration.decided_by_id = decided_by.id if decided_by else None
    registration.decided_at = now
    session.flush()  # the id the ticket is derived from
    _issue_ticket(registration)
    session.flush()


def _check_capacity(session: Session, summit: Summit) -> None:
    """Raise ``capacity_full`` unless one more person fits (call with the summit locked)."""
    if summit.capacity is not None and approved_count(session, summit.id) >= summit.capacity:
        raise Conflict("The summit is full: all places have been taken.", code="capacity_full")


def _place(session: Session, *, summit: Summit, user: User, kind: RegistrationKind,
           delegation: SummitDelegation | None, status: RegistrationStatus,
           existing: SummitRegistration | None, now: dt.datetime) -> SummitRegistration:
    """Create the person's registration, or reuse their cancelled/rejected row."""
    registration = existing
    if registration is None:
        registration = SummitRegistration(summit_id=summit.id, user_id=user.id, created_at=now)
        session.add(registration)
    registration.kind = kind
    registration.delegation_id = delegation.id if delegation else None
    registration.organization_id = delegation.organization_id if delegation else None
    registration.status = status
    registration.ticket_hash = None
    registration.checked_in_at = None
    registration.decided_by_id = None
    registration.decided_at = None
    session.flush()
    return registration


def _join_delegation(session: Session, registration: SummitRegistration,
                     delegation: SummitDelegation) -> None:
    """Make an approved audience registration a seat of ``delegation`` (if one is free); it
    keeps its place in the summit's capacity and its ticket."""
    if seats_taken(session, delegation.id) >= delegation.seats:
        return
    registration.kind = RegistrationKind.DELEGATE
    registration.delegation_id = delegation.id
    registration.organization_id = delegation.organization_id
    session.flush()


# --- registering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DelegationResult:
    delegation: SummitDelegation
    registration: SummitRegistration | None  # the registrant's seat (None if not seated)


def do_register_delegation(
    *, session: Session, summit: Summit, actor: User, seats: int, note: str = "",
    now: dt.datetime | None = None,
) -> DelegationResult:
    """Register the actor's organization's delegation with ``seats`` seats.

    Verified organizations are approved at once and the registrant is seated (while the
    summit has places); others wait for the organizers, the registrant's seat with them.
    Registering again while pending or approved returns the existing delegation.
    """
    now = now or utcnow()
    org = _staff_org(session, actor)
    _check_open(summit, now)
    summit = lock_summit(session, summit.id)  # first: concurrent registrations queue here
    existing = delegation_of(session=session, summit_id=summit.id, organization_id=org.id)
    if existing is not None and existing.status in ACTIVE:
        mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
        return DelegationResult(existing, mine)
    if not 1 <= seats <= summit.delegation_size:
        raise InvalidInput("A delegation has from 1 to %(n)s seats.", code="invalid_seats",
                           field="seats", params={"n": summit.delegation_size})
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise InvalidInput("The note can have at most 1000 characters.", code="note_too_long",
                           field="note")
    verified = org.status == OrgStatus.APPROVED
    delegation = existing
    if delegation is None:
        delegation = SummitDelegation(summit_id=summit.id, organization_id=org.id,
                                      created_at=now)
        session.add(delegation)
    delegation.seats = seats
    delegation.note = note
    delegation.registered_by_id = actor.id
    delegation.status = RegistrationStatus.APPROVED if verified else RegistrationStatus.PENDING
    delegation.decided_by_id = None
    delegation.decided_at = now if verified else None
    delegation.decision_note = None
    session.flush()
    audit.record(session, actor_id=actor.id, action="summit.delegation.registered",
                 object_type="summit_delegation", object_id=delegation.id,
                 data={"new": {"summit_id": summit.id, "organization_id": org.id,
                               "seats": seats, "status": delegation.status.value}})
    mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
    if mine is not None and mine.status in ACTIVE:
        if verified and mine.kind == RegistrationKind.AUDIENCE:
            _join_delegation(session, mine, delegation)  # the same place, now a delegate's
        return DelegationResult(delegation, mine)
    if verified:
        if summit.capacity is not None and approved_count(session, summit.id) >= summit.capacity:
            return DelegationResult(delegation, None)  # the delegation stands; no place left
        seat = _place(session, summit=summit, user=actor, kind=RegistrationKind.DELEGATE,
                      delegation=delegation, status=RegistrationStatus.PENDING, existing=mine,
                      now=now)
        _approve(session, seat, decided_by=None, now=now)
    else:
        seat = _place(session, summit=summit, user=actor, kind=RegistrationKind.DELEGATE,
                      delegation=delegation, status=RegistrationStatus.PENDING, existing=mine,
                      now=now)
    return DelegationResult(delegation, seat)


def do_take_seat(*, session: Session, summit: Summit, actor: User,
                 now: dt.datetime | None = None) -> SummitRegistration:
    """Seat the actor in their organization's approved delegation."""
    now = now or utcnow()
    org = _staff_org(session, actor)
    _check_open(summit, now)
    summit = lock_summit(session, summit.id)  # first: concurrent seat-takers queue here
    mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
    if mine is not None and mine.status == RegistrationStatus.APPROVED \
            and mine.kind == RegistrationKind.DELEGATE:
        return mine
    delegation = delegation_of(session=session, summit_id=summit.id, organization_id=org.id)
    if delegation is None or delegation.status == RegistrationStatus.CANCELLED:
        raise Conflict("Your organization has not registered a delegation yet.",
                       code="no_delegation")
    if delegation.status == RegistrationStatus.PENDING:
        if mine is not None and mine.status == RegistrationStatus.PENDING:
            return mine
        raise Conflict("Your organization's delegation is waiting for the organizers.",
                       code="delegation_pending")
    if delegation.status != RegistrationStatus.APPROVED:
        raise Conflict("Your organization's delegation was not approved.",
                       code="delegation_rejected")
    if seats_taken(session, delegation.id) >= delegation.seats:
        raise Conflict("All seats of your organization's delegation are taken.",
                       code="delegation_full")
    if mine is not None and mine.status == RegistrationStatus.APPROVED:
        _join_delegation(session, mine, delegation)  # audience → delegate: the same place
        return mine
    _check_capacity(session, summit)
    seat = _place(session, summit=summit, user=actor, kind=RegistrationKind.DELEGATE,
                  delegation=delegation, status=RegistrationStatus.PENDING, existing=mine,
                  now=now)
    _approve(session, seat, decided_by=None, now=now)
    return seat


def do_register_audience(*, session: Session, summit: Summit, actor: User,
                         now: dt.datetime | None = None) -> SummitRegistration:
    """Register the actor as public audience (approved at once while places last)."""
    now = now or utcnow()
    _check_open(summit, now)
    mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
    if mine is not None and mine.status in ACTIVE:
        return mine  # idempotent (a delegate keeps their seat)
    summit = lock_summit(session, summit.id)
    # Re-read under the lock: a concurrent request of the same person may have won.
    mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
    if mine is not None and mine.status in ACTIVE:
        return mine
    _check_capacity(session, summit)
    registration = _place(session, summit=summit, user=actor, kind=RegistrationKind.AUDIENCE,
                          delegation=None, status=RegistrationStatus.PENDING, existing=mine,
                          now=now)
    _approve(session, registration, decided_by=None, now=now)
    return registration


def do_cancel(*, session: Session, summit: Summit, actor: User) -> SummitRegistration:
    """Cancel the actor's registration (its ticket stops working; the place is freed)."""
    mine = registration_of(session=session, summit_id=summit.id, user_id=actor.id)
    if mine is None:
        raise NotFound("You are not registered for this summit.", code="not_registered")
    if mine.status == RegistrationStatus.CANCELLED:
        return mine
    diff = audit.changes(mine, status=RegistrationStatus.CANCELLED, ticket_hash=None)
    session.flush()
    audit.record(session, actor_id=actor.id, action="summit.registration.cancelled",
                 object_type="summit_registration", object_id=mine.id, data=diff)
    return mine


# --- the organizers' decisions ---------------------------------------------------------------


def require_organizer(actor: User, summit: Summit) -> None:
    if not is_organizer(actor, summit):
        raise PermissionDenied("Only the summit's organizers may do this.",
                               code="organizer_only")


def do_decide_delegation(
    *, session: Session, summit: Summit, delegation: SummitDelegation, actor: User,
    approve: bool, note: str = "", now: dt.datetime | None = None,
) -> SummitDelegation:
    """Approve or reject a pending delegation; its waiting delegates are approved (while
    places last) or rejected with it, and they are told."""
    now = now or utcnow()
    require_organizer(actor, summit)
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise InvalidInput("The note can have at most 1000 characters.", code="note_too_long",
                           field="note")
    if not approve and not note:
        raise InvalidInput("Say why the application is rejected.", code="note_required",
                           field="note")
    summit = lock_summit(session, summit.id)
    session.refresh(delegation)
    if delegation.status != RegistrationStatus.PENDING:
        raise Conflict("This application has already been decided.", code="already_decided")
    new_status = RegistrationStatus.APPROVED if approve else RegistrationStatus.REJECTED
    diff = audit.changes(delegation, status=new_status, decided_by_id=actor.id, decided_at=now,
                         decision_note=note or None)
    session.flush()
    waiting = session.scalars(select(SummitRegistration).where(
        SummitRegistration.delegation_id == delegation.id,
        SummitRegistration.status == RegistrationStatus.PENDING,
    ).order_by(SummitRegistration.id)).all()
    seated: list[int] = []
    for registration in waiting:
        if approve:
            full = summit.capacity is not None and \
                approved_count(session, summit.id) >= summit.capacity
            if full or seats_taken(session, delegation.id) >= delegation.seats:
                continue  # stays pending: they may take a seat once a place is freed
            _approve(session, registration, decided_by=actor, now=now)
            seated.append(registration.user_id)
        else:
            registration.status = RegistrationStatus.REJECTED
            registration.decided_by_id = actor.id
            registration.decided_at = now
    session.flush()
    diff["new"]["seated_user_ids"] = seated
    audit.record(session, actor_id=actor.id,
                 action="summit.delegation.approved" if approve else "summit.delegation.rejected",
                 object_type="summit_delegation", object_id=delegation.id, data=diff)
    org = session.get(Organization, delegation.organization_id)
    people = {delegation.registered_by_id, *(r.user_id for r in waiting)}
    params = {"summit": summit.title, "organization": org.name if org else "",
              "note": note or "—"}
    link = f"/summits/{summit.slug}/ticket" if approve else f"/summits/{summit.slug}/register"
    accounts.do_notify(
        session=session, user_ids=people,
        kind="summit.delegation.approved" if approve else "summit.delegation.rejected",
        title=(N_("%(organization)s's delegation to %(summit)s was approved.") if approve
               else N_("%(organization)s's delegation to %(summit)s was not approved.")),
        body=N_("The organizers' note: %(note)s"), params=params, link=link,
    )
    return delegation


@dataclass(frozen=True)
class CheckIn:
    registration: SummitRegistration
    user: User
    organization: Organization | None
    already: bool  # it had been checked in before


def do_check_in(*, session: Session, summit: Summit, actor: User, token: str,
                now: dt.datetime | None = None) -> CheckIn:
    """Check in the holder of ``token`` (organizers only); checking in twice is harmless
    and says so."""
    require_organizer(actor, summit)
    token = token.strip()
    if not token or len(token) > 200:
        raise InvalidInput("Scan or type the ticket's code.", code="token_required",
                           field="token")
    registration = session.scalars(select(SummitRegistration).where(
        SummitRegistration.ticket_hash == token_hash(token),
        SummitRegistration.summit_id == summit.id,
    )).first()
    if registration is None or registration.status != RegistrationStatus.APPROVED:
        raise NotFound("This ticket is not valid for this summit.", code="ticket_not_found",
                       field="token")
    already = registration.checked_in_at is not None
    if not already:
        registration.checked_in_at = now or utcnow()
        session.flush()
        audit.record(session, actor_id=actor.id, action="summit.registration.checked_in",
                     object_type="summit_registration", object_id=registration.id,
                     data={"new": {"checked_in_at": registration.checked_in_at.isoformat()}})
    user = session.get(User, registration.user_id)
    assert user is not None  # noqa: S101 - a foreign key
    org = (session.get(Organization, registration.organization_id)
           if registration.organization_id else None)
    return CheckIn(registration, user, org, already)


# --- what the pages show ---------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    approved: int
    capacity: int | None
    delegates: int
    audience: int
    checked_in: int
    pending_delegations: int
    approved_delegations: int


def counts(*, session: Session, summit: Summit) -> Counts:
    """The registration numbers organizers watch."""
    rows = session.execute(
        select(SummitRegistration.kind, func.count(), func.count(SummitRegistration.checked_in_at))
        .where(SummitRegistration.summit_id == summit.id,
               SummitRegistration.status == RegistrationStatus.APPROVED)
        .group_by(SummitRegistration.kind)
    ).all()
    by_kind = {kind: (n, checked) for kind, n, checked in rows}
    delegations = dict(session.execute(
        select(SummitDelegation.status, func.count())
        .where(SummitDelegation.summit_id == summit.id).group_by(SummitDelegation.status)
    ).all())
    delegates = by_kind.get(RegistrationKind.DELEGATE, (0, 0))
    audience = by_kind.get(RegistrationKind.AUDIENCE, (0, 0))
    return Counts(
        approved=delegates[0] + audience[0], capacity=summit.capacity,
        delegates=delegates[0], audience=audience[0], checked_in=delegates[1] + audience[1],
        pending_delegations=delegations.get(RegistrationStatus.PENDING, 0),
        approved_delegations=delegations.get(RegistrationStatus.APPROVED, 0),
    )


@dataclass(frozen=True)
class Application:
    delegation: SummitDelegation
    organization: Organization
    registrant: User
    seats_taken: int


def applications(*, session: Session, summit: Summit, status: RegistrationStatus | None,
                 limit: int = 200) -> list[Application]:
    """Delegations of the summit (pending first, oldest first) for the organizers."""
    query = (select(SummitDelegation, Organization, User)
             .join(Organization, Organization.id == SummitDelegation.organization_id)
             .join(User, User.id == SummitDelegation.registered_by_id)
             .where(SummitDelegation.summit_id == summit.id))
    if status is not None:
        query = query.where(SummitDelegation.status == status)
    rows = session.execute(query.order_by(SummitDelegation.created_at, SummitDelegation.id)
                           .limit(limit)).all()
    taken = dict(session.execute(
        select(SummitRegistration.delegation_id, func.count())
        .where(SummitRegistration.summit_id == summit.id,
               SummitRegistration.status == RegistrationStatus.APPROVED,
               SummitRegistration.delegation_id.is_not(None))
        .group_by(SummitRegistration.delegation_id)
    ).all())
    return [Application(d, o, u, int(taken.get(d.id, 0))) for d, o, u in rows]
