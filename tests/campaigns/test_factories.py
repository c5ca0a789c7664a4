"""The campaign builders give a funded pool whose row and ledger balance agree."""

from __future__ import annotations

from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import make_campaign, make_org, make_pool, make_project


def test_pool_is_funded_through_the_ledger(db: Database) -> None:
    with db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org)
        campaign = make_campaign(session, projects=[project])
        pool = make_pool(session, campaign=campaign, budget_fen=500_00,
                         params={"ratio_num": 1, "ratio_den": 2})
        pool_id = pool.id
    with db.transaction(write=False) as session:
        assert ledger.balance(session, ledger.match_pool(pool_id)) == 500_00
        assert ledger.check(session).ok
