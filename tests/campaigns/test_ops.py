"""Operations on giving-day gifts and pools through the API, the pages and the CLI: refunding
a gift reverses its match, due held matches settle, a quadratic round is distributed once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from shanju import cli
from shanju.accounts.models import Role
from shanju.campaigns import fraud
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GiftResult, PaidGift, apply_batch
from shanju.campaigns.models import (
    CampaignGift,
    CampaignStatus,
    MatchPool,
    PoolKind,
    PoolStatus,
    QuadraticShare,
)
from shanju.core.clock import utcnow
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import (
    make_campaign,
    make_campaign_gift,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)
from tests.projects.helpers import api_token, sign_in

POOL = 100_000


def setup(db: Database) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=POOL)
        return {
            "campaign": campaign.id, "project": project.id, "pool": pool.id,
            "reviewer": make_user(s, role=Role.REVIEWER).id,
            "staff": make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id,
            "donor": make_user(s).id,
        }


def give(db: Database, ids: dict[str, Any], amount: int, **kw: Any) -> GiftResult:
    gift: PaidGift = make_paid_gift(campaign_id=ids["campaign"], project_id=ids["project"],
                                    amount_fen=amount, donor_id=ids["donor"], **kw)
    with db.transaction() as s:
        return apply_batch(s, [gift])[0]


def reconciles(db: Database) -> None:
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
        report = campaigns_check(s)
        assert report.ok, report.problems


def remaining(db: Database, pool_id: int) -> int:
    with db.transaction(write=False) as s:
        return s.get_one(MatchPool, pool_id).remaining_fen


@pytest.fixture
def holding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anti-fraud holds every match (whatever the real rules are)."""
    def hold(keys: fraud.Keys, counters: dict[str, int], **_: Any) -> fraud.Verdict:
        return fraud.Verdict(fraud.Action.HOLD, "shared_payer", {"accounts": 3})

    monkeypatch.setattr(fraud, "assess_keys", hold)  # what the engine asks


# --- refund ----------------------------------------------------------------------------------


def test_staff_refund_over_the_api_reverses_the_match(client: TestClient, db: Database) -> None:
    ids = setup(db)
    r = give(db, ids, 2_000)
    assert (r.match_status, r.matched_fen) == ("matched", 2_000)
    assert remaining(db, ids["pool"]) == POOL - 2_000
    url = f"/api/v1/campaigns/gifts/{r.order_id}/refund"

    donor = client.post(url, json={"reason": "不要了"}, headers=api_token(db, ids["donor"]))
    assert donor.status_code == 403, donor.text
    assert donor.json()["error"]["code"] == "refund_not_allowed"
    stranger = client.post(url, json={"reason": "x"},
                           headers=api_token(db, make_user_id(db)))
    assert stranger.status_code == 404
    empty = client.post(url, json={"reason": ""}, headers=api_token(db, ids["staff"]))
    assert empty.status_code == 422
    assert remaining(db, ids["pool"]) == POOL - 2_000  # refused input changed nothing

    staff = api_token(db, ids["staff"])
    done = client.post(url, json={"reason": "重复支付"}, headers=staff)
    assert done.status_code == 200, done.text
    assert done.json() == {"order_id": r.order_id, "status": "refunded",
                           "match_status": "reversed", "amount_fen": 2_000,
                           "match_reversed_fen": 2_000}
    assert remaining(db, ids["pool"]) == POOL
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 0
        assert ledger.balance(s, ledger.match_pool(ids["pool"])) == POOL
    reconciles(db)

    again = client.post(url, json={"reason": "again"}, headers=staff)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "gift_already_refunded"
    reconciles(db)


def make_user_id(db: Database, **kw: Any) -> int:
    with db.transaction() as s:
        return make_user(s, **kw).id


def test_refund_form_on_the_gift_page(client: TestClient, db: Database) -> None:
    ids = setup(db)
    r = give(db, ids, 1_500)
    page = f"/campaigns/gifts/{r.order_id}"
    sign_in(client, db, ids["donor"])
    assert 'id="refund"' not in client.get(page).text  # the donor may not refund
    csrf = sign_in(client, db, ids["reviewer"])
    html = client.get(page).text
    assert f'action="/campaigns/gifts/{r.order_id}/refund"' in html
    empty = client.post(f"{page}/refund", data={"csrf_token": csrf, "reason": " "})
    assert empty.status_code == 422
    assert 'data-code="reason_required"' in empty.text
    no_csrf = client.post(f"{page}/refund", data={"reason": "重复支付"})
    assert no_csrf.status_code == 403
    done = client.post(f"{page}/refund", data={"csrf_token": csrf, "reason": "重复支付"},
                       follow_redirects=False)
    assert done.status_code in (302, 303), done.text
    assert done.headers["location"].startswith(f"{page}?refunded=1")
    after = client.get(done.headers["location"])
    assert 'id="refunded"' in after.text and 'data-action="refund"' not in after.text
    again = client.post(f"{page}/refund", data={"csrf_token": csrf, "reason": "again"})
    assert again.status_code == 409 and 'data-code="gift_already_refunded"' in again.text
    assert remaining(db, ids["pool"]) == POOL
    reconciles(db)


# --- settle held matches -----------------------------------------------------------------------


def _expire_holds(db: Database) -> None:
    with db.transaction() as s:
        s.execute(update(CampaignGift).values(hold_until=utcnow() - dt.timedelta(days=1)))


def test_settle_over_the_api_moves_an_expired_hold_to_matched(
        client: TestClient, db: Database, holding: None) -> None:
    ids = setup(db)
    due = give(db, ids, 2_000)
    assert due.match_status == "held"
    _expire_holds(db)
    waiting = give(db, ids, 1_000)  # still in its notice period
    rev = api_token(db, ids["reviewer"])
    refused = client.post("/api/v1/campaigns/holds/settle",
                          headers=api_token(db, ids["staff"]))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "reviewer_only"
    settled = client.post("/api/v1/campaigns/holds/settle", headers=rev)
    assert settled.status_code == 200 and settled.json() == {"settled": 1}
    with db.transaction(write=False) as s:
        statuses = {g.order_id: g.match_status.value
                    for g in s.scalars(select(CampaignGift))}
        assert statuses == {due.order_id: "matched", waiting.order_id: "held"}
        assert ledger.balance(s, ledger.match_hold(ids["pool"])) == 1_000
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 2_000 + 2_000 + 1_000
    reconciles(db)
    assert client.post("/api/v1/campaigns/holds/settle", headers=rev).json() == {"settled": 0}


def test_settle_button_on_the_holds_page(client: TestClient, db: Database,
                                         holding: None) -> None:
    ids = setup(db)
    give(db, ids, 2_000)
    _expire_holds(db)
    csrf = sign_in(client, db, ids["reviewer"])
    assert 'action="/review/campaigns/holds/settle"' in client.get(
        "/review/campaigns/holds").text
    done = client.post("/review/campaigns/holds/settle", data={"csrf_token": csrf})
    assert done.status_code == 200
    assert 'id="settled"' in done.text and "1" in done.text
    assert 'class="hold-row"' not in done.text
    reconciles(db)


runner = CliRunner()


def test_cli_settle_command(db: Database, holding: None) -> None:
    ids = setup(db)
    give(db, ids, 2_000)
    get_settings.cache_clear()
    try:
        first = runner.invoke(cli.app, ["campaigns", "settle", "--database-url", db.url])
        assert first.exit_code == 0, first.output
        assert "Nothing to settle" in first.output
        _expire_holds(db)
        second = runner.invoke(cli.app, ["campaigns", "settle", "--database-url", db.url])
        assert second.exit_code == 0, second.output
        assert "Settled 1 held match" in second.output
    finally:
        get_settings.cache_clear()
    with db.transaction(write=False) as s:
        assert [g.match_status.value for g in s.scalars(select(CampaignGift))] == ["matched"]
    reconciles(db)


# --- quadratic funding -------------------------------------------------------------------------


def quadratic_round(db: Database, *, status: CampaignStatus = CampaignStatus.ENDED
                    ) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        p1, p2 = make_project(s, org=org), make_project(s, org=org)
        campaign = make_campaign(s, projects=[p1, p2], status=status)
        pool = make_pool(s, campaign=campaign, budget_fen=POOL, kind=PoolKind.QUADRATIC)
        for amount, project in ((100, p1), (400, p1), (900, p1), (10_000, p2)):
            make_campaign_gift(s, campaign=campaign, project=project, amount_fen=amount,
                               donor_id=make_user(s).id)
        return {"campaign": campaign.id, "pool": pool.id, "projects": [p1.id, p2.id],
                "admin": make_user(s, role=Role.ADMIN).id,
                "reviewer": make_user(s, role=Role.REVIEWER).id}


def test_distribute_over_the_api_shares_the_pool_once(client: TestClient,
                                                      db: Database) -> None:
    world = quadratic_round(db)
    url = f"/api/v1/campaigns/pools/{world['pool']}/distribute"
    reviewer = client.post(url, headers=api_token(db, world["reviewer"]))
    assert reviewer.status_code == 403
    assert reviewer.json()["error"]["code"] == "quadratic_forbidden"
    admin = api_token(db, world["admin"])
    done = client.post(url, headers=admin)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["distributed_fen"] == POOL == sum(s["share_fen"] for s in body["shares"])
    p1, p2 = world["projects"]
    # p1: (10+20+30)² = 3,600 against p2: 100² = 10,000 (√fen), so p1 gets 36/136.
    assert {s["project_id"]: s["contributors"] for s in body["shares"]} == {p1: 3, p2: 1}
    with db.transaction(write=False) as s:
        shares = s.scalars(select(QuadraticShare)).all()
        assert sum(x.share_fen for x in shares) == POOL
        pool = s.get_one(MatchPool, world["pool"])
        assert (pool.status, pool.remaining_fen) == (PoolStatus.CLOSED, 0)
        assert ledger.balance(s, ledger.match_pool(pool.id)) == 0
        assert ledger.check(s).ok  # (factory gifts have no batch entries: no campaigns check)
    again = client.post(url, headers=admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "quadratic_already_distributed"


def test_distribute_refused_before_the_campaign_ends(client: TestClient,
                                                     db: Database) -> None:
    world = quadratic_round(db, status=CampaignStatus.LIVE)
    url = f"/api/v1/campaigns/pools/{world['pool']}/distribute"
    refused = client.post(url, headers=api_token(db, world["admin"]))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "quadratic_round_not_ended"
    assert client.post("/api/v1/campaigns/pools/999999/distribute",
                       headers=api_token(db, world["admin"])).status_code == 404
    assert remaining(db, world["pool"]) == POOL


def test_distribute_button_and_shares_on_the_review_page(client: TestClient,
                                                          db: Database) -> None:
    world = quadratic_round(db)
    page = f"/review/campaigns/{world['campaign']}"
    action = f"/review/campaigns/{world['campaign']}/quadratic/{world['pool']}/distribute"
    csrf = sign_in(client, db, world["reviewer"])
    html = client.get(page).text
    assert action not in html  # only administrators distribute
    refused = client.post(action, data={"csrf_token": csrf})
    assert refused.status_code == 403 and 'quadratic_forbidden' in refused.text
    csrf = sign_in(client, db, world["admin"])
    assert action in client.get(page).text
    done = client.post(action, data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code in (302, 303), done.text
    html = client.get(page).text
    assert action not in html
    assert html.count('data-share="') == 2
    again = client.post(action, data={"csrf_token": csrf})
    assert again.status_code == 409 and "quadratic_already_distributed" in again.text
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
