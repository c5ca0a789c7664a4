"""Test helpers of the gifts read model: gifts of both kinds made the way the platform makes
them — ordinary donations through the donation flows and the sandbox's signed callbacks,
giving-day gifts through the group-commit engine's ``apply_batch``."""

from __future__ import annotations

from dataclasses import dataclass

from shanju.accounts.models import Role, User
from shanju.campaigns.engine import apply_batch
from shanju.core.db import Database
from shanju.donations import flows
from shanju.payments.providers import Providers, SandboxProvider
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)

SECRET = "gift-view-secret"


@dataclass
class World:
    db: Database
    sandbox: SandboxProvider
    project_id: int
    org_id: int
    campaign_id: int
    pool_id: int
    donor_id: int
    staff_id: int
    reviewer_id: int


def make_world(db: Database) -> World:
    """A fundraising project enrolled in a live giving day with a 1:1 pool of ¥1,000, a donor
    (李雷), a staff member of the receiving organization and a reviewer."""
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=1_000_00, params={"ratio_num": 1})
        return World(db=db, sandbox=SandboxProvider(SECRET), project_id=project.id,
                     org_id=org.id, campaign_id=campaign.id, pool_id=pool.id,
                     donor_id=make_user(s, display_name="李雷").id,
                     staff_id=make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id,
                     reviewer_id=make_user(s, role=Role.REVIEWER).id)


def _callback(w: World, event: str, intent_id: str, amount_fen: int,
              refund_id: str | None = None) -> None:
    body, headers = w.sandbox.build_callback(event_type=event, intent_id=intent_id,
                                             amount_fen=amount_fen, refund_id=refund_id)
    with w.db.transaction() as s:
        flows.receive_callback(session=s, providers=Providers(w.sandbox),
                               provider_name="sandbox", body=body, headers=headers)


def donate(w: World, amount_fen: int, *, pay: str | None = "payment.succeeded",
           message: str = "", anonymous: bool = False) -> str:
    """An ordinary donation through the flows; ``pay``: the provider's callback, if any."""
    with w.db.transaction() as s:
        donor = s.get_one(User, w.donor_id)
        request, project = flows.check_donation_request(
            session=s, actor=donor, project_id=w.project_id, amount_fen=amount_fen,
            donor_name=None, anonymous=anonymous, message=message, province="云南")
        donation, _ = flows.start_donation(session=s, actor=donor, request=request,
                                           project=project, provider=w.sandbox,
                                           idempotency_key=f"k{amount_fen}{message}")
        public_id, intent_id = donation.public_id, donation.payment_intent_id
    if pay:
        _callback(w, pay, intent_id, amount_fen)
    return public_id


def refund(w: World, public_id: str, amount_fen: int | None = None) -> None:
    """Refund (part of) a donation and let the provider confirm it."""
    with w.db.transaction() as s:
        donation = flows.get_donation(session=s, public_id=public_id)
        done = flows.request_refund(session=s, actor=s.get_one(User, w.staff_id),
                                    donation=donation, providers=Providers(w.sandbox),
                                    amount_fen=amount_fen, reason="捐赠人申请退款")
        refund_id, intent_id, amount = done.id, done.intent_id, done.amount_fen
    _callback(w, "refund.succeeded", intent_id, amount, refund_id)


def give_on_giving_day(w: World, amount_fen: int, **kw: object) -> str:
    """A giving-day gift written by the engine (matched 1:1 while the pool lasts)."""
    paid = make_paid_gift(campaign_id=w.campaign_id, project_id=w.project_id,
                          amount_fen=amount_fen, donor_id=w.donor_id, **kw)  # type: ignore[arg-type]
    with w.db.transaction() as s:
        apply_batch(s, [paid])
    return paid.order_id
