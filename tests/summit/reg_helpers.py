"""Test data of the registration tests: a summit with sessions, organizations and their staff
(rows written directly; the services under test do the rest)."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core.clock import utcnow
from shanju.organizations.models import Organization, OrgStatus
from shanju.summit.models import SessionKind, Summit, SummitSession, SummitStatus
from tests.factories import make_org, make_user

_seq = itertools.count(1)
SUMMIT_TITLE = "中国互联网公益峰会 2026"


def make_summit(session: Session, *, capacity: int | None = None, delegation_size: int = 5,
                status: SummitStatus = SummitStatus.PUBLISHED,
                closes_at: dt.datetime | None = None,
                host: Organization | None = None, title: str = SUMMIT_TITLE) -> Summit:
    n = next(_seq)
    today = utcnow().date()
    summit = Summit(
        slug=f"summit-{n}", title=title, title_en="China Internet Charity Summit 2026",
        starts_on=today, ends_on=today + dt.timedelta(days=1), status=status,
        capacity=capacity, delegation_size=delegation_size, registration_closes_at=closes_at,
        host_organization_id=host.id if host else None,
    )
    session.add(summit)
    session.flush()
    return summit


def make_session(session: Session, *, summit: Summit, title: str = "主论坛:科技向善",
                 hours_from_now: float = 0, kind: SessionKind = SessionKind.KEYNOTE
                 ) -> SummitSession:
    starts = utcnow().replace(microsecond=0) + dt.timedelta(hours=hours_from_now)
    row = SummitSession(summit_id=summit.id, kind=kind, title=title, starts_at=starts,
                        ends_at=starts + dt.timedelta(hours=1))
    session.add(row)
    session.flush()
    return row


def make_staff(session: Session, *, verified: bool = True, name: str = "王小明",
               org: Organization | None = None, org_name: str | None = None
               ) -> User:
    """A staff member of a (new, unless given) organization, verified or pending review."""
    if org is None:
        org = make_org(session, status=OrgStatus.APPROVED if verified else OrgStatus.PENDING,
                       name=org_name)
    return make_user(session, role=Role.ORG_STAFF, organization_id=org.id, display_name=name)


def make_reviewer(session: Session) -> User:
    return make_user(session, role=Role.REVIEWER, display_name="审核员")
