"""Who may do what at a summit (shared by the pages, the API and the live gateway)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core.masking import mask_name
from shanju.organizations.models import Organization
from shanju.summit import tokens
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    Summit,
    SummitRegistration,
)
from shanju.summit.tokens import Role as LiveRole

# Names in a room are seen by everyone in it whatever their language; the summit's is Chinese.
MODERATOR_PREFIX = "主持人"


def is_organizer(user: User | None, summit: Summit) -> bool:
    """Platform reviewers/admins, and staff of the hosting organization, organize a summit
    (edit it, decide applications, moderate its live rooms, export attendance)."""
    if user is None or not user.is_active:
        return False
    return organizes(user.role, user.organization_id, summit.host_organization_id)


def organizes(role: Role, organization_id: int | None, host_organization_id: int | None) -> bool:
    """Whether an active user with this role and organization organizes a summit hosted by
    ``host_organization_id`` (the rule of :func:`is_organizer`, on plain values: the live
    rooms' revocation sweep checks moderators with it)."""
    if role in (Role.REVIEWER, Role.ADMIN):
        return True
    return (
        role == Role.ORG_STAFF
        and host_organization_id is not None
        and organization_id == host_organization_id
    )


def summit_hosts(session: Session, summit_ids: Collection[int]) -> dict[int, int | None]:
    """The host organization of each of these summits (missing: no such summit)."""
    if not summit_ids:
        return {}
    rows = session.execute(
        select(Summit.id, Summit.host_organization_id).where(Summit.id.in_(list(summit_ids)))
    ).all()
    return {int(summit_id): host for summit_id, host in rows}


def browser_session_id(session: Session, cookie: str | None) -> int | None:
    """The browser session (``web_sessions.id``) of a session cookie, for live tokens."""
    if not cookie:
        return None
    return accounts.web_session_id(session=session, token=cookie)


def live_identity(
    session: Session, *, summit: Summit, user: User | None
) -> tuple[LiveRole, str, int | None] | None:
    """(role, shown name, organization id) of a person who may join the summit's live rooms,
    or None: organizers moderate; people with an approved registration attend."""
    if user is None or not user.is_active:
        return None
    masked = mask_name(user.display_name)
    if is_organizer(user, summit):
        return "moderator", f"{MODERATOR_PREFIX} {masked}", None
    registration = approved_registration(session, summit_id=summit.id, user_id=user.id)
    if registration is None:
        return None
    org_id = registration.organization_id
    if registration.kind == RegistrationKind.DELEGATE and org_id is not None:
        org = session.get(Organization, org_id)
        if org is not None:
            masked = f"{masked} · {org.short_name or org.name}"
    return "attendee", masked, org_id


def approved_registration(
    session: Session, *, summit_id: int, user_id: int
) -> SummitRegistration | None:
    """The person's approved registration at the summit, if they have one."""
    return session.scalars(
        select(SummitRegistration).where(
            SummitRegistration.summit_id == summit_id,
            SummitRegistration.user_id == user_id,
            SummitRegistration.status == RegistrationStatus.APPROVED,
        )
    ).first()


@dataclass(frozen=True, slots=True)
class LiveGrant:
    """A live token handed to a page or the token endpoint, and what it says."""

    token: str
    role: LiveRole
    name: str
    user_id: int
    ttl: int


def grant_live_token(
    session: Session, *, summit: Summit, user: User | None, web_session_id: int | None,
    secret: str, ttl: int,
) -> LiveGrant | None:
    """A live token for ``user`` signed in with browser session ``web_session_id``, or None
    if they may not join the summit's live rooms (or are not signed in with a browser)."""
    identity = live_identity(session, summit=summit, user=user)
    if identity is None or user is None or web_session_id is None:
        return None
    role, name, org_id = identity
    token = tokens.issue(secret, user_id=user.id, summit_id=summit.id, role=role, name=name,
                         organization_id=org_id, session_id=web_session_id, ttl=ttl)
    return LiveGrant(token=token, role=role, name=name, user_id=user.id, ttl=ttl)
