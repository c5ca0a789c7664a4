"""Helpers for page and API tests of organizations and complaints: sign-in, CSRF, data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Notification, Role, User
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.web import CSRF_COOKIE
from shanju.organizations import payment_routes
from shanju.organizations.models import Organization
from tests.factories import make_org, make_user

T = TypeVar("T")

# Payment routes: the tests' app's secret key (tests/conftest.py) and well-formed ids.
SECRET = "test-secret"
SUB_MCHID = "1900000109"
PID = "2088102146225135"
TOKEN = "202501BBf9c9781043854fe58c25b4b378350A89"  # Alipay's shape: 40 letters and digits


def run(db: Database, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in its own committed transaction and return its result."""
    with db.transaction() as session:
        return fn(session)


def sign_in(client: TestClient, db: Database, user_id: int) -> None:
    """Make ``client`` a browser signed in as the user."""
    def start(session: Session) -> str:
        user = session.get(User, user_id)
        assert user is not None
        return accounts.do_start_session(session=session, user=user)

    client.cookies.set("sj_session", run(db, start))
    # Like a browser after signing in: the next page sets the CSRF token bound to the session.
    client.get("/healthz")


def api_token(db: Database, user_id: int) -> dict[str, str]:
    """Authorization headers with a fresh API token of the user."""
    def create(session: Session) -> str:
        user = session.get(User, user_id)
        assert user is not None
        return accounts.do_create_api_token(session=session, user=user, name="test")[1]

    return {"Authorization": f"Bearer {run(db, create)}"}


def csrf(client: TestClient) -> str:
    """The CSRF token the browser would embed in forms (fetches a page for the cookie)."""
    if CSRF_COOKIE not in client.cookies:
        client.get("/healthz")
    token = client.cookies.get(CSRF_COOKIE)
    assert token
    return token


def new_user(db: Database, role: Role = Role.DONOR, **kwargs: Any) -> int:
    """Create a user and return the id."""
    return run(db, lambda s: make_user(s, role=role, **kwargs).id)


def new_org(db: Database, **kwargs: Any) -> int:
    """Create an organization and return the id."""
    return run(db, lambda s: make_org(s, **kwargs).id)


def new_staff(db: Database, org_id: int) -> int:
    """Create a staff member of the organization."""
    return new_user(db, Role.ORG_STAFF, organization_id=org_id)


def count(db: Database, model: Any) -> int:
    """How many rows a table holds."""
    return run(db, lambda s: s.scalar(select(func.count()).select_from(model)) or 0)


def org(db: Database, org_id: int) -> Organization:
    """Load an organization (detached, attributes loaded)."""
    found = run(db, lambda s: s.get(Organization, org_id))
    assert found is not None
    return found


def user(db: Database, user_id: int) -> User:
    """Load a user (detached, attributes loaded)."""
    found = run(db, lambda s: s.get(User, user_id))
    assert found is not None
    return found


def audit_actions(db: Database, object_type: str, object_id: int) -> list[str]:
    """The audit actions recorded on an object, oldest first."""
    return list(run(db, lambda s: s.scalars(
        select(AuditEntry.action)
        .where(AuditEntry.object_type == object_type, AuditEntry.object_id == str(object_id))
        .order_by(AuditEntry.id)
    ).all()))


def notifications(db: Database, user_id: int) -> list[Notification]:
    """The user's notifications."""
    return list(run(db, lambda s: s.scalars(
        select(Notification).where(Notification.user_id == user_id)
    ).all()))


def approved_route(db: Database, org_id: int, **body: str) -> int:
    """Submit and approve a route of the organization (through the services); its id."""
    def go(s: Session) -> int:
        staff = s.get_one(User, staff_id)
        reviewer = s.get_one(User, reviewer_id)
        route = payment_routes.do_submit_route(
            session=s, organization=s.get_one(Organization, org_id),
            actor=staff, secret_key=SECRET, **body)
        payment_routes.do_approve_route(session=s, route=route, actor=reviewer)
        return route.id

    staff_id = new_staff(db, org_id)
    reviewer_id = new_user(db, Role.REVIEWER)
    return run(db, go)
