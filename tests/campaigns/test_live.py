"""Live figures of a giving day: totals, pools, gifts per minute, leaderboards and a project's
match status, read from the stats the engine keeps (written here as an engine batch would)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from shanju.accounts.models import Role
from shanju.campaigns import live, quadratic
from shanju.campaigns.engine import GiftResult, apply_batch
from shanju.campaigns.models import (
    Campaign,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    PoolKind,
)
from shanju.core.clock import CHINA_TZ
from shanju.core.db import Database
from shanju.core.errors import NotFound
from shanju.projects.models import Project
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


@pytest.fixture
def now(china_today: dt.date) -> dt.datetime:
    """10:30:20 China time on the campaign's first day, today when the test runs (the tests
    place gifts around it and pass it as "now")."""
    return dt.datetime.combine(china_today, dt.time(10, 30, 20), tzinfo=CHINA_TZ)


def give(session: Session, campaign: Campaign, project: Project, amount_fen: int,
         at: dt.datetime, *, province: str | None = "北京") -> GiftResult:
    """A paid gift through the engine (one batch, in the caller's transaction)."""
    (result,) = apply_batch(session, [make_paid_gift(
        campaign_id=campaign.id, project_id=project.id, amount_fen=amount_fen, paid_at=at,
        province=province)], worker="test")
    return result


def _world(s: Session, now: dt.datetime) -> dict[str, int]:
    a = make_org(s, name="云南山区助学促进会")
    b = make_org(s, name="北京春苗公益基金会")
    p1 = make_project(s, org=a, title="乡村学校冬季温暖包")
    p2 = make_project(s, org=a, title="山区孩子营养午餐")
    p3 = make_project(s, org=b, title="先心病儿童救助")
    campaign = make_campaign(s, projects=[p1, p2, p3])
    # The small pool goes first and runs out on the first gift; the big one matches the rest:
    # from ¥30, at most ¥150 a gift.
    small = make_pool(s, campaign=campaign, budget_fen=50_000, sponsor_name="爱心企业甲",
                      priority=1)
    big = make_pool(s, campaign=campaign, budget_fen=1_000_000, sponsor_name="腾讯公益",
                    priority=2, params={"min_gift_fen": 3_000, "max_match_per_gift_fen": 15_000})
    minutes = dt.timedelta(minutes=1)
    matched = [
        give(s, campaign, p3, 50_000, at=now - 40 * minutes),
        give(s, campaign, p1, 10_000, at=now - 2 * minutes, province="云南"),
        give(s, campaign, p1, 5_000, at=now - 2 * minutes, province="云南"),
        give(s, campaign, p2, 2_000, at=now - minutes),
        give(s, campaign, p3, 40_000, at=now, province=None),
    ]
    assert [r.matched_fen for r in matched] == [50_000, 10_000, 5_000, 0, 15_000]
    return {"campaign": campaign.id, "p1": p1.id, "p2": p2.id, "p3": p3.id, "a": a.id,
            "b": b.id, "big": big.id, "small": small.id}


def test_totals_pools_and_gifts_per_minute(db: Database, now: dt.datetime) -> None:
    with db.transaction() as s:
        w = _world(s, now)
    with db.transaction(write=False) as s:
        totals = live.totals(session=s, campaign_id=w["campaign"])
        assert totals == live.Totals(gifts=5, raised_fen=107_000, matched_fen=80_000)
        assert totals.total_fen == 187_000

        small, big = live.pools(session=s, campaign_id=w["campaign"])  # by priority
        assert (big.pool_id, big.sponsor_name) == (w["big"], "腾讯公益")
        assert (big.remaining_fen, big.committed_fen, big.percent_left) == (970_000, 1_000_000, 97)
        assert (big.matched_fen, big.gifts, big.exhausted_at) == (30_000, 3, None)
        assert (small.remaining_fen, small.percent_left, small.matched_fen) == (0, 0, 50_000)
        assert small.exhausted_at is not None

        minutes = live.gifts_per_minute(session=s, campaign_id=w["campaign"], now=now)
        assert len(minutes) == live.CHART_MINUTES
        assert minutes[-1].label == "10:30" and minutes[0].label == "10:01"
        assert [m.gifts for m in minutes[-3:]] == [2, 1, 1]
        assert minutes[-3].raised_fen == 15_000
        # The gift 40 minutes ago is outside the chart's half hour.
        assert sum(m.gifts for m in minutes) == 4


def test_leaderboards_rank_by_money_with_names(db: Database, now: dt.datetime) -> None:
    with db.transaction() as s:
        w = _world(s, now)
    with db.transaction(write=False) as s:
        boards = live.leaderboards(session=s, campaign_id=w["campaign"])
    projects = boards["projects"]
    assert [(e.rank, e.key, e.raised_fen) for e in projects] == [
        (1, str(w["p3"]), 90_000), (2, str(w["p1"]), 15_000), (3, str(w["p2"]), 2_000)]
    assert projects[0].name == "先心病儿童救助" and projects[0].url == f"/projects/{w['p3']}"
    assert [(e.name, e.raised_fen, e.gifts) for e in boards["organizations"]] == [
        ("北京春苗公益基金会", 90_000, 2), ("云南山区助学促进会", 17_000, 3)]
    # A gift without a province counts in no province.
    assert [(e.key, e.name_en, e.raised_fen) for e in boards["provinces"]] == [
        ("北京", "Beijing", 52_000), ("云南", "Yunnan", 15_000)]
    # Sponsors by money matched; raised_fen carries what they committed.
    assert [(e.name, e.matched_fen, e.raised_fen) for e in boards["sponsors"]] == [
        ("爱心企业甲", 50_000, 50_000), ("腾讯公益", 30_000, 1_000_000)]
    with db.transaction(write=False) as s:
        top = live.leaderboard(session=s, campaign_id=w["campaign"], board="projects", limit=1)
    assert [e.key for e in top] == [str(w["p3"])]


def test_snapshot_of_an_empty_campaign_and_of_an_ended_one(db: Database,
                                                           now: dt.datetime) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s)
        w = _world(s, now)
        ended = s.get(Campaign, w["campaign"])
        assert ended is not None
        ended.status = CampaignStatus.ENDED
    with db.transaction(write=False) as s:
        c = s.get(Campaign, campaign.id)
        assert c is not None
        snap = live.snapshot(session=s, campaign=c, now=now)
        assert snap.totals == live.Totals() and snap.pools == [] and snap.open_now
        assert all(not entries for entries in snap.boards.values())
        assert snap.to_json()["totals"] == {"gifts": 0, "raised_fen": 0, "matched_fen": 0,
                                            "total_fen": 0}
        e = s.get(Campaign, w["campaign"])
        assert e is not None
        # An hour after it ended, its chart still shows its last active half hour.
        later = live.snapshot(session=s, campaign=e, now=now + dt.timedelta(hours=1))
    assert not later.open_now and later.per_minute[-1].label == "10:30"
    assert later.gifts_last_minute == 1


def test_public_campaigns_are_listed_live_first_and_drafts_are_hidden(
        db: Database, now: dt.datetime) -> None:
    with db.transaction() as s:
        ended = make_campaign(s, status=CampaignStatus.ENDED)
        draft = make_campaign(s, status=CampaignStatus.DRAFT)
        soon = make_campaign(s, status=CampaignStatus.SCHEDULED)
        on = make_campaign(s)
        ids = {"ended": ended.id, "draft": draft.id, "soon": soon.id, "on": on.id,
               "draft_slug": draft.slug}
    with db.transaction(write=False) as s:
        listed = [i.campaign.id for i in live.list_public_campaigns(session=s, now=now)]
        assert listed == [ids["on"], ids["soon"], ids["ended"]]
        assert live.get_public_campaign(session=s, campaign_id=ids["on"]).id == ids["on"]
        for slug in (ids["draft_slug"], "nope"):
            with pytest.raises(NotFound) as caught:
                live.get_public_campaign(session=s, slug=slug)
            assert caught.value.code == "campaign_not_found"


def test_is_open_follows_days_and_hours_in_china_time(db: Database) -> None:
    with db.transaction() as s:
        c = make_campaign(s, opens_at="10:00", closes_at="22:00", days=2)
    day = c.starts_on
    at = lambda d, hm: dt.datetime.combine(  # noqa: E731
        d, dt.time.fromisoformat(hm), tzinfo=CHINA_TZ)
    assert live.is_open(c, at(day, "10:00"))
    assert live.is_open(c, at(day + dt.timedelta(days=1), "21:59").astimezone(dt.UTC))
    assert not live.is_open(c, at(day, "09:59"))
    assert not live.is_open(c, at(day, "22:01"))
    assert not live.is_open(c, at(day + dt.timedelta(days=2), "12:00"))


def test_project_match_status_shows_the_cap_left_today(db: Database,
                                                       now: dt.datetime) -> None:
    with db.transaction() as s:
        org = make_org(s)
        p = make_project(s, org=org)
        outsider = make_project(s, org=org)
        campaign = make_campaign(s, projects=[p])
        capped = make_pool(s, campaign=campaign, budget_fen=100_000,
                           params={"per_project_daily_cap_fen": 30_000}, priority=1)
        open_pool = make_pool(s, campaign=campaign, budget_fen=8_000, priority=2)
        campaign.starts_on -= dt.timedelta(days=1)  # it began yesterday
        give(s, campaign, p, 12_500, at=now)
        # What the project was matched yesterday does not count against today's cap.
        give(s, campaign, p, 29_000, at=now - dt.timedelta(days=1))
        ids = (p.id, outsider.id, campaign.id, capped.id, open_pool.id)
    pid, outsider_id, cid, capped_id, open_id = ids
    with db.transaction(write=False) as s:
        assert live.project_match_status(session=s, project_id=outsider_id, now=now) == []
        (m,) = live.project_match_status(session=s, project_id=pid, now=now)
        assert m.campaign.id == cid
    assert m.enrolled and not m.frozen and m.open_now
    assert (m.raised_fen, m.matched_fen, m.gifts) == (41_500, 41_500, 2)
    assert m.matched_today_fen == 12_500
    assert [(c.pool_id, c.cap_fen, c.used_fen, c.left_fen) for c in m.caps] == [
        (capped_id, 30_000, 12_500, 17_500), (open_id, None, 0, None)]
    assert m.cap_left_fen == 17_500

    with db.transaction() as s:
        enrolment = s.query(Enrolment).filter_by(campaign_id=cid, project_id=pid).one()
        enrolment.matching_frozen = True
        s.add(Enrolment(campaign_id=cid, project_id=outsider_id, organization_id=org.id,
                        status=EnrolmentStatus.APPLIED))
    with db.transaction(write=False) as s:
        (frozen,) = live.project_match_status(session=s, project_id=pid, now=now)
        (applied,) = live.project_match_status(session=s, project_id=outsider_id, now=now)
    assert frozen.frozen
    assert not applied.enrolled and applied.enrolment_status == "applied" and applied.caps == []


def test_a_cap_left_is_never_more_than_the_pool_has(db: Database, now: dt.datetime) -> None:
    with db.transaction() as s:
        org = make_org(s)
        p = make_project(s, org=org)
        campaign = make_campaign(s, projects=[p])
        make_pool(s, campaign=campaign, budget_fen=5_000,
                  params={"per_project_daily_cap_fen": 30_000})
        pid = p.id
    with db.transaction(write=False) as s:
        (m,) = live.project_match_status(session=s, project_id=pid, now=now)
    assert m.caps[0].left_fen == 5_000 and m.cap_left_fen == 5_000


def test_a_quadratic_round_shows_what_it_shared_out(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        p1, p2 = make_project(s, org=org), make_project(s, org=org)
        campaign = make_campaign(s, projects=[p1, p2])
        qf = make_pool(s, campaign=campaign, budget_fen=10_000, kind=PoolKind.QUADRATIC,
                       sponsor_name="平台配捐")
        for project, amount in ((p1, 400), (p1, 900), (p2, 10_000)):
            apply_batch(s, [make_paid_gift(campaign_id=campaign.id, project_id=project.id,
                                           amount_fen=amount, donor_id=None,
                                           payer_hash=f"payer{amount}")])
        cid, pool_id = campaign.id, qf.id
    with db.transaction(write=False) as s:
        (before,) = live.pools(session=s, campaign_id=cid)
    assert (before.kind, before.matched_fen, before.remaining_fen) == ("quadratic", 0, 10_000)
    with db.transaction() as s:
        ended = s.get(Campaign, cid)
        assert ended is not None
        ended.status = CampaignStatus.ENDED
        s.flush()
        shares = quadratic.distribute(session=s, actor=make_user(s, role=Role.ADMIN),
                                      pool_id=pool_id)
        total = sum(share.share_fen for share in shares)
    with db.transaction(write=False) as s:
        (after,) = live.pools(session=s, campaign_id=cid)
        sponsors = live.leaderboard(session=s, campaign_id=cid, board="sponsors")
    assert total == 10_000
    assert (after.matched_fen, after.gifts, after.status) == (10_000, len(shares), "closed")
    assert [(e.name, e.matched_fen) for e in sponsors] == [("平台配捐", 10_000)]
