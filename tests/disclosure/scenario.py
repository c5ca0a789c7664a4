"""A project's every kind of money movement, made through the real flows (no shortcuts past
the ledger): paid donations (one anonymous, one never paid), refunds requested / succeeded /
failed / partial, giving-day gifts matched at once, held then settled / released / refunded,
matched then refunded, a quadratic round, and a fund usage with an attachment."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import update

from shanju.accounts.models import Role, User
from shanju.campaigns import flows as campaign_flows
from shanju.campaigns import fraud, quadratic
from shanju.campaigns.engine import GiftResult, apply_batch
from shanju.campaigns.models import Campaign, CampaignGift, CampaignStatus, PoolKind
from shanju.core import files
from shanju.core.clock import today_cn, utcnow
from shanju.core.db import Database
from shanju.donations import flows as donation_flows
from shanju.payments.providers import Providers, SandboxProvider
from shanju.projects import service as projects
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project
from tests.factories import make_user as _make_user

SANDBOX_SECRET = "test-sandbox-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
# Personal data that must never appear in public data.
DONOR_EMAIL = "wang.xiaoming@example.org"
DONOR_NAME = "王小明"
ANON_NAME = "李秘密"
ANON_EMAIL = "li.secret@example.org"


@dataclass
class Scenario:
    org_id: int
    project_id: int
    other_project_id: int
    staff_id: int
    reviewer_id: int
    donor_id: int
    anon_id: int
    user_ids: list[int] = field(default_factory=list)
    donations: dict[str, str] = field(default_factory=dict)  # name → public id
    refunds: dict[str, str] = field(default_factory=dict)  # name → refund id
    gifts: dict[str, GiftResult] = field(default_factory=dict)
    usage_id: int = 0
    quadratic_pool_id: int = 0
    expected: dict[str, int] = field(default_factory=dict)  # project_id's flows


def _sandbox() -> SandboxProvider:
    return SandboxProvider(SANDBOX_SECRET)


def _callback(db: Database, event_type: str, intent_id: str, amount: int,
              refund_id: str | None = None) -> str:
    provider = _sandbox()
    body, headers = provider.build_callback(event_type=event_type, intent_id=intent_id,
                                            amount_fen=amount, refund_id=refund_id)
    with db.transaction() as s:
        return donation_flows.receive_callback(session=s, providers=Providers(provider),
                                               provider_name="sandbox", body=body,
                                               headers=headers)


def donate(db: Database, *, project_id: int, donor_id: int, amount: int,
           anonymous: bool = False, pay: bool = True) -> tuple[str, str]:
    """A donation through the flows; paid through a signed sandbox callback unless told."""
    with db.transaction() as s:
        donor = s.get_one(User, donor_id)
        request, project = donation_flows.check_donation_request(
            session=s, actor=donor, project_id=project_id, amount_fen=amount, donor_name=None,
            anonymous=anonymous, message="我的电话 13812345678", province=None)
        donation, _ = donation_flows.start_donation(
            session=s, actor=donor, request=request, project=project, provider=_sandbox(),
            idempotency_key=uuid.uuid4().hex)
        public_id, intent_id = donation.public_id, donation.payment_intent_id
    if pay:
        assert _callback(db, "payment.succeeded", intent_id, amount) == "credited"
    return public_id, intent_id


def refund(db: Database, *, public_id: str, actor_id: int, amount: int | None = None,
           outcome: str | None = None) -> str:
    """Request a refund (the sandbox does not answer); then its callback, if ``outcome``."""
    with db.transaction() as s:
        donation = donation_flows.get_donation(session=s, public_id=public_id)
        r = donation_flows.request_refund(
            session=s, actor=s.get_one(User, actor_id), donation=donation,
            providers=Providers(_sandbox()), amount_fen=amount, reason="捐赠人申请")
        refund_id, intent_id, fen = r.id, r.intent_id, r.amount_fen
    if outcome is not None:
        _callback(db, f"refund.{outcome}", intent_id, fen, refund_id)
    return refund_id


def build(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Scenario:
    """Every kind of movement on one project (and a little on a second one)."""
    hold = {"on": False}
    real_assess = fraud.assess_keys

    def assess(keys: fraud.Keys, counters: dict[str, int], *, donor_org_id: int | None,
               organization_id: int) -> fraud.Verdict:
        if hold["on"]:
            return fraud.Verdict(fraud.Action.HOLD, "shared_payer", {"accounts": 3})
        return real_assess(keys, counters, donor_org_id=donor_org_id,
                           organization_id=organization_id)

    monkeypatch.setattr(fraud, "assess_keys", assess)  # what the engine asks

    with db.transaction() as s:
        org = make_org(s)
        p1 = make_project(s, org=org, title="山区儿童冬衣")
        p2 = make_project(s, org=org, title="乡村图书角")
        campaign = make_campaign(s, projects=[p1, p2])
        pool = make_pool(s, campaign=campaign, budget_fen=1_000_000)
        qpool = make_pool(s, campaign=campaign, budget_fen=10_000, kind=PoolKind.QUADRATIC)
        staff = _make_user(s, role=Role.ORG_STAFF, organization_id=org.id)
        reviewer = _make_user(s, role=Role.ADMIN)
        donor = _make_user(s, email=DONOR_EMAIL, display_name=DONOR_NAME)
        anon = _make_user(s, email=ANON_EMAIL, display_name=ANON_NAME)
        users = [_make_user(s, display_name=f"捐赠人{i}").id for i in range(12)]
        sc = Scenario(org_id=org.id, project_id=p1.id, other_project_id=p2.id,
                      staff_id=staff.id, reviewer_id=reviewer.id, donor_id=donor.id,
                      anon_id=anon.id, user_ids=users, quadratic_pool_id=qpool.id)
        campaign_id, pool_id = campaign.id, pool.id
    del pool_id
    pid = sc.project_id

    # Ordinary donations and their refunds.
    for name, amount, who, anonymous in (("plain", 5_000, sc.donor_id, False),
                                         ("anonymous", 3_000, sc.anon_id, True),
                                         ("pending_refund", 2_000, sc.donor_id, False),
                                         ("refunded", 1_500, sc.donor_id, False),
                                         ("refund_failed", 1_200, sc.donor_id, False),
                                         ("partial", 4_000, sc.donor_id, False)):
        sc.donations[name] = donate(db, project_id=pid, donor_id=who, amount=amount,
                                    anonymous=anonymous)[0]
    sc.donations["unpaid"] = donate(db, project_id=pid, donor_id=sc.donor_id, amount=999,
                                    pay=False)[0]
    sc.refunds["pending"] = refund(db, public_id=sc.donations["pending_refund"],
                                   actor_id=sc.staff_id)
    sc.refunds["succeeded"] = refund(db, public_id=sc.donations["refunded"],
                                     actor_id=sc.staff_id, outcome="succeeded")
    sc.refunds["failed"] = refund(db, public_id=sc.donations["refund_failed"],
                                  actor_id=sc.staff_id, outcome="failed")
    sc.refunds["partial"] = refund(db, public_id=sc.donations["partial"], actor_id=sc.staff_id,
                                   amount=1_000, outcome="succeeded")
    donate(db, project_id=sc.other_project_id, donor_id=sc.donor_id, amount=700)

    # Giving-day gifts through the engine.
    def give(name: str, amount: int, donor_index: int, project_id: int = pid,
             anonymous: bool = False) -> GiftResult:
        gift = make_paid_gift(campaign_id=campaign_id, project_id=project_id,
                              amount_fen=amount, donor_id=sc.user_ids[donor_index],
                              donor_name=f"捐赠人{donor_index}", anonymous=anonymous)
        with db.transaction() as s:
            result = apply_batch(s, [gift])[0]
        sc.gifts[name] = result
        return result

    give("matched", 2_000, 0)
    give("matched_refunded", 1_000, 1, anonymous=True)
    give("other_project", 900, 2, project_id=sc.other_project_id)
    hold["on"] = True
    give("held_settled", 800, 3)
    give("held_released", 700, 4)
    give("held_refunded", 600, 5)
    give("held_settled_refunded", 500, 6)
    give("held", 400, 7)
    hold["on"] = False
    for name in ("matched", "matched_refunded"):
        assert sc.gifts[name].match_status == "matched", sc.gifts[name]
    for name in ("held_settled", "held_released", "held_refunded", "held"):
        assert sc.gifts[name].match_status == "held", sc.gifts[name]

    def gift_refund(name: str) -> None:
        with db.transaction() as s:
            campaign_flows.refund_gift(session=s, actor=s.get_one(User, sc.reviewer_id),
                                       order_id=sc.gifts[name].order_id, reason="重复支付")

    gift_refund("matched_refunded")
    gift_refund("held_refunded")
    with db.transaction() as s:
        campaign_flows.release_held(session=s, actor=s.get_one(User, sc.reviewer_id),
                                    order_id=sc.gifts["held_released"].order_id,
                                    reason="同一付款人")
        s.execute(update(CampaignGift).where(CampaignGift.order_id.in_([
            sc.gifts["held_settled"].order_id, sc.gifts["held_settled_refunded"].order_id,
        ])).values(hold_until=utcnow() - dt.timedelta(days=1)))
    with db.transaction() as s:
        assert campaign_flows.settle_held(session=s) == 2
    gift_refund("held_settled_refunded")

    # The quadratic round, once the campaign has ended.
    with db.transaction() as s:
        s.execute(update(Campaign).where(Campaign.id == campaign_id)
                  .values(status=CampaignStatus.ENDED))
    with db.transaction() as s:
        shares = quadratic.distribute(session=s, actor=s.get_one(User, sc.reviewer_id),
                                      pool_id=sc.quadratic_pool_id)
    share = {sh.project_id: sh.share_fen for sh in shares}

    # A fund usage with a receipt.
    with db.transaction() as s:
        usage = projects.do_disclose_fund_usage(
            session=s, actor=s.get_one(User, sc.staff_id), project=projects.get_project(
                session=s, project_id=pid), amount=3_000, purpose="购买冬衣",
            description="200 件冬衣,发票见附件", spent_on=today_cn(),
            attachments=[files.Upload(filename="发票.png", data=PNG)],
            upload_dir=tmp_path / "uploads")
        sc.usage_id = usage.id

    m = {n: r.matched_fen for n, r in sc.gifts.items()}
    sc.expected = {
        "received_fen": 5_000 + 3_000 + 2_000 + 1_500 + 1_200 + 4_000
        + 2_000 + 1_000 + 800 + 700 + 600 + 500 + 400,
        "matched_fen": m["matched"] + m["held_settled"] + share.get(pid, 0),
        "refunded_fen": 2_000 + 1_500 + 1_000 + 1_000 + 600 + 500,
        "disbursed_fen": 3_000,
    }
    sc.expected["balance_fen"] = (sc.expected["received_fen"] + sc.expected["matched_fen"]
                                  - sc.expected["refunded_fen"] - sc.expected["disbursed_fen"])
    assert share.get(pid, 0) > 0
    return sc
