"""Giving-day checkout end to end through the app, with the real group-commit engine running:
order → sandbox payment → signed callback → gift credited (and matched) once it is durable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.campaigns import orders
from shanju.campaigns.models import CampaignBatch, CampaignGift, MatchPool
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.payments.providers import SandboxProvider
from tests.factories import make_campaign, make_org, make_pool, make_project, make_user
from tests.projects.helpers import api_token, sign_in


@dataclass
class Day:
    campaign_id: int
    project_id: int
    outsider_id: int
    pool_id: int
    donor_id: int
    other_id: int
    auth: dict[str, str]
    other_auth: dict[str, str]


@pytest.fixture
def day(db: Database) -> Day:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        outsider = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=1_000_000)
        donor = make_user(s, display_name="张三丰")
        other = make_user(s, display_name="李四")
        ids = (campaign.id, project.id, outsider.id, pool.id, donor.id, other.id)
    return Day(*ids, auth=api_token(db, ids[4]), other_auth=api_token(db, ids[5]))


@pytest.fixture
def live(client: TestClient) -> Iterator[TestClient]:
    """The client of an app whose lifespan started the real engine."""
    assert client.app.state.engine is not None  # type: ignore[attr-defined]
    yield client


def order(client: TestClient, day: Day, key: str = "k1", **overrides: Any) -> Any:
    body = {"project_id": day.project_id, "amount_fen": 5_000, "message": "加油",
            "province": "浙江"}
    body.update(overrides)
    return client.post(f"/api/v1/campaigns/{day.campaign_id}/orders", json=body,
                       headers={**day.auth, "Idempotency-Key": key})


def table_counts(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as s:
        return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (CampaignGift, CampaignBatch, JournalEntry)}


def test_order_pay_callback_credits_and_matches_the_gift(
    live: TestClient, day: Day, db: Database, settings: Any
) -> None:
    before = table_counts(db)
    created = order(live, day)
    assert created.status_code == 201, created.text
    o = created.json()
    assert o["amount_fen"] == 5_000 and o["donor_name"] == "张三丰" and o["token"]
    assert table_counts(db) == before  # an order writes nothing

    paid = live.post("/api/v1/payments/sandbox/orders/complete", json={"token": o["token"]},
                     headers=day.auth)
    assert paid.status_code == 200, paid.text
    result = paid.json()
    assert result["outcome"] == "credited" and result["order_id"] == o["order_id"]
    assert result["gift_url"] == f"/campaigns/gifts/{o['order_id']}"

    # Answered after the batch was durable: a fresh read sees the gift and its money.
    with db.transaction(write=False) as s:
        gift = s.scalar(select(CampaignGift).where(CampaignGift.order_id == o["order_id"]))
        assert gift is not None
        assert (gift.amount_fen, gift.donor_id, gift.province, gift.message) == (
            5_000, day.donor_id, "浙江", "加油")
        assert gift.matched_fen == result["matched_fen"]
        assert gift.match_status.value == result["match_status"]
        signer = orders.OrderSigner(settings.secret_key)
        assert gift.payer_hash == signer.payer_hash(f"sbx-payer-{day.donor_id}")  # never raw
        assert gift.device_hash == signer.device_hash(f"sbx-device-{day.donor_id}")
        fund = ledger.balance(s, ledger.project_fund(day.project_id))
        assert fund == 5_000 + gift.matched_fen
        pool = s.get_one(MatchPool, day.pool_id)
        assert pool.remaining_fen == 1_000_000 - gift.matched_fen
        assert ledger.balance(s, ledger.match_pool(day.pool_id)) == pool.remaining_fen
        assert ledger.check(s).ok
    # The factory's pool matches 1:1 by default.
    assert result["match_status"] == "matched" and result["matched_fen"] == 5_000


def test_the_same_idempotency_key_gives_the_same_order(live: TestClient, day: Day) -> None:
    first, again = order(live, day, "same"), order(live, day, "same")
    other = order(live, day, "another")
    assert first.json()["order_id"] == again.json()["order_id"]
    assert other.json()["order_id"] != first.json()["order_id"]
    # Another donor's same key is another order.
    theirs = live.post(f"/api/v1/campaigns/{day.campaign_id}/orders",
                       json={"project_id": day.project_id, "amount_fen": 5_000},
                       headers={**day.other_auth, "Idempotency-Key": "same"})
    assert theirs.json()["order_id"] != first.json()["order_id"]


def test_a_duplicate_callback_is_credited_once(live: TestClient, day: Day, db: Database,
                                               settings: Any) -> None:
    o = order(live, day).json()
    sandbox = SandboxProvider(settings.sandbox_secret)
    body, headers = sandbox.build_order_callback(
        order_id=o["order_id"], amount_fen=5_000, attach=o["token"], payer="p1", device="d1")
    url = "/api/v1/payments/callbacks/sandbox/orders"
    first = live.post(url, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["outcome"] == "credited", first.text
    # The provider retries (same or re-signed callback), and the donor presses pay again.
    again = live.post(url, content=body, headers=headers)
    body2, headers2 = sandbox.build_order_callback(
        order_id=o["order_id"], amount_fen=5_000, attach=o["token"], payer="p1", device="d1")
    resigned = live.post(url, content=body2, headers=headers2)
    repaid = live.post("/api/v1/payments/sandbox/orders/complete", json={"token": o["token"]},
                       headers=day.auth)
    for response in (again, resigned, repaid):
        assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CampaignGift)) == 1
        assert ledger.balance(s, ledger.donor_clearing("sandbox")) == -5_000
        assert ledger.check(s).ok


@pytest.mark.parametrize("attack", ["signature", "secret", "token", "amount", "other_order"])
def test_an_untrustworthy_callback_is_refused_and_stores_nothing(
    live: TestClient, day: Day, db: Database, settings: Any, attack: str
) -> None:
    o = order(live, day).json()
    before = table_counts(db)
    sandbox = SandboxProvider("attacker" if attack == "secret" else settings.sandbox_secret)
    token = o["token"]
    if attack == "token":  # a token the attacker signed for a ¥0.01 order
        forged = orders.OrderSigner("attacker").sign(orders.Order(
            order_id=o["order_id"], campaign_id=day.campaign_id, project_id=day.project_id,
            donor_id=day.donor_id, donor_name="x", anonymous=False, message="", province=None,
            amount_fen=1, expires_at=2**31))
        token = forged
    amount = 1 if attack in ("amount", "token") else 5_000
    order_id = "o_someoneelse" if attack == "other_order" else o["order_id"]
    body, headers = sandbox.build_order_callback(
        order_id=order_id, amount_fen=amount, attach=token, payer="p", device="d")
    if attack == "signature":
        body = body.replace(b'"payer":"p"', b'"payer":"q"')
    response = live.post("/api/v1/payments/callbacks/sandbox/orders", content=body,
                         headers=headers)
    assert response.status_code == 400, response.text
    expected = {"signature": "invalid_signature", "secret": "invalid_signature",
                "token": "invalid_order_token", "amount": "amount_mismatch",
                "other_order": "order_mismatch"}[attack]
    assert response.json()["error"]["code"] == expected
    assert table_counts(db) == before


def test_refused_orders_and_payments(live: TestClient, day: Day, db: Database) -> None:
    assert order(live, day, project_id=day.outsider_id).json()["error"]["code"] == \
        "project_not_enrolled"
    assert order(live, day, amount_fen=0).status_code == 422
    no_key = live.post(f"/api/v1/campaigns/{day.campaign_id}/orders",
                       json={"project_id": day.project_id, "amount_fen": 100},
                       headers=day.auth)
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    anonymous = live.post(f"/api/v1/campaigns/{day.campaign_id}/orders",
                          json={"project_id": day.project_id, "amount_fen": 100},
                          headers={"Idempotency-Key": "k"})
    assert anonymous.status_code == 401
    o = order(live, day).json()
    # Only the donor of an order pays it on the sandbox cashier.
    theirs = live.post("/api/v1/payments/sandbox/orders/complete", json={"token": o["token"]},
                       headers=day.other_auth)
    assert theirs.status_code == 403 and theirs.json()["error"]["code"] == "not_your_order"
    bad = live.post("/api/v1/payments/sandbox/orders/complete",
                    json={"token": o["token"] + "x"}, headers=day.auth)
    assert bad.json()["error"]["code"] == "invalid_order_token"
    assert table_counts(db)["campaign_gifts"] == 0


def test_the_giving_day_pages(live: TestClient, day: Day, db: Database) -> None:
    csrf = sign_in(live, db, day.donor_id)
    page = live.get(f"/projects/{day.project_id}")
    action = f'action="/campaigns/{day.campaign_id}/projects/{day.project_id}/donate"'
    assert action in page.text and "giving-day-banner" in page.text
    # A project outside the campaign keeps the ordinary donate form.
    assert f'action="/projects/{day.outsider_id}/donate"' in live.get(
        f"/projects/{day.outsider_id}").text

    form = {"csrf_token": csrf, "amount": "20", "custom_amount": "", "donor_name": "张三丰",
            "message": "", "province": "北京", "idempotency_key": "page-1"}
    bad = live.post(f"/campaigns/{day.campaign_id}/projects/{day.project_id}/donate",
                    data={**form, "custom_amount": "abc"})
    assert bad.status_code == 422 and 'data-code="amount_not_a_number"' in bad.text
    cashier = live.post(f"/campaigns/{day.campaign_id}/projects/{day.project_id}/donate",
                        data=form)
    assert cashier.status_code == 200 and 'name="token"' in cashier.text
    assert table_counts(db)["campaign_gifts"] == 0
    token = cashier.text.split('name="token" value="')[1].split('"')[0]
    done = live.post("/pay/sandbox/orders", data={"csrf_token": csrf, "token": token,
                                                   "action": "pay"}, follow_redirects=False)
    assert done.status_code == 303
    thanks = live.get(done.headers["location"])
    assert thanks.status_code == 200
    assert 'data-match-status="matched"' in thanks.text
    with db.transaction(write=False) as s:
        gift = s.scalars(select(CampaignGift)).one()
        assert f"/campaigns/gifts/{gift.order_id}" in thanks.text
        assert (gift.amount_fen, gift.matched_fen) == (2_000, 2_000)
    # Another donor cannot see it.
    sign_in(live, db, day.other_id)
    assert live.get(done.headers["location"]).status_code == 404
    en = live.get(f"/campaigns/{day.campaign_id}/projects/{day.project_id}/donate?lang=en"
                  "&custom_amount=66.6&message=hi")
    assert "Giving day" in en.text
    # Choices kept through sign-in come back; the rest of the form keeps its defaults.
    assert 'value="66.6"' in en.text and 'value="hi"' in en.text and "李四" in en.text


def test_unknown_provider_and_a_non_order_provider_path(live: TestClient) -> None:
    response = live.post("/api/v1/payments/callbacks/nope/orders", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_provider"


def test_with_the_escrow_writer_a_gift_is_credited_once_and_its_escrow_returned(
        settings: Any, db: Database, day: Day) -> None:
    # SHANJU_GIVING_DAY_WRITER=escrow: the app's engine spends a lease of the caps and pools
    # (several server processes write at once); the same gift, once, in the same ledger.
    from shanju.app import create_app
    from shanju.campaigns.escrow_writer import EscrowEngine
    from shanju.transparency import sequencer
    from shanju.transparency.check import check as transparency_check

    app = create_app(settings.model_copy(update={"giving_day_writer": "escrow"}), database=db)
    with TestClient(app) as c:
        assert isinstance(c.app.state.engine, EscrowEngine)  # type: ignore[attr-defined]
        o = order(c, day).json()
        paid = c.post("/api/v1/payments/sandbox/orders/complete", json={"token": o["token"]},
                      headers=day.auth)
        assert paid.status_code == 200 and paid.json()["outcome"] == "credited", paid.text
        again = c.post("/api/v1/payments/sandbox/orders/complete",
                       json={"token": o["token"]}, headers=day.auth)
        assert again.json()["outcome"] == "duplicate"
    sequencer.drain(db)
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CampaignGift)) == 1
        assert ledger.balance(s, ledger.project_fund(day.project_id)) == 10_000
        pool = s.get_one(MatchPool, day.pool_id)
        assert ledger.balance(s, ledger.match_pool(day.pool_id)) == pool.remaining_fen
        assert pool.remaining_fen == 1_000_000 - 5_000  # the lease gave the rest back
        assert ledger.check(s).ok
        assert transparency_check(s).ok


def test_the_engine_runs_with_the_app_and_is_stopped_at_shutdown(app: Any) -> None:
    with TestClient(app) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        assert engine is not None and engine.running
    assert app.state.engine is None and not engine.running
