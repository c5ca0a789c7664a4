"""Migration 0009 grows payment intents into payment orders without losing the gifts view:
an intent written before it gets its donation's project, organization and donor."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, select, text

from shanju.core.db import Database
from shanju.core.migrations import alembic_config
from shanju.donations.models import Donation
from shanju.payments.models import PaymentIntent
from tests.factories import make_org, make_project, make_user

ORDER_COLUMNS = {"merchant_id", "organization_id", "project_id", "campaign_id", "channel",
                 "donor_id", "donor_name", "anonymous", "message", "province", "payer_hash",
                 "expires_at", "contact_sealed", "contact_hash"}


def _columns(database: Database, table: str) -> set[str]:
    return {c["name"] for c in inspect(database.engine).get_columns(table)}


def test_round_trip_keeps_the_view_and_backfills_old_intents(
        empty_db: Database) -> None:
    config = alembic_config(empty_db)
    command.upgrade(config, "head")
    with empty_db.transaction() as session:
        donor = make_user(session)
        org = make_org(session)
        project = make_project(session, org=org)
        intent = PaymentIntent(id="pi_old00000000000000001", provider="sandbox",
                               amount_fen=1234, idempotency_scope="user:1",
                               idempotency_key="k", request_hash="h")
        session.add(intent)
        session.flush()
        session.add(Donation(public_id="d_old", project_id=project.id,
                             recipient_org_id=org.id, donor_id=donor.id, donor_name="小林",
                             anonymous=True, message="加油", province="浙江",
                             amount_fen=1234, payment_intent_id=intent.id))
        ids = (project.id, org.id, donor.id)

    command.downgrade(config, "0008")
    assert not ORDER_COLUMNS & _columns(empty_db, "payment_intents")
    assert "provider_refund_id" not in _columns(empty_db, "refunds")
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT amount_fen FROM gifts")).scalars().all() == [1234]

    command.upgrade(config, "head")
    assert ORDER_COLUMNS <= _columns(empty_db, "payment_intents")
    with empty_db.transaction(write=False) as session:
        old = session.scalars(select(PaymentIntent)).one()
        assert (old.project_id, old.organization_id, old.donor_id) == ids
        assert (old.donor_name, old.anonymous, old.message, old.province) == (
            "小林", True, "加油", "浙江")
        assert (old.merchant_id, old.campaign_id, old.channel, old.payer_hash) == (
            None, None, None, "")
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT amount_fen FROM gifts")).scalars().all() == [1234]


def test_an_ordinary_gift_takes_its_payer_hash_from_its_order(
        empty_db: Database) -> None:
    command.upgrade(alembic_config(empty_db), "head")
    with empty_db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org)
        intent = PaymentIntent(id="pi_new00000000000000001", provider="wechatpay",
                               amount_fen=500, idempotency_scope="guest:x",
                               idempotency_key="k", request_hash="h", payer_hash="ab" * 16)
        session.add(intent)
        session.flush()
        session.add(Donation(public_id="d_new", project_id=project.id,
                             recipient_org_id=org.id, donor_id=None, donor_name="爱心人士",
                             amount_fen=500, payment_intent_id=intent.id))
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT payer_hash FROM gifts")).scalars().all() == ["ab" * 16]
