"""Refunding a giving-day gift paid through WeChat Pay: the one refund flow, on both databases.

The refund is decided on the platform (the match goes back to the sponsor's pool at once, the
gift's amount is reserved in ``refunds``), the provider is asked after the commit, and its
answer settles it: the money reaches the donor, or — refused — returns to the project, the
gift counting as paid again without its match.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shanju.campaigns.checkout import stop_engine
from shanju.campaigns.models import CampaignGift, MatchPool
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.gifts.pipeline import Platform
from tests.gifts.providers import WeChatPayWorld, wait_for, wechatpay_world
from tests.gifts.test_pipeline_giving_day import BUDGET, Day, gifts_of, open_giving_day
from tests.organizations.helpers import api_token, new_staff


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's keys, made by the module's first setup() and kept for the others."""
    return tmp_path_factory.mktemp("wechatpay-keys")


@pytest.fixture
def paid(db: Database, tmp_path: Path, key_dir: Path
         ) -> Iterator[tuple[WeChatPayWorld, Day, str]]:
    """A giving-day gift of ¥100 paid through WeChat Pay and matched 1:1."""
    with wechatpay_world(db, tmp_path, key_dir) as world:
        try:
            day = open_giving_day(world.platform)
            order_id = world.checkout(amount_fen=100_00, campaign_id=day.campaign_id)
            world.phone_pays()
            world.settle()
            wait_for(lambda: len(gifts_of(world.platform, order_id)) == 1)
            yield world, day, order_id
        finally:
            world.settle()
            stop_engine(world.platform.app)


def _refund(platform: Platform, order_id: str) -> requests.Response:
    staff = new_staff(platform.db, platform.org_id)
    return requests.post(f"{platform.url}/api/v1/campaigns/gifts/{order_id}/refund",
                         json={"reason": "捐赠人申请退款"},
                         headers=api_token(platform.db, staff), timeout=30)


def _books(platform: Platform, day: Day) -> tuple[int, int, int, int]:
    def go(s: Any) -> tuple[int, int, int, int]:
        pool = s.get_one(MatchPool, day.pool_id)
        return (pool.remaining_fen, ledger.balance(s, ledger.match_pool(day.pool_id)),
                ledger.balance(s, ledger.project_fund(platform.project_id)),
                ledger.balance(s, ledger.REFUNDS))
    result: tuple[int, int, int, int] = platform.read(go)
    return result


def test_the_provider_returns_the_money_and_the_match_goes_back_to_the_pool(
        paid: tuple[WeChatPayWorld, Day, str]) -> None:
    world, day, order_id = paid
    world.emulator.set_faults(refunds="manual")
    answer = _refund(world.platform, order_id)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["match_reversed_fen"]) == ("refunded", 100_00)
    # Decided: the match is back in the pool, the gift's amount reserved, the provider asked.
    [pending] = world.platform.refunds(order_id)
    assert pending.status.value == "pending" and pending.provider_refund_id
    assert _books(world.platform, day) == (BUDGET, BUDGET, 0, 100_00)
    world.emulator.settle_refund(pending.id)
    world.settle()
    [done] = world.platform.refunds(order_id)
    assert done.status.value == "succeeded"
    assert _books(world.platform, day) == (BUDGET, BUDGET, 0, 0)
    [gift] = gifts_of(world.platform, order_id)
    assert (gift.status.value, gift.match_status.value) == ("refunded", "reversed")
    assert world.platform.intent(order_id).refunded_fen == 100_00
    world.platform.books_are_sound()


def test_a_refused_refund_leaves_the_gift_paid_without_its_match(
        paid: tuple[WeChatPayWorld, Day, str]) -> None:
    world, day, order_id = paid
    world.emulator.set_faults(api={"fail_next": 1, "status": 400, "code": "INVALID_REQUEST",
                                   "message": "订单已超过退款期限"})
    assert _refund(world.platform, order_id).status_code == 200
    [refund] = world.platform.refunds(order_id)
    assert refund.status.value == "failed"
    # The gift's money is the project's again; the match stays with the sponsor's pool.
    assert _books(world.platform, day) == (BUDGET, BUDGET, 100_00, 0)
    [gift] = gifts_of(world.platform, order_id)
    assert (gift.status.value, gift.match_status.value) == ("paid", "reversed")
    assert world.platform.intent(order_id).refunded_fen == 0
    world.platform.books_are_sound()

    def checked(s: Any) -> Any:
        from shanju.campaigns.check import check
        return check(s)
    report = world.platform.read(checked)
    assert report.ok, report.problems
    assert isinstance(gift, CampaignGift)
