"""Giving-day orders: ids, signed tokens, the callback's checks, and validating a request."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from shanju.campaigns import orders
from shanju.campaigns.engine import PaidGift
from shanju.campaigns.models import CampaignGift, CampaignStatus, Enrolment, EnrolmentStatus
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.payments.providers import InvalidSignature, OrderNotification, SandboxProvider
from shanju.projects.models import ProjectStatus
from tests.factories import make_campaign, make_org, make_project, make_user

SIGNER = orders.OrderSigner("test-secret")
NOW = dt.datetime(2026, 9, 7, 2, 0, tzinfo=dt.UTC)


def order(**overrides: Any) -> orders.Order:
    fields: dict[str, Any] = {
        "order_id": SIGNER.order_id(donor_id=7, idempotency_key="k1"), "campaign_id": 3,
        "project_id": 11, "donor_id": 7, "donor_name": "张三丰", "anonymous": False,
        "message": "加油！", "province": "北京", "amount_fen": 9_900,
        "expires_at": int((NOW + orders.ORDER_TTL).timestamp()),
    }
    fields.update(overrides)
    return orders.Order(**fields)


def note(o: orders.Order, token: str, **overrides: Any) -> OrderNotification:
    fields: dict[str, Any] = {
        "provider": "sandbox", "event_id": "evt_1", "order_id": o.order_id,
        "amount_fen": o.amount_fen, "provider_txn_id": f"sbx_{o.order_id}", "paid_at": NOW,
        "payer": "wx-openid-123", "device": "device-abc", "attach": token,
    }
    fields.update(overrides)
    return OrderNotification(**fields)


def code_of(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


# --- order ids ------------------------------------------------------------------------------


def test_order_id_is_the_same_for_the_same_donor_and_key_and_differs_otherwise() -> None:
    first = SIGNER.order_id(donor_id=7, idempotency_key="k1")
    assert first == SIGNER.order_id(donor_id=7, idempotency_key="k1")
    assert first != SIGNER.order_id(donor_id=7, idempotency_key="k2")
    assert first != SIGNER.order_id(donor_id=8, idempotency_key="k1")
    assert first != orders.OrderSigner("another-secret").order_id(donor_id=7,
                                                                    idempotency_key="k1")
    assert first.startswith("o_") and len(first) <= 40  # fits campaign_gifts.order_id


# --- tokens -------------------------------------------------------------------------------


def test_a_token_verifies_to_the_order_it_was_made_for() -> None:
    o = order(province=None, anonymous=True, message="")
    assert SIGNER.verify(SIGNER.sign(o), at=NOW) == o
    assert SIGNER.verify(SIGNER.sign(order()), at=NOW, campaign_id=3) == order()


@pytest.mark.parametrize("tamper", ["payload", "signature", "key", "truncated", "garbage"])
def test_a_tampered_token_is_refused(tamper: str) -> None:
    token = SIGNER.sign(order())
    body, _, signature = token.rpartition(".")
    if tamper == "payload":
        data = json.loads(orders._unb64(body))
        data["f"] = 1  # pay ¥0.01 for a ¥99 order
        forged = orders._b64(json.dumps(data, separators=(",", ":")).encode())
        token = f"{forged}.{signature}"
    elif tamper == "signature":
        token = f"{body}.{signature[:-2]}AA"
    elif tamper == "key":
        token = orders.OrderSigner("attacker-secret").sign(order())
    elif tamper == "truncated":
        token = body
    else:
        token = "not a token at all"
    with pytest.raises(orders.InvalidOrder) as exc:
        SIGNER.verify(token, at=NOW)
    assert code_of(exc) == "invalid_order_token"


def test_an_expired_order_is_refused_but_money_paid_in_time_is_still_credited() -> None:
    o = order()
    token = SIGNER.sign(o)
    late = NOW + orders.ORDER_TTL + orders.PAID_AT_SKEW + dt.timedelta(seconds=1)
    with pytest.raises(orders.InvalidOrder) as exc:
        SIGNER.verify(token, at=late)
    assert code_of(exc) == "order_expired"
    # Paid just before expiry; the callback (or the provider's retry) may come any time later.
    in_time = NOW + orders.ORDER_TTL - dt.timedelta(seconds=1)
    gift = SIGNER.paid_gift(note(o, token, paid_at=in_time))
    assert gift.paid_at == in_time


def test_a_token_of_another_campaign_is_refused() -> None:
    with pytest.raises(orders.InvalidOrder) as exc:
        SIGNER.verify(SIGNER.sign(order(campaign_id=3)), at=NOW, campaign_id=4)
    assert code_of(exc) == "order_other_campaign"


def test_the_callback_must_report_the_orders_amount_and_id() -> None:
    o = order()
    token = SIGNER.sign(o)
    with pytest.raises(orders.InvalidOrder) as exc:
        SIGNER.paid_gift(note(o, token, amount_fen=o.amount_fen - 1))
    assert code_of(exc) == "amount_mismatch"
    with pytest.raises(orders.InvalidOrder) as exc:
        SIGNER.paid_gift(note(o, token, order_id="o_another"))
    assert code_of(exc) == "order_mismatch"


def test_a_paid_gift_carries_the_order_and_only_hashes_of_payer_and_device() -> None:
    o = order()
    gift = SIGNER.paid_gift(note(o, SIGNER.sign(o)))
    assert isinstance(gift, PaidGift)
    assert (gift.order_id, gift.campaign_id, gift.project_id, gift.donor_id, gift.amount_fen,
            gift.donor_name, gift.message, gift.province, gift.provider) == (
        o.order_id, 3, 11, 7, 9_900, "张三丰", "加油！", "北京", "sandbox")
    assert gift.payer_hash == SIGNER.payer_hash("wx-openid-123")
    assert len(gift.payer_hash) == len(gift.device_hash) == 32
    assert "wx-openid" not in gift.payer_hash and gift.payer_hash != gift.device_hash
    # Keyed: another installation cannot link its payers to ours.
    assert orders.OrderSigner("x").payer_hash("wx-openid-123") != gift.payer_hash
    assert SIGNER.payer_hash("") == ""


# --- the sandbox's order callbacks ------------------------------------------------------------


def test_sandbox_order_callbacks_verify_and_a_changed_body_does_not() -> None:
    sandbox = SandboxProvider("sandbox-secret")
    o = order()
    token = SIGNER.sign(o)
    body, headers = sandbox.build_order_callback(
        order_id=o.order_id, amount_fen=o.amount_fen, attach=token, payer="p", device="d")
    parsed = sandbox.verify_order(body=body, headers=headers)
    assert (parsed.order_id, parsed.amount_fen, parsed.attach, parsed.payer) == (
        o.order_id, o.amount_fen, token, "p")
    assert SIGNER.paid_gift(replace(parsed, paid_at=NOW)).order_id == o.order_id
    with pytest.raises(InvalidSignature):
        sandbox.verify_order(body=body.replace(b"9900", b"9901"), headers=headers)
    with pytest.raises(InvalidSignature):
        SandboxProvider("other-secret").verify_order(body=body, headers=headers)


# --- validating a request (reads only) --------------------------------------------------------


def _world(db: Database, *, status: CampaignStatus = CampaignStatus.LIVE) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        outsider = make_project(s, org=org)
        paused = make_project(s, org=org, status=ProjectStatus.PAUSED)
        campaign = make_campaign(s, projects=[project, paused], status=status)
        applied = make_project(s, org=org)
        s.add(Enrolment(campaign_id=campaign.id, project_id=applied.id,
                        organization_id=org.id, status=EnrolmentStatus.APPLIED))
        donor = make_user(s, display_name="李四")
        return {"campaign": campaign.id, "project": project.id, "outsider": outsider.id,
                "paused": paused.id, "applied": applied.id, "donor": donor.id}


def _check(db: Database, w: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    from shanju.accounts.models import User

    args: dict[str, Any] = {"campaign_id": w["campaign"], "project_id": w["project"],
                            "amount_fen": 2_000, "donor_name": "", "anonymous": False,
                            "message": " 加油 ", "province": ""}
    args.update(overrides)
    with db.transaction(write=False) as s:
        actor = s.get_one(User, w["donor"])
        _, _, fields = orders.check_order_request(session=s, actor=actor, **args)
        return fields


def test_a_valid_request_gives_clean_fields_and_writes_nothing(db: Database) -> None:
    w = _world(db)
    fields = _check(db, w, province="广东")
    assert fields == {"donor_name": "李四", "anonymous": False, "message": "加油",
                      "province": "广东", "amount_fen": 2_000}
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CampaignGift)) == 0


@pytest.mark.parametrize(("overrides", "code"), [
    ({"amount_fen": 0}, "amount_not_positive"),
    ({"amount_fen": "12"}, "amount_not_whole_fen"),
    ({"donor_name": "名" * 61}, "donor_name_too_long"),
    ({"message": "话" * 201}, "message_too_long"),
    ({"message": "a\x00b"}, "nul_character"),
    ({"province": "火星"}, "invalid_province"),
    ({"project_id": "outsider"}, "project_not_enrolled"),
    ({"project_id": "applied"}, "project_not_enrolled"),
    ({"project_id": "paused"}, "project_not_fundraising"),
    ({"campaign_id": 999_999}, "campaign_not_found"),
])
def test_invalid_requests_are_refused_with_a_specific_code(
    db: Database, overrides: dict[str, Any], code: str
) -> None:
    w = _world(db)
    if isinstance(overrides.get("project_id"), str):
        overrides = {"project_id": w[overrides["project_id"]]}
    with pytest.raises(DomainError) as exc:
        _check(db, w, **overrides)
    assert exc.value.code == code


def test_a_campaign_that_is_not_live_takes_no_orders(db: Database) -> None:
    w = _world(db, status=CampaignStatus.ENDED)
    with pytest.raises(DomainError) as exc:
        _check(db, w)
    assert exc.value.code == "campaign_not_live"


def test_the_project_page_finds_the_live_campaign_of_an_enrolled_project(db: Database) -> None:
    w = _world(db)
    ended = _world(db, status=CampaignStatus.ENDED)
    with db.transaction(write=False) as s:
        found = orders.live_campaign_for_project(session=s, project_id=w["project"])
        assert found is not None and found.id == w["campaign"]
        assert orders.live_campaign_for_project(session=s, project_id=w["outsider"]) is None
        assert orders.live_campaign_for_project(session=s, project_id=w["applied"]) is None
        assert orders.live_campaign_for_project(session=s, project_id=ended["project"]) is None
