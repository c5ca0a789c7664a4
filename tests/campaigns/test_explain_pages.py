"""The gift's match page and API ("why was my gift not matched?") and the reviewers' queue of
held matches, on gifts written directly (the engine's own path: test_fraud_engine.py)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts.models import Role
from shanju.campaigns.models import CampaignGift, MatchPool, MatchStatus
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.accounts.helpers import csrf, login
from tests.factories import (
    make_campaign,
    make_campaign_gift,
    make_org,
    make_pool,
    make_project,
    make_user,
)

PAYER = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@dataclass
class World:
    donor: str
    other_donor: str
    staff: str
    other_staff: str
    reviewer: str
    not_matched: str  # order ids
    held: str
    matched: str
    pool_id: int


def _world(db: Database) -> World:
    with db.transaction() as session:
        org = make_org(session)
        other_org = make_org(session)
        project = make_project(session, org=org, title="山区儿童过冬衣物")
        campaign = make_campaign(session, projects=[project])
        pool = make_pool(session, campaign=campaign, budget_fen=10_000_00)
        donor = make_user(session, display_name="王小明")
        other = make_user(session)
        staff = make_user(session, role=Role.ORG_STAFF, organization_id=org.id)
        other_staff = make_user(session, role=Role.ORG_STAFF, organization_id=other_org.id)
        reviewer = make_user(session, role=Role.REVIEWER)
        capped = make_campaign_gift(session, campaign=campaign, project=project, donor=donor,
                                    amount_fen=50_00, reason="donor_daily_cap",
                                    reason_params={"cap_fen": 999_00})
        held = make_campaign_gift(session, campaign=campaign, project=project, donor=donor,
                                  amount_fen=80_00, match_status="held", matched_fen=80_00,
                                  reason="shared_payer", pool=pool, payer_hash=PAYER,
                                  reason_params={"limit": 3, "allowed": 2})
        matched = make_campaign_gift(session, campaign=campaign, project=project, donor=donor,
                                     amount_fen=20_00, match_status="matched",
                                     matched_fen=20_00, pool=pool)
        return World(donor.email, other.email, staff.email, other_staff.email, reviewer.email,
                      capped.order_id, held.order_id, matched.order_id, pool.id)


def test_the_donor_reads_why_their_gift_was_not_matched(db: Database,
                                                        client: TestClient) -> None:
    w = _world(db)
    login(client, w.donor)
    page = client.get(f"/campaigns/gifts/{w.not_matched}")
    assert page.status_code == 200
    html = page.text
    assert "为什么我的捐赠没有获得配捐？" in html
    assert "已达每人每日配捐上限" in html
    assert "每位捐赠人每天最多可获得 ¥999 配捐" in html
    assert "山区儿童过冬衣物" in html and "王小明" in html  # their own name, unmasked
    assert 'data-reason="donor_daily_cap"' in html
    assert "For reviewers" not in html and "审核信息" not in html
    en = client.get(f"/campaigns/gifts/{w.not_matched}?lang=en").text
    assert "Why was my gift not matched?" in en and "at most ¥999 of matching a day" in en

    api = client.get(f"/api/v1/campaigns/gifts/{w.not_matched}?lang=en").json()
    assert api["reason"] == "donor_daily_cap"
    assert api["reason_params"] == {"cap_fen": 999_00}
    assert api["match_status"] == "none" and api["matched_fen"] == 0
    assert api["amount_fen"] == 50_00 and api["total_fen"] == 50_00
    assert "at most ¥999 of matching a day" in api["message"]
    assert api["reviewer_message"] is None


def test_a_held_match_shows_until_when(db: Database, client: TestClient) -> None:
    w = _world(db)
    login(client, w.donor)
    html = client.get(f"/campaigns/gifts/{w.held}").text
    assert "配捐公示中" in html and "公示期至" in html and "支付账户" in html
    assert PAYER not in html  # the donor never sees the hash
    api = client.get(f"/api/v1/campaigns/gifts/{w.held}").json()
    assert api["match_status"] == "held" and api["hold_until"]
    assert api["total_fen"] == 160_00


def test_others_cannot_see_a_gift(db: Database, client: TestClient) -> None:
    w = _world(db)
    page = client.get(f"/campaigns/gifts/{w.held}", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get(f"/api/v1/campaigns/gifts/{w.held}").status_code == 401
    for email in (w.other_donor, w.other_staff):
        client.cookies.clear()
        login(client, email)
        assert client.get(f"/campaigns/gifts/{w.held}").status_code == 404
        api = client.get(f"/api/v1/campaigns/gifts/{w.held}")
        assert api.status_code == 404 and api.json()["error"]["code"] == "gift_not_found"
    # An order id that does not exist reads the same as one that may not be seen.
    assert client.get("/api/v1/campaigns/gifts/o_nope").json()["error"]["code"] == \
        "gift_not_found"


def test_the_receiving_organizations_staff_see_the_masked_donor(db: Database,
                                                              client: TestClient) -> None:
    w = _world(db)
    login(client, w.staff)
    api = client.get(f"/api/v1/campaigns/gifts/{w.not_matched}").json()
    assert api["donor_name"] == "王**"
    assert api["reviewer_message"] is None


def test_reviewers_see_the_mechanics_and_a_short_hash(db: Database,
                                                      client: TestClient) -> None:
    w = _world(db)
    login(client, w.reviewer)
    html = client.get(f"/campaigns/gifts/{w.held}").text
    assert "审核信息" in html and "不在最先使用的 2 个账号之内" in html
    assert PAYER[:8] in html and PAYER not in html
    assert f"/review/campaigns/holds/{w.held}/release" in html
    api = client.get(f"/api/v1/campaigns/gifts/{w.held}?lang=en").json()
    assert "at least 3 donor accounts have paid with" in api["reviewer_message"]


def test_the_holds_queue_lists_held_matches_only_for_reviewers(db: Database,
                                                                client: TestClient) -> None:
    w = _world(db)
    login(client, w.donor)
    assert client.get("/review/campaigns/holds").status_code == 403
    assert client.get("/api/v1/campaigns/holds").status_code == 403
    client.cookies.clear()
    login(client, w.reviewer)
    html = client.get("/review/campaigns/holds").text
    assert f'data-order-id="{w.held}"' in html
    assert f'data-order-id="{w.not_matched}"' not in html
    assert f'data-order-id="{w.matched}"' not in html
    assert "王**" in html and "王小明" not in html
    assert PAYER[:8] in html and PAYER not in html
    page = client.get("/api/v1/campaigns/holds?lang=en").json()
    assert page["total"] == 1
    item = page["items"][0]
    assert item["order_id"] == w.held and item["reason"] == "shared_payer"
    assert item["payer_prefix"] == PAYER[:8] and item["donor_name"] == "王**"
    assert item["matched_fen"] == 80_00 and "Payment account" in item["reason_title"]


def test_a_reviewer_releases_a_held_match_to_the_pool(db: Database,
                                                      client: TestClient) -> None:
    w = _world(db)
    with db.transaction(write=False) as session:
        before = ledger.balance(session, ledger.match_pool(w.pool_id))
        assert ledger.balance(session, ledger.match_hold(w.pool_id)) == 80_00
    login(client, w.reviewer)
    # A release needs a reason: without one the queue says so and nothing changes.
    refused = client.post(f"/review/campaigns/holds/{w.held}/release",
                          data={"csrf_token": csrf(client), "reason": " "})
    assert refused.status_code == 422 and 'data-code="reason_required"' in refused.text
    assert f'data-order-id="{w.held}"' in refused.text
    with db.transaction(write=False) as session:
        assert ledger.balance(session, ledger.match_hold(w.pool_id)) == 80_00
    done = client.post(f"/review/campaigns/holds/{w.held}/release",
                       data={"csrf_token": csrf(client), "reason": "同一支付账户的多个账号"},
                       follow_redirects=False)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "配捐已退回企业配捐池" in page
    with db.transaction(write=False) as session:
        gift = session.scalars(select(CampaignGift).where(CampaignGift.order_id == w.held)).one()
        assert gift.match_status == MatchStatus.RELEASED
        pool = session.get(MatchPool, w.pool_id)
        assert pool is not None
        assert ledger.balance(session, ledger.match_pool(w.pool_id)) == before + 80_00
        assert pool.remaining_fen == before + 80_00
        assert ledger.balance(session, ledger.match_hold(w.pool_id)) == 0
        assert ledger.check(session).ok
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "campaigns.match.released")).one()
        assert entry.actor_id is not None and entry.data["reason"] == "同一支付账户的多个账号"
    # The donor is told; releasing twice is refused and changes nothing.
    again = client.post(f"/api/v1/campaigns/holds/{w.held}/release",
                        headers={"X-CSRF-Token": csrf(client)}, json={"reason": "again"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "match_not_held"
    client.cookies.clear()
    login(client, w.donor)
    html = client.get(f"/campaigns/gifts/{w.held}").text
    assert "公示配捐已退回" in html


def test_only_reviewers_release(db: Database, client: TestClient) -> None:
    w = _world(db)
    login(client, w.staff)
    refused = client.post(f"/api/v1/campaigns/holds/{w.held}/release",
                          headers={"X-CSRF-Token": csrf(client)}, json={"reason": "mine"})
    assert refused.status_code == 403
    with db.transaction(write=False) as session:
        gift = session.scalars(select(CampaignGift).where(CampaignGift.order_id == w.held)).one()
        assert gift.match_status == MatchStatus.HELD
