"""A paid giving-day order is applied without waiting for its campaign's lock.

The giving-day engine locks the campaign row first and then marks the batch's intents paid
(docs/locking.md). An order applied from a provider's report (a return page's query, the sweep,
a callback) must therefore never take the campaign's row after the intent's: it once did —
marking the intent paid, then writing its payer and time in a second statement, which made
PostgreSQL check the intent's foreign keys again (``FOR KEY SHARE`` on the campaign) — and a
return page's query deadlocked with the engine's batch of the same order's callback.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shanju.campaigns import locks
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.gifts import flows
from shanju.payments.gateway import PaymentReport, PaymentState
from shanju.payments.models import IntentStatus, PaymentIntent
from tests.factories import make_campaign, make_org, make_project


def test_a_paid_giving_day_order_is_applied_while_the_engine_holds_its_campaign(
        db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: on SQLite one writer at a time holds the whole database")
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        s.add(PaymentIntent(
            id="pi_lockorder", provider="wechatpay", amount_fen=20_00,
            idempotency_scope="test", idempotency_key="lock-order", request_hash="0" * 64,
            merchant_id="1900000109", organization_id=org.id, project_id=project.id,
            campaign_id=campaign.id, channel="wechat_h5", expires_at=utcnow()))
        campaign_id = campaign.id
    paid_at = utcnow()
    report = PaymentReport(provider="wechatpay", out_trade_no="pi_lockorder",
                           state=PaymentState.PAID, amount_fen=20_00, merchant_id="1900000109",
                           provider_txn_id="4200000000000000001", paid_at=paid_at,
                           payer_id="openid-of-the-payer")
    with db.transaction() as engine_batch:
        locks.lock_campaigns(engine_batch, [campaign_id])  # what the engine's batch holds
        with db.transaction() as s:
            # Waiting for the campaign would fail here, not hang.
            s.execute(text("SET LOCAL lock_timeout = '3s'"))
            applied = flows.apply_report(session=s, report=report,
                                         hash_payer=lambda payer: f"h:{payer}"[:32])
            assert applied.outcome == "to_engine"
            assert applied.gift is not None and applied.gift.payer_hash == "h:openid-of-the-payer"
            assert applied.gift.paid_at == paid_at
    with db.transaction(write=False) as s:
        intent = s.get_one(PaymentIntent, "pi_lockorder")
        assert intent.status == IntentStatus.SUCCEEDED
        assert intent.payer_hash == "h:openid-of-the-payer"
        assert intent.succeeded_at == paid_at
