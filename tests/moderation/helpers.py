"""A project with two donors' messages — an ordinary donation and a giving-day gift, each with
its payment order — and the people around it: its staff, another organization's staff, a
reviewer, the donor."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

from shanju.accounts.models import Role
from shanju.core.db import Database
from shanju.core.ids import public_id
from shanju.payments.models import IntentStatus, PaymentIntent
from tests.factories import make_campaign, make_campaign_gift, make_org, make_project, make_user
from tests.projects.helpers import paid_donation, sign_in, staff_of

ORDINARY_MESSAGE = "愿山里的孩子都有书读"
GIVING_DAY_MESSAGE = "九九公益日，一起加油"


@dataclass(frozen=True)
class World:
    project_id: int
    donation_id: str  # the ordinary gift's public id (d_…)
    donation_order: str  # its payment order (pi_…)
    gift_order: str  # the giving-day gift's order id (its public id)
    donor_id: int
    staff_id: int
    other_staff_id: int
    reviewer_id: int


def make_world(db: Database, *, ordinary_message: str = ORDINARY_MESSAGE,
               giving_day_message: str = GIVING_DAY_MESSAGE) -> World:
    """The project, its two gifts with messages, and who looks at them."""
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        donor = make_user(s, display_name="张三丰")
        donation = paid_donation(s, project, donor=donor, name="张三丰", message=ordinary_message,
                                 amount_fen=5_000)
        order = s.get_one(PaymentIntent, donation.payment_intent_id)
        order.donor_id, order.project_id = donor.id, project.id
        order.organization_id, order.donor_name = project.recipient_org_id, "张三丰"
        order.message = ordinary_message
        campaign = make_campaign(s, projects=[project])
        gift_order = PaymentIntent(
            id=public_id("pi"), provider="sandbox", amount_fen=8_800,
            status=IntentStatus.SUCCEEDED, idempotency_scope="test",
            idempotency_key=public_id("k"), request_hash="0" * 64, project_id=project.id,
            organization_id=project.recipient_org_id, campaign_id=campaign.id,
            donor_id=donor.id, donor_name="张三丰", message=giving_day_message)
        s.add(gift_order)
        s.flush()
        gift = make_campaign_gift(s, campaign=campaign, project=project, donor=donor,
                                  amount_fen=8_800, order_id=gift_order.id)
        gift.message = giving_day_message
        s.flush()
        return World(
            project_id=project.id, donation_id=donation.public_id,
            donation_order=donation.payment_intent_id, gift_order=gift.order_id,
            donor_id=donor.id, staff_id=staff_of(s, org).id,
            other_staff_id=staff_of(s, make_org(s)).id,
            reviewer_id=make_user(s, role=Role.REVIEWER).id)


def as_user(client: TestClient, db: Database, user_id: int | None) -> str:
    """Browse as this user (None: a visitor signed out); return the CSRF token of forms."""
    client.cookies.clear()
    if user_id is None:
        client.get("/healthz")
        return str(client.cookies.get("sj_csrf") or "")
    return sign_in(client, db, user_id)
