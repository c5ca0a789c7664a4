"""A donor's giving-day gifts are in "my donations", with their match and a link to why;
the donor's summary counts their own money, not the sponsors' match."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.campaigns.engine import apply_batch
from shanju.core.db import Database
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


def test_my_donations_lists_giving_day_gifts(db: Database, client: TestClient) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s), title="山区孩子过冬棉衣")
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=30_00, params={"ratio_num": 1})
        donor = make_user(s, email="giver@example.org")
        ids = (campaign.id, project.id, donor.id)
    cid, pid, donor_id = ids
    gifts = [make_paid_gift(campaign_id=cid, project_id=pid, amount_fen=amount,
                            donor_id=donor_id) for amount in (20_00, 50_00)]
    with db.transaction() as s:
        results = apply_batch(s, gifts)
    assert [r.matched_fen for r in results] == [20_00, 10_00]  # the ¥30 pool runs out

    with db.transaction() as s:
        token = accounts.do_start_session(session=s, user=s.get_one(User, donor_id))
    client.cookies.set("sj_session", token)
    page = client.get("/me/donations")
    assert page.status_code == 200
    assert 'id="my-giving-day-gifts"' in page.text
    assert "山区孩子过冬棉衣" in page.text
    for gift in gifts:
        assert f"/campaigns/gifts/{gift.order_id}" in page.text
    assert page.text.count('data-match-status="matched"') == 2
    # Given: the donor's ¥70 (not the ¥30 the sponsor added), two gifts, one project.
    assert "¥70.00" in page.text
