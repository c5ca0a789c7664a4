"""Who may do what at a summit (shared by the pages, the API and the live gateway)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.summit.models import RegistrationStatus, Summit, SummitRegistration


def is_organizer(user: User | None, summit: Summit) -> bool:
    """Platform reviewers/admins, and staff of the hosting organization, organize a summit
    (edit it, decide applications, moderate its live rooms, export attendance)."""
    if user is None or not user.is_active:
        return False
    if user.role in (Role.REVIEWER, Role.ADMIN):
        return True
    return (
        user.role == Role.ORG_STAFF
        and summit.host_organization_id is not None
        and user.organization_id == summit.host_organization_id
    )


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
