"""Each anti-fraud rule through the engine: gifts submitted with ``apply_batch`` (SQLite and
PostgreSQL), the match withheld or held with the right reason on the gift's row, and the
reason shown to the donor on their gift's page and in the API."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts.models import Role
from shanju.campaigns import fraud
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GiftResult, PaidGift, apply_batch
from shanju.campaigns.models import CampaignCounter, CampaignGift, MatchPool
from shanju.core.clock import CHINA_TZ
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.accounts.helpers import csrf, login
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)

PAYER = "c0ffee00" + "1" * 24
DEVICE = "dev1ce00" + "2" * 24


@dataclass
class Setup:
    campaign: int
    org: int
    projects: list[int]
    pool: int
    # When the gifts start: 10:00:00 China time on the campaign's first day (inside its
    # hours, and a whole minute for too_fast), whenever the test runs.
    t0: dt.datetime
    donors: dict[str, int] = field(default_factory=dict)  # email → user id


def _setup(db: Database, *, projects: int = 1, donors: int = 1,
           staff: bool = False) -> Setup:
    with db.transaction() as s:
        org = make_org(s)
        ps = [make_project(s, org=org) for _ in range(projects)]
        campaign = make_campaign(s, projects=ps)
        pool = make_pool(s, campaign=campaign, budget_fen=1_000_000_00)  # 1:1, no caps
        t0 = dt.datetime.combine(campaign.starts_on, dt.time(10, 0), tzinfo=CHINA_TZ)
        out = Setup(campaign.id, org.id, [p.id for p in ps], pool.id, t0)
        for n in range(donors):
            user = make_user(s, display_name=f"捐赠人{n}")
            out.donors[user.email] = user.id
        if staff:
            user = make_user(s, role=Role.ORG_STAFF, organization_id=org.id,
                             display_name="机构员工")
            out.donors[user.email] = user.id
    return out


def _gift(st: Setup, donor: int, *, project: int = 0, seconds: int = 0,
          amount: int = 100_00, payer: str = "", device: str = "") -> PaidGift:
    return make_paid_gift(campaign_id=st.campaign, project_id=st.projects[project],
                          donor_id=donor, amount_fen=amount,
                          paid_at=st.t0 + dt.timedelta(seconds=seconds),
                          payer_hash=payer, device_hash=device, donor_name="李四")


def _run(db: Database, gifts: list[PaidGift]) -> list[GiftResult]:
    with db.transaction() as s:
        return apply_batch(s, gifts, worker="test")


def _row(db: Database, order_id: str) -> CampaignGift:
    with db.transaction(write=False) as s:
        row = s.scalars(select(CampaignGift).where(CampaignGift.order_id == order_id)).one()
        s.expunge(row)
        return row


def _reconciles(db: Database) -> None:
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems


def _donor_sees(client: TestClient, email: str, order_id: str, *, code: str,
                zh: str, en: str) -> None:
    """The donor's page (zh-CN) and API (English) show the reason."""
    client.cookies.clear()
    login(client, email)
    page = client.get(f"/campaigns/gifts/{order_id}?lang=zh-CN")
    assert page.status_code == 200
    assert f'data-reason="{code}"' in page.text
    assert zh in page.text
    api = client.get(f"/api/v1/campaigns/gifts/{order_id}?lang=en").json()
    assert api["reason"] == code
    assert en in api["message"]


def test_staff_of_the_receiving_organization_get_no_match(db: Database,
                                                          client: TestClient) -> None:
    st = _setup(db, donors=1, staff=True)
    (donor_email, donor), (staff_email, staff) = st.donors.items()
    results = _run(db, [_gift(st, staff), _gift(st, donor, seconds=1)])
    assert [(r.outcome, r.matched_fen, r.match_status, r.reason) for r in results] == [
        ("credited", 0, "none", "staff_own_org"),
        ("credited", 100_00, "matched", ""),
    ]
    row = _row(db, results[0].order_id)
    assert (row.match_status, row.reason, row.matched_fen) == ("none", "staff_own_org", 0)
    with db.transaction(write=False) as s:  # the gift itself went to the project in full
        assert ledger.balance(s, ledger.project_fund(st.projects[0])) == 100_00 + 200_00
    _reconciles(db)
    _donor_sees(client, staff_email, results[0].order_id, code="staff_own_org",
                zh="但这些捐赠不参与配捐", en="own staff to its projects")
    del donor_email


def test_more_than_four_matched_gifts_a_minute_are_not_matched(db: Database,
                                                               client: TestClient) -> None:
    st = _setup(db, projects=6)
    ((email, donor),) = st.donors.items()
    # Four in one batch, two more in the next: the counters carry over between batches.
    first = _run(db, [_gift(st, donor, project=p, seconds=p * 5) for p in range(4)])
    later = _run(db, [_gift(st, donor, project=p, seconds=p * 5) for p in (4, 5)])
    assert [r.match_status for r in first] == ["matched"] * 4
    assert [(r.match_status, r.reason, r.matched_fen) for r in later] == \
        [("none", "too_fast", 0)] * 2
    row = _row(db, later[0].order_id)
    assert row.reason == "too_fast" and row.reason_params == {"limit": 4}
    # The next minute is matched again.
    (next_minute,) = _run(db, [_gift(st, donor, project=5, seconds=60)])
    assert next_minute.match_status == "matched"
    _reconciles(db)
    _donor_sees(client, email, later[0].order_id, code="too_fast",
                zh="每位捐赠人每分钟最多 4 笔捐赠可获得配捐",
                en="no more than 4 gifts a minute from one donor are matched")


def test_a_sum_split_into_many_gifts_is_matched_only_three_times(db: Database,
                                                                 client: TestClient) -> None:
    st = _setup(db, projects=2)
    ((email, donor),) = st.donors.items()
    results = [_run(db, [_gift(st, donor, seconds=120 * n, amount=25_00)])[0]
               for n in range(5)]
    assert [r.match_status for r in results] == ["matched"] * 3 + ["none"] * 2
    assert {r.reason for r in results[3:]} == {"split_gift"}
    row = _row(db, results[3].order_id)
    assert row.reason_params == {"limit": 3, "gift_number": 4} and row.matched_fen == 0
    # Another project the same day is another matter.
    (other,) = _run(db, [_gift(st, donor, project=1, seconds=600)])
    assert other.match_status == "matched"
    _reconciles(db)
    _donor_sees(client, email, results[3].order_id, code="split_gift",
                zh="这是您今天向该项目的第 4 笔捐赠",
                en="At most 3 gifts a day from one donor to the same project are matched")


def _shared(db: Database, client: TestClient, *, payer: str, device: str, code: str,
            zh: str, en: str) -> None:
    st = _setup(db, donors=4)
    emails, ids = list(st.donors), list(st.donors.values())
    results = _run(db, [_gift(st, d, seconds=10 * n, payer=payer, device=device)
                        for n, d in enumerate(ids)])
    assert [(r.match_status, r.reason, r.matched_fen) for r in results] == [
        ("matched", "", 100_00), ("matched", "", 100_00),
        ("held", code, 100_00), ("held", code, 100_00),
    ]
    third = _row(db, results[2].order_id)
    assert third.hold_until is not None
    assert third.reason_params == {"limit": 3, "allowed": 2}
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_hold(st.pool)) == 200_00
        # Held matches are not the project's yet: two gifts matched, four gifts paid.
        assert ledger.balance(s, ledger.project_fund(st.projects[0])) == 400_00 + 200_00
        counters = {c.key: c.value for c in s.scalars(select(CampaignCounter))}
    key = "f:p:" + payer[:16] if payer else "f:d:" + device[:16]
    assert counters[key] == ids[0] << 31 | ids[1]  # the first two accounts
    _reconciles(db)
    _donor_sees(client, emails[2], results[2].order_id, code=code, zh=zh, en=en)
    page = client.get(f"/campaigns/gifts/{results[2].order_id}?lang=zh-CN").text
    assert "配捐公示中" in page and "公示期至" in page
    # The first accounts' gifts are not held.
    api = client.get(f"/api/v1/campaigns/gifts/{results[2].order_id}").json()
    assert api["match_status"] == "held" and api["hold_until"]

    # A reviewer sees it in the queue and releases it to the pool; everything reconciles.
    with db.transaction() as s:
        reviewer = make_user(s, role=Role.REVIEWER)
        reviewer_email = reviewer.email
    client.cookies.clear()
    login(client, reviewer_email)
    queue = client.get("/api/v1/campaigns/holds").json()
    assert [i["order_id"] for i in queue["items"]] == [results[2].order_id,
                                                       results[3].order_id]
    assert queue["items"][0]["reason"] == code
    released = client.post(f"/api/v1/campaigns/holds/{results[2].order_id}/release",
                           headers={"X-CSRF-Token": csrf(client)},
                           json={"reason": "accounts created together"})
    assert released.status_code == 200, released.text
    assert released.json() == {"order_id": results[2].order_id, "match_status": "released",
                               "pool_id": st.pool, "released_fen": 100_00}
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_hold(st.pool)) == 100_00
        pool = s.get(MatchPool, st.pool)
        assert pool is not None and pool.remaining_fen == 1_000_000_00 - 300_00
    _reconciles(db)
    _donor_sees(client, emails[2], results[2].order_id, code=code, zh="公示配捐已退回",
                en="went back to the sponsor's pool after review")


def test_many_accounts_on_one_payment_account_are_held(db: Database,
                                                       client: TestClient) -> None:
    _shared(db, client, payer=PAYER, device="", code="shared_payer",
            zh="您付款使用的支付账户在本次公益日中被多个捐赠账号使用",
            en="The payment account you paid with has been used by several donor accounts")


def test_many_accounts_on_one_device_are_held(db: Database, client: TestClient) -> None:
    _shared(db, client, payer="", device=DEVICE, code="shared_device",
            zh="您捐赠使用的设备在本次公益日中被多个捐赠账号使用",
            en="The device you gave from has been used by several donor accounts")


def test_anti_fraud_counters_are_the_modules_keys(db: Database) -> None:
    st = _setup(db)
    ((_, donor),) = st.donors.items()
    g = _gift(st, donor, payer=PAYER, device=DEVICE)
    _run(db, [g])
    with db.transaction(write=False) as s:
        stored = {c.key for c in s.scalars(select(CampaignCounter))
                  if c.key.startswith("f:")}
    facts = fraud.GiftFacts(
        order_id=g.order_id, campaign_id=st.campaign, project_id=st.projects[0],
        organization_id=st.org, donor_id=donor, donor_org_id=None, amount_fen=g.amount_fen,
        payer_hash=PAYER, device_hash=DEVICE, paid_at=g.paid_at)
    assert stored == set(fraud.counter_keys(facts))
