"""A project's and the platform's totals count giving-day gifts as the project fund holds
them: the gift and its settled match; a held match only once it settles; nothing once
refunded."""

from __future__ import annotations

from shanju.accounts.models import Role, User
from shanju.campaigns import flows
from shanju.campaigns.engine import apply_batch
from shanju.core.db import Database
from shanju.gifts import service as gifts
from shanju.ledger import service as ledger
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


def test_totals_are_the_money_the_fund_holds(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=100_00, params={"ratio_num": 1})
        reviewer = make_user(s, role=Role.REVIEWER)
        donor = make_user(s)
        ids = (campaign.id, project.id, reviewer.id, donor.id)
    cid, pid, reviewer_id, donor_id = ids
    paid = [make_paid_gift(campaign_id=cid, project_id=pid, amount_fen=amount,
                           donor_id=donor_id) for amount in (30_00, 50_00, 70_00)]
    with db.transaction() as s:
        results = apply_batch(s, paid)
    # 1:1 until the ¥100 pool runs out: ¥30 + ¥50 + ¥20 matched.
    assert [r.matched_fen for r in results] == [30_00, 50_00, 20_00]
    with db.transaction(write=False) as s:
        totals = gifts.project_totals(session=s, project_ids=[pid])[pid]
        assert (totals.raised_fen, totals.donations) == (250_00, 3)
        assert totals.raised_fen == ledger.balance(s, ledger.project_fund(pid))
        assert gifts.platform_totals(session=s).raised_fen == 250_00

    with db.transaction() as s:
        reviewer = s.get_one(User, reviewer_id)
        flows.refund_gift(session=s, actor=reviewer, order_id=paid[1].order_id,
                          reason="捐赠人申请退款")
    with db.transaction(write=False) as s:
        totals = gifts.project_totals(session=s, project_ids=[pid])[pid]
        # The refunded ¥50 gift and its ¥50 match no longer count.
        assert (totals.raised_fen, totals.donations) == (150_00, 2)
        assert totals.raised_fen == ledger.balance(s, ledger.project_fund(pid))
