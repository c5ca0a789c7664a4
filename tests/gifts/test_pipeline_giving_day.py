"""A giving-day gift through the one gift pipeline (ADR 0028), on SQLite and PostgreSQL.

The donor gives with ``campaign_id`` of a live giving day the project is enrolled in, a
sponsor's pool matching 1:1: the checkout writes the payment order (no donation), the
provider's emulator is paid on its own page, its signed notification arrives at the intake,
which marks the order paid once and hands it to the group-commit engine; the engine writes
the ``campaign_gifts`` row (``order_id`` = the payment order's id), its match and their ledger
entry in its batch, and refuses a second gift for the same order. When the engine cannot
write it, the provider is told "not accepted" and its retry — the same notification, already
recorded — hands the order to the engine again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from shanju.campaigns import engine as engine_module
from shanju.campaigns.checkout import start_engine, stop_engine
from shanju.campaigns.models import CampaignGift, MatchPool
from shanju.core.db import Database
from shanju.donations.models import Donation
from shanju.gifts import api as gifts_api
from shanju.gifts import flows
from shanju.gifts.models import Gift
from shanju.gifts.service import project_totals
from shanju.ledger import service as ledger
from shanju.projects.models import Project
from tests.factories import make_campaign, make_pool
from tests.gifts.pipeline import Platform
from tests.gifts.providers import (
    AlipayWorld,
    WeChatPayWorld,
    alipay_world,
    wechatpay_world,
)

BUDGET = 1_000_00


@dataclass
class Day:
    """The live giving day the platform's project is enrolled in, and its 1:1 pool."""

    campaign_id: int
    pool_id: int


def open_giving_day(platform: Platform) -> Day:
    def go(s: Any) -> Day:
        project = s.get_one(Project, platform.project_id)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=BUDGET, params={"ratio_num": 1})
        return Day(campaign.id, pool.id)
    result: Day = platform.read(go)
    return result


@pytest.fixture(scope="module")
def wechat_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wechatpay-keys")


@pytest.fixture(scope="module")
def alipay_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alipay-keys")


@pytest.fixture
def wechat(db: Database, tmp_path: Path, wechat_keys: Path
           ) -> Iterator[tuple[WeChatPayWorld, Day]]:
    with wechatpay_world(db, tmp_path, wechat_keys) as world:
        try:
            yield world, open_giving_day(world.platform)
        finally:
            world.settle()
            stop_engine(world.platform.app)


@pytest.fixture
def alipay(db: Database, tmp_path: Path, alipay_keys: Path) -> Iterator[tuple[AlipayWorld, Day]]:
    with alipay_world(db, tmp_path, alipay_keys) as world:
        try:
            yield world, open_giving_day(world.platform)
        finally:
            world.settle()
            stop_engine(world.platform.app)


def gifts_of(platform: Platform, order_id: str) -> list[CampaignGift]:
    def go(s: Any) -> list[CampaignGift]:
        rows = list(s.scalars(select(CampaignGift).where(CampaignGift.order_id == order_id)))
        for row in rows:
            s.expunge(row)
        return rows
    result: list[CampaignGift] = platform.read(go)
    return result


def written_once_and_matched(platform: Platform, day: Day, order_id: str,
                             amount_fen: int) -> CampaignGift:
    """One gift for the order, matched 1:1 once; the money in the books once; the order paid
    and no ordinary donation made of it; the ledger and transparency log sound."""
    [gift] = gifts_of(platform, order_id)
    assert (gift.campaign_id, gift.project_id, gift.amount_fen) == (
        day.campaign_id, platform.project_id, amount_fen)
    assert gift.donor_id == platform.donor_id and gift.message == "加油"
    assert (gift.match_status.value, gift.matched_fen, gift.pool_id) == (
        "matched", amount_fen, day.pool_id)
    intent = platform.intent(order_id)
    assert intent.status.value == "succeeded" and intent.campaign_id == day.campaign_id
    assert gift.provider == intent.provider and gift.provider_txn_id == intent.provider_txn_id
    assert gift.payer_hash == intent.payer_hash and len(gift.payer_hash) == 32

    def books(s: Any) -> tuple[int, int, int, int]:
        pool = s.get_one(MatchPool, day.pool_id)
        donations = s.scalar(select(func.count()).select_from(Donation)
                             .where(Donation.payment_intent_id == order_id))
        return (pool.remaining_fen, ledger.balance(s, ledger.match_pool(day.pool_id)),
                ledger.balance(s, ledger.project_fund(platform.project_id)), int(donations))
    assert platform.read(books) == (BUDGET - amount_fen, BUDGET - amount_fen, 2 * amount_fen, 0)
    platform.books_are_sound()
    return gift


def shown_everywhere(platform: Platform, order_id: str, amount_fen: int) -> None:
    """The ``gifts`` view and its readers show the gift: once, paid, as a giving-day gift."""
    def go(s: Any) -> tuple[Any, ...]:
        row = s.get_one(Gift, order_id)
        totals = project_totals(session=s, project_ids=[platform.project_id])
        return (row.kind.value, row.status.value, row.amount_fen, row.matched_fen,
                totals[platform.project_id].raised_fen, totals[platform.project_id].donations)
    assert platform.read(go) == ("giving_day", "paid", amount_fen, amount_fen, 2 * amount_fen, 1)
    listed = requests.get(f"{platform.url}/api/v1/projects/{platform.project_id}/donations",
                          timeout=10).json()
    assert listed["total"] == 1 and listed["items"][0]["amount_fen"] == amount_fen
    project = requests.get(f"{platform.url}/api/v1/projects/{platform.project_id}",
                           timeout=10).json()
    assert project["raised_fen"] == 2 * amount_fen
    # The donor's order and the gift's match, through the API.
    order = platform.order(order_id)
    assert (order["status"], order["gift_url"]) == ("succeeded", f"/gifts/orders/{order_id}")
    match = requests.get(f"{platform.url}/api/v1/campaigns/gifts/{order_id}",
                         headers=platform.auth, timeout=10).json()
    assert (match["order_id"], match["match_status"], match["matched_fen"]) == (
        order_id, "matched", amount_fen)


class FailOnce:
    """The engine's batch fails once (a disk full, a bug): nothing of it is committed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failed = 0
        real = engine_module.apply_batch

        def apply_batch(session: Any, gifts: Any, **kw: Any) -> Any:
            if not self.failed:
                self.failed += 1
                raise RuntimeError("the batch could not be written")
            return real(session, gifts, **kw)

        monkeypatch.setattr(engine_module, "apply_batch", apply_batch)


# --- WeChat Pay ----------------------------------------------------------------------------


def test_a_giving_day_gift_is_written_by_the_engine_once_under_duplicate_callbacks(
        wechat: tuple[WeChatPayWorld, Day]) -> None:
    world, day = wechat
    world.emulator.set_faults(callbacks={"duplicates": 3})
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    assert world.platform.intent(order_id).campaign_id == day.campaign_id
    assert gifts_of(world.platform, order_id) == []  # nothing credited before the money
    assert world.phone_pays().status_code == 303
    world.settle()
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)
    # Four deliveries of one event: stored once, every copy accepted (204).
    assert world.platform.outcomes(order_id) == ["to_engine"]
    sent = [c["attempts"] for c in world.emulator.callbacks()["sent"]]
    assert sent == [[204]] * 4


def test_a_failed_engine_batch_answers_not_accepted_and_the_retry_credits(
        wechat: tuple[WeChatPayWorld, Day], monkeypatch: pytest.MonkeyPatch) -> None:
    world, day = wechat
    fault = FailOnce(monkeypatch)
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    world.phone_pays()
    world.settle()
    assert fault.failed == 1
    # Refused (WeChat Pay's FAIL, 500) while the gift was not written; WeChat Pay retried the
    # same event, already recorded, and the order went to the engine again.
    [sent] = world.emulator.callbacks()["sent"]
    assert sent["attempts"] == [500, 204]
    assert world.platform.outcomes(order_id) == ["to_engine"]
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)


def test_a_stopped_engine_refuses_until_the_provider_retries_later(
        wechat: tuple[WeChatPayWorld, Day]) -> None:
    world, day = wechat
    app = world.platform.app
    start_engine(app).stop()  # shutting down: it takes no more gifts
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    world.phone_pays()
    world.settle()
    [sent] = world.emulator.callbacks()["sent"]
    assert sent["attempts"] == [500, 500, 500]  # every try refused: nothing written
    assert gifts_of(world.platform, order_id) == []
    assert world.platform.intent(order_id).status.value == "succeeded"  # paid, recorded
    world.platform.books_are_sound()
    # The next process runs an engine; WeChat Pay's later retry (the same event) credits it.
    stop_engine(app)
    world.emulator.replay(sent["event_id"])
    world.settle()
    assert world.emulator.callbacks()["sent"][-1]["attempts"] == [204]
    assert world.platform.outcomes(order_id) == ["to_engine"]
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)


# --- Alipay --------------------------------------------------------------------------------


def test_a_giving_day_gift_through_alipay_the_donor_back_first_and_a_failed_batch(
        alipay: tuple[AlipayWorld, Day], monkeypatch: pytest.MonkeyPatch) -> None:
    world, day = alipay
    # The notify is held; the engine's first batch fails.
    world.emulator.outbox.set_faults(hold=True)
    fault = FailOnce(monkeypatch)
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    assert world.phone_pays().status_code == 303
    monkeypatch.setattr(gifts_api, "QUERY_AFTER", dt.timedelta(0))
    # Back first: the order query finds it paid and hands it to the engine, which fails.
    answer = requests.get(f"{world.platform.url}/api/v1/gifts/orders/{order_id}",
                          headers=world.platform.auth, timeout=10)
    assert fault.failed == 1
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "engine_unavailable"
    assert gifts_of(world.platform, order_id) == []
    # Alipay's notify then arrives: the order is paid already, and goes to the engine again.
    world.emulator.outbox.set_faults()
    assert world.emulator.outbox.release() == 1
    world.settle()
    [notify] = world.notifies("payment")
    assert world.answers(notify) == [[200]]  # "success"
    assert world.platform.outcomes(order_id) == ["to_engine", "already_applied"]
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)
    # A replay of the notify: a duplicate the engine refuses to write twice.
    world.emulator.replay(notify.notify_id)
    world.settle()
    assert world.answers(notify) == [[200], [200]]
    written_once_and_matched(world.platform, day, order_id, 5000)


def test_a_failed_engine_batch_answers_alipay_fail_and_its_retry_credits(
        alipay: tuple[AlipayWorld, Day], monkeypatch: pytest.MonkeyPatch) -> None:
    world, day = alipay
    fault = FailOnce(monkeypatch)
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    world.phone_pays()
    world.settle()
    [notify] = world.notifies("payment")
    assert fault.failed == 1 and world.answers(notify) == [[400, 200]]  # "fail", "success"
    assert world.platform.outcomes(order_id) == ["to_engine"]
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)


def test_a_lost_callback_and_a_failed_hand_over_the_donors_next_look_writes_the_gift(
        wechat: tuple[WeChatPayWorld, Day], monkeypatch: pytest.MonkeyPatch) -> None:
    """The one path no provider retries: the callback is lost, the order query finds the
    payment and marks the order paid, and the engine fails to write the gift. The order is no
    longer open, so a later look must still hand it to the engine (it was never written)."""
    world, day = wechat
    world.emulator.set_faults(callbacks={"drop": True})
    fault = FailOnce(monkeypatch)
    monkeypatch.setattr(gifts_api, "QUERY_AFTER", dt.timedelta(0))
    order_id = world.checkout(amount_fen=5000, campaign_id=day.campaign_id)
    world.phone_pays()
    world.settle()
    look = requests.get(f"{world.platform.url}/api/v1/gifts/orders/{order_id}",
                        headers=world.platform.auth, timeout=10)
    assert (look.status_code, fault.failed) == (503, 1)
    assert world.platform.intent(order_id).status.value == "succeeded"
    assert gifts_of(world.platform, order_id) == []
    # The donor looks again: the paid order's gift is handed over again, and written.
    assert world.platform.order(order_id)["status"] == "succeeded"
    written_once_and_matched(world.platform, day, order_id, 5000)
    shown_everywhere(world.platform, order_id, 5000)
    assert world.platform.outcomes(order_id) == ["to_engine"]
    # Once written, nothing is handed over again (the order is settled).
    app = world.platform.app
    assert flows.settle_by_query(
        database=world.platform.db, gateway=app.state.providers.gateway("wechatpay"),
        intent_id=order_id, secret_key="test-secret",
        hash_payer=app.state.orders.payer_hash) is None
