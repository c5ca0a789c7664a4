"""The live JSON API, the public campaign pages, the project page's match block and the
Server-Sent Events stream."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from shanju.campaigns.models import CampaignStatus, PoolKind
from shanju.core.clock import utcnow
from shanju.core.db import Database
from tests.campaigns.test_live import give
from tests.factories import make_campaign, make_org, make_pool, make_project


def _campaign(db: Database, *, status: CampaignStatus = CampaignStatus.LIVE) -> dict[str, int]:
    with db.transaction() as s:
        org = make_org(s, name="云南山区助学促进会")
        p = make_project(s, org=org, title="乡村学校冬季温暖包")
        campaign = make_campaign(s, projects=[p], status=status)
        pool = make_pool(s, campaign=campaign, budget_fen=100_000, sponsor_name="腾讯公益",
                         params={"per_project_daily_cap_fen": 20_000, "min_gift_fen": 1_000})
        if status == CampaignStatus.LIVE:
            now = utcnow()
            give(s, campaign, p, 12_345, at=now, province="云南")
            give(s, campaign, p, 100, at=now)  # below the minimum: not matched
        return {"campaign": campaign.id, "project": p.id, "pool": pool.id,
                "slug": campaign.slug}  # type: ignore[dict-item]


def test_stats_api(client: TestClient, db: Database) -> None:
    ids = _campaign(db)
    body = client.get(f"/api/v1/campaigns/{ids['campaign']}/stats").json()
    assert body["campaign_id"] == ids["campaign"] and body["status"] == "live"
    assert body["totals"] == {"gifts": 2, "raised_fen": 12_445, "matched_fen": 12_345,
                              "total_fen": 24_790}
    (pool,) = body["pools"]
    assert (pool["pool_id"], pool["sponsor_name"], pool["remaining_fen"],
            pool["committed_fen"], pool["percent_left"]) == (
        ids["pool"], "腾讯公益", 87_655, 100_000, 87)
    assert len(body["per_minute"]) == 30 and "boards" not in body
    assert sum(m["gifts"] for m in body["per_minute"]) == 2


def test_leaderboards_api(client: TestClient, db: Database) -> None:
    ids = _campaign(db)
    body = client.get(f"/api/v1/campaigns/{ids['campaign']}/leaderboards?limit=1").json()
    assert [e["name"] for e in body["projects"]] == ["乡村学校冬季温暖包"]
    assert [e["name"] for e in body["organizations"]] == ["云南山区助学促进会"]
    assert [(e["key"], e["name_en"]) for e in body["provinces"]] == [("云南", "Yunnan")]
    assert [(e["name"], e["matched_fen"]) for e in body["sponsors"]] == [("腾讯公益", 12_345)]
    bad = client.get(f"/api/v1/campaigns/{ids['campaign']}/leaderboards?limit=0")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_drafts_and_unknown_campaigns_are_not_found(client: TestClient, db: Database) -> None:
    ids = _campaign(db, status=CampaignStatus.DRAFT)
    for path in (f"/api/v1/campaigns/{ids['campaign']}/stats",
                 f"/api/v1/campaigns/{ids['campaign']}/leaderboards",
                 "/api/v1/campaigns/999999/stats", f"/api/v1/campaigns/{2**40}/stats"):
        r = client.get(path)
        assert r.status_code in (404, 422), path
        assert r.json()["error"]["code"] in ("campaign_not_found", "validation_error")
    for path in (f"/campaigns/{ids['slug']}", f"/campaigns/{ids['slug']}/live",
                 "/campaigns/" + "x" * 41):
        assert client.get(path).status_code in (404, 422), path


def test_project_match_api(client: TestClient, db: Database) -> None:
    ids = _campaign(db)
    (m,) = client.get(f"/api/v1/projects/{ids['project']}/campaign-match").json()
    assert m["campaign_id"] == ids["campaign"] and m["enrolled"] and not m["frozen"]
    assert (m["raised_fen"], m["matched_fen"], m["gifts"]) == (12_445, 12_345, 2)
    (cap,) = m["caps"]
    assert (cap["cap_fen"], cap["used_fen"], cap["left_fen"]) == (20_000, 12_345, 7_655)
    assert m["cap_left_today_fen"] == 7_655 and m["matched_today_fen"] == 12_345
    assert client.get("/api/v1/projects/999999/campaign-match").status_code == 404


def test_pages_show_the_figures(client: TestClient, db: Database) -> None:
    ids = _campaign(db)
    listing = client.get("/campaigns")
    assert listing.status_code == 200
    assert f'href="/campaigns/{ids["slug"]}"' in listing.text and "¥123.45" in listing.text
    page = client.get(f"/campaigns/{ids['slug']}")
    assert page.status_code == 200
    text = page.text
    assert 'data-live="raised">¥124.45<' in text and 'data-live="matched">¥123.45<' in text
    assert 'data-live="gifts">2<' in text
    assert "腾讯公益" in text and 'aria-valuenow="87"' in text
    assert "乡村学校冬季温暖包" in text and "云南山区助学促进会" in text
    assert "<svg" in text and text.count("<rect") == 30
    assert '/static/js/campaign-live.js' in text
    english = client.get(f"/campaigns/{ids['slug']}?lang=en").text
    assert "Yunnan" in english and "Matched by sponsors" in english

    project = client.get(f"/projects/{ids['project']}")
    assert project.status_code == 200
    assert f'id="match-{ids["slug"]}"' in project.text
    assert "¥76.55 left of today&#39;s ¥200 cap" in client.get(
        f"/projects/{ids['project']}?lang=en").text


def test_stream_sends_a_snapshot_first(client: TestClient, db: Database) -> None:
    ids = _campaign(db)
    with client.stream("GET", f"/campaigns/{ids['slug']}/live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if not line:
                if "data" in event:
                    break
                continue
            name, _, value = line.partition(":")
            event[name] = value.strip()
    # The viewer left: nobody listens any more.
    hub = client.app.state.campaign_broadcaster  # type: ignore[attr-defined]
    assert hub.subscribers(ids["campaign"]) == 0
    assert event["event"] == "snapshot"
    snap = json.loads(event["data"])
    assert snap["campaign_id"] == ids["campaign"]
    assert snap["totals"]["raised_fen"] == 12_445
    assert [e["name"] for e in snap["boards"]["projects"]] == ["乡村学校冬季温暖包"]


def test_a_quadratic_pool_is_shown_as_a_round_not_a_bar(client: TestClient,
                                                        db: Database) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s)
        qf = make_pool(s, campaign=campaign, budget_fen=500_000, kind=PoolKind.QUADRATIC)
        slug, pool_id = campaign.slug, qf.id
    text = client.get(f"/campaigns/{slug}?lang=en").text
    block = text[text.index(f'data-pool="{pool_id}"'):]
    block = block[:block.index("</section>")]
    assert "Quadratic funding: ¥5,000" in block and "progressbar" not in block


def test_home_page_shows_a_live_giving_day(client: TestClient, db: Database) -> None:
    assert "giving-day-banner" not in client.get("/").text
    ids = _campaign(db)
    with db.transaction() as s:
        make_campaign(s, status=CampaignStatus.ENDED)
    home = client.get("/?lang=en").text
    assert home.count("giving-day-banner") == 1
    assert f'href="/campaigns/{ids["slug"]}"' in home
    assert "Giving day: ¥124.45 raised, ¥123.45 matched by sponsors" in home
