"""A giving-day order through WeChat Pay (``POST /api/v1/gifts`` with ``campaign_id``), checked
against the process's order facts (``campaigns.orders.OrderFacts``): once a change is past the
bound, the order is refused with its usual code and nothing is written or opened at the
provider; the donor's token use is recorded with the order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shanju.accounts.models import ApiToken
from shanju.campaigns import orders
from shanju.campaigns.checkout import stop_engine
from shanju.campaigns.models import Campaign, CampaignStatus
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.payments.models import PaymentIntent
from tests.gifts.pipeline import enrol_in_giving_day
from tests.gifts.providers import wechatpay_world


@pytest.fixture(scope="module")
def wechat_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wechatpay-keys")


def test_an_ended_giving_day_refuses_orders_within_the_bound_and_opens_nothing(
        db: Database, tmp_path: Path, wechat_keys: Path) -> None:
    now = [1_000.0]
    with db.transaction(write=False) as s:
        orders.order_facts(s).clock = lambda: now[0]

    def counts() -> tuple[int, int]:
        with db.transaction(write=False) as s:
            return (int(s.scalar(select(func.count()).select_from(PaymentIntent)) or 0),
                    int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0))

    def last_used() -> dt.datetime | None:
        with db.transaction(write=False) as s:
            return s.scalars(select(ApiToken.last_used_at)).one()

    with wechatpay_world(db, tmp_path, wechat_keys) as world:
        try:
            campaign_id = enrol_in_giving_day(world.platform)
            assert last_used() is None
            world.checkout(campaign_id=campaign_id)  # recorded with the order
            assert last_used() is not None
            opened_at_provider = len(world.emulator._orders)
            with db.transaction() as s:
                s.get_one(Campaign, campaign_id).status = CampaignStatus.ENDED
            before = counts()
            now[0] += orders.ORDER_FACTS_MAX_AGE_S
            refused = world.platform.give("wechat_h5", key="k2", campaign_id=campaign_id)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "campaign_not_live"
            assert counts() == before
            assert len(world.emulator._orders) == opened_at_provider
        finally:
            world.settle()
            stop_engine(world.platform.app)
