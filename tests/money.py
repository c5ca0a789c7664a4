"""Fixtures for tests that move money: a world with a fundraising project, donors, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.core.db import Base, Database
from shanju.donations.models import Donation
from shanju.ledger.models import JournalEntry, Posting
from shanju.payments.models import PaymentIntent, ProviderEvent, Refund
from shanju.projects.models import ProjectStatus
from tests.factories import make_org, make_project, make_user


@dataclass
class World:
    """IDs and API tokens of the people and things a donation test needs."""

    org_id: int
    project_id: int
    closed_project_id: int
    other_org_id: int
    other_project_id: int
    donor_id: int
    staff_id: int
    donor_token: str
    staff_token: str
    other_staff_token: str
    reviewer_token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.donor_token}"}


@pytest.fixture
def world(db: Database) -> World:
    with db.transaction() as s:
        org = make_org(s)
        other = make_org(s)
        project = make_project(s, org=org)
        closed = make_project(s, org=org, status=ProjectStatus.ENDED)
        other_project = make_project(s, org=other)
        donor = make_user(s, display_name="张三丰")
        staff = make_user(s, role=Role.ORG_STAFF, organization_id=org.id)
        other_staff = make_user(s, role=Role.ORG_STAFF, organization_id=other.id)
        reviewer = make_user(s, role=Role.REVIEWER)

        def token(user: Any) -> str:
            return accounts.do_create_api_token(session=s, user=user, name="test")[1]

        return World(
            org_id=org.id, project_id=project.id, closed_project_id=closed.id,
            other_org_id=other.id, other_project_id=other_project.id, donor_id=donor.id,
            staff_id=staff.id,
            donor_token=token(donor), staff_token=token(staff),
            other_staff_token=token(other_staff), reviewer_token=token(reviewer),
        )


MONEY_TABLES: tuple[type[Base], ...] = (
    Donation, PaymentIntent, ProviderEvent, Refund, JournalEntry, Posting,
)


def counts(session: Session) -> dict[str, int]:
    """Row counts of every table money code touches: 'nothing changed' means these are equal."""
    return {
        m.__tablename__: int(session.scalar(select(func.count()).select_from(m)) or 0)
        for m in MONEY_TABLES
    }


@pytest.fixture
def snapshot(db: Database) -> Iterator[Any]:
    def take() -> dict[str, int]:
        with db.transaction(write=False) as s:
            return counts(s)

    yield take
