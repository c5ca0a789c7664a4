"""The notification intake at a giving day's peak (``gifts/intake.py``), end to end through the
WeChat Pay emulator on SQLite and PostgreSQL.

A giving-day order's TRANSACTION.SUCCESS goes through ``NotifyLane`` → the production gateway
(signature, decryption) → a read of the order → the group-commit engine, whose batch records the
event, marks the order paid and writes the gift: no write transaction of the notification's
own. Duplicates, a mismatch, an engine that cannot write, and the documented route answering
the same way as the lane.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
from shanju.gifts.intake import NotifyLane
from shanju.ledger import service as ledger
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.emulators.wechatpay import WeChatPayEmulator, create_app, setup
from shanju.payments.gateway import Gateway
from shanju.payments.wechatpay import WeChatPayGateway
from shanju.projects.models import Project
from tests.factories import make_campaign, make_pool
from tests.gifts.pipeline import Platform, serve_platform
from tests.serving import free_socket, uvicorn_thread

SUB = "1900000109"
OPENID = "oPayerOfThePeakIntakeTest000001"
BUDGET = 1_000_00


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's keys, made by the module's first setup() and kept for the others."""
    return tmp_path_factory.mktemp("wechatpay-keys")


class Day:
    """The platform, the emulator, and a live giving day with a 1:1 pool."""

    def __init__(self, platform: Platform, emulator: WeChatPayEmulator) -> None:
        self.platform = platform
        self.emulator = emulator

        def go(s: Any) -> tuple[int, int]:
            project = s.get_one(Project, platform.project_id)
            campaign = make_campaign(s, projects=[project])
            pool = make_pool(s, campaign=campaign, budget_fen=BUDGET, params={"ratio_num": 1})
            return campaign.id, pool.id
        self.campaign_id, self.pool_id = platform.read(go)
        self.pay_url = ""

    def checkout(self, amount_fen: int = 5000, key: str = "k1") -> str:
        answer = self.platform.give("wechat_h5", amount_fen=amount_fen, key=key,
                                    campaign_id=self.campaign_id)
        assert answer.status_code == 201, answer.text
        self.pay_url = answer.json()["pay"]["url"]
        order_id: str = answer.json()["order_id"]
        return order_id

    def phone_pays(self) -> None:
        page = requests.get(self.pay_url, timeout=10)
        hidden = re.search(r'name="redirect_url" value="([^"]*)"', page.text)
        assert hidden is not None
        paid = requests.post(self.pay_url, data={
            "redirect_url": hidden.group(1).replace("&amp;", "&"), "openid": OPENID},
            allow_redirects=False, timeout=10)
        assert paid.status_code == 303

    def settle(self) -> None:
        self.emulator.outbox.wait_idle()

    def attempts(self) -> list[list[int]]:
        return [c["attempts"] for c in self.emulator.callbacks()["sent"]]

    def gifts(self, order_id: str) -> list[tuple[int, int, str, str]]:
        return list(self.platform.read(lambda s: [
            (g.amount_fen, g.matched_fen, g.provider_txn_id, g.payer_hash)
            for g in s.scalars(select(CampaignGift).where(CampaignGift.order_id == order_id))]))

    def credited_once(self, order_id: str, amount_fen: int = 5000) -> None:
        """One gift, matched once, the order paid with the provider's transaction and the
        payer's hash, no ordinary donation; the books and the transparency log sound."""
        intent = self.platform.intent(order_id)
        assert intent.status.value == "succeeded" and intent.provider_txn_id
        assert len(intent.payer_hash) == 32 and OPENID not in intent.payer_hash
        assert self.gifts(order_id) == [(amount_fen, amount_fen, intent.provider_txn_id,
                                         intent.payer_hash)]

        def books(s: Any) -> tuple[int, int, int]:
            donations = s.scalar(select(func.count()).select_from(Donation)
                                 .where(Donation.payment_intent_id == order_id))
            pool = s.get_one(MatchPool, self.pool_id)
            return (int(donations), pool.remaining_fen,
                    ledger.balance(s, ledger.match_pool(self.pool_id)))
        assert self.platform.read(books) == (0, BUDGET - amount_fen, BUDGET - amount_fen)
        self.platform.books_are_sound()


@pytest.fixture
def day(db: Database, tmp_path: Path, key_dir: Path) -> Iterator[Day]:
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    emulator, config = setup(base, key_dir, sub_merchants={SUB: "绿水青山公益基金会"},
                             outbox=Outbox(retry_delays=(0.05, 0.05)))

    def gateways(_platform_url: str) -> dict[str, Gateway]:
        return {"wechatpay": WeChatPayGateway(config)}

    with uvicorn_thread(create_app(emulator), sock), serve_platform(
            db, tmp_path, gateways=gateways,
            merchants={"wechatpay": {"merchant_id": SUB}}) as platform:
        world = Day(platform, emulator)
        try:
            yield world
        finally:
            world.settle()
            stop_engine(platform.app)


def test_a_giving_day_notification_is_recorded_by_the_engine_once_under_duplicates(
        day: Day) -> None:
    day.emulator.set_faults(callbacks={"duplicates": 3})
    order_id = day.checkout()
    day.phone_pays()
    day.settle()
    # Four deliveries of one event, all accepted (204): one event stored — by the engine's
    # batch ("to_engine": it paid the order) — one gift, one match.
    assert day.attempts() == [[204]] * 4
    assert day.platform.outcomes(order_id) == ["to_engine"]
    day.credited_once(order_id)


def test_a_second_notification_of_a_paid_order_is_recorded_and_credits_nothing(
        day: Day) -> None:
    order_id = day.checkout()
    day.phone_pays()
    day.settle()
    day.emulator.notify(order_id)  # the same payment under a new event id
    day.settle()
    assert day.attempts() == [[204], [204]]
    assert day.platform.outcomes(order_id) == ["to_engine", "already_applied"]
    day.credited_once(order_id)


def test_a_wrong_amount_is_recorded_by_its_own_transaction_and_not_credited(
        day: Day) -> None:
    order_id = day.checkout(amount_fen=10000)
    day.emulator.notify(order_id, amount_fen=1)
    day.settle()
    assert day.platform.outcomes(order_id) == ["amount_mismatch"]
    assert day.platform.intent(order_id).status.value == "requires_payment"
    assert day.gifts(order_id) == []
    # The real payment then comes through the peak path.
    day.phone_pays()
    day.settle()
    assert day.platform.outcomes(order_id) == ["amount_mismatch", "to_engine"]
    day.credited_once(order_id, 10000)


def test_a_stopped_engine_records_the_payment_and_the_providers_retry_credits(
        day: Day) -> None:
    app = day.platform.app
    start_engine(app).stop()  # shutting down: it takes no more gifts
    order_id = day.checkout()
    day.phone_pays()
    day.settle()
    # Every try "not accepted" (WeChat Pay's 500 FAIL); the payment itself is recorded the
    # ordinary way (apply_report): the order is paid, the event stored, no gift yet.
    [sent] = day.emulator.callbacks()["sent"]
    assert sent["attempts"] == [500, 500, 500]
    assert day.platform.intent(order_id).status.value == "succeeded"
    assert day.platform.outcomes(order_id) == ["to_engine"]
    assert day.gifts(order_id) == []
    day.platform.books_are_sound()
    # A later retry of the same event, with an engine running: the gift, once.
    stop_engine(app)
    day.emulator.replay(sent["event_id"])
    day.settle()
    assert day.emulator.callbacks()["sent"][-1]["attempts"] == [204]
    assert day.platform.outcomes(order_id) == ["to_engine"]
    day.credited_once(order_id)


def test_a_failed_batch_answers_not_accepted_and_the_retry_credits(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_module.apply_batch
    failed: list[int] = []

    def apply_batch(session: Any, gifts: Any, **kw: Any) -> Any:
        if not failed:
            failed.append(1)
            raise RuntimeError("the batch could not be written")
        return real(session, gifts, **kw)

    monkeypatch.setattr(engine_module, "apply_batch", apply_batch)
    order_id = day.checkout()
    day.phone_pays()
    day.settle()
    assert failed == [1] and day.attempts() == [[500, 204]]
    assert day.platform.outcomes(order_id) == ["to_engine"]
    day.credited_once(order_id)


def test_the_route_answers_as_the_lane(day: Day) -> None:
    """Without NotifyLane the documented FastAPI route takes the same notifications and
    gives the same answers: accepted (204, empty), forged (500 FAIL)."""
    app = day.platform.app
    app.user_middleware = [m for m in app.user_middleware if m.cls is not NotifyLane]
    app.middleware_stack = None  # rebuilt, without the lane, on the next request
    order_id = day.checkout()
    day.phone_pays()
    day.settle()
    assert day.attempts() == [[204]]
    assert day.platform.outcomes(order_id) == ["to_engine"]
    day.credited_once(order_id)
    forged = requests.post(f"{day.platform.url}/api/v1/payments/notify/wechatpay",
                           data=b"{}", headers={"Wechatpay-Signature": "x"}, timeout=10)
    assert forged.status_code == 500 and forged.json()["code"] == "FAIL"
    unknown = requests.post(f"{day.platform.url}/api/v1/payments/notify/nobody", data=b"{}",
                            timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_provider"


def test_the_lane_answers_what_it_does_not_serve_through_the_app(day: Day) -> None:
    unknown = requests.post(f"{day.platform.url}/api/v1/payments/notify/nobody", data=b"{}",
                            timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_provider"
    large = requests.post(f"{day.platform.url}/api/v1/payments/notify/wechatpay",
                          data=b"x" * (64 * 1024 + 1), timeout=10)
    assert large.status_code == 413
    assert large.json()["error"]["code"] == "body_too_large"
