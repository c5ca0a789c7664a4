"""`shanju campaigns check` passes on the engine's work and names what was tampered with."""

from __future__ import annotations

from sqlalchemy import update
from typer.testing import CliRunner

from shanju import cli
from shanju.campaigns.engine import apply_batch
from shanju.campaigns.models import CampaignCounter, CampaignStat, MatchPool
from shanju.core.db import Database
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

runner = CliRunner()


def test_check_passes_then_names_each_tampered_number(db: Database) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=5_000,
                         params={"per_donor_daily_cap_fen": 3_000})
        apply_batch(s, [make_paid_gift(campaign_id=campaign.id, project_id=project.id,
                                       amount_fen=a, payer_hash="p") for a in (1_000, 2_500)])
        pool_id = pool.id
    result = runner.invoke(cli.app, ["campaigns", "check", "--database-url", db.url])
    assert result.exit_code == 0, result.output
    assert "Problems" in result.output

    with db.transaction() as s:
        s.execute(update(MatchPool).where(MatchPool.id == pool_id).values(remaining_fen=2_001))
        s.execute(update(CampaignCounter).values(value=CampaignCounter.value + 1))
        s.execute(update(CampaignStat).where(CampaignStat.dim == "total")
                  .values(raised_fen=CampaignStat.raised_fen + 1))
    result = runner.invoke(cli.app, ["campaigns", "check", "--database-url", db.url])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert f"pool {pool_id}: remaining 2001 != ledger 2000" in out
    assert f"counter p{pool_id}:d:xp:" in out
    assert "stats" in out and "'total', 'all'" in out
