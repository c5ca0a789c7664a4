"""Payment routes: each field checked with its own code, who may submit and decide, the review
flow and its audit, the sealed Alipay token, a change pending while the approved route stays
in force, revocation — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.organizations import payment_routes
from shanju.organizations.models import (
    OrgStatus,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
from shanju.payments.gateway import MerchantRoute
from tests.organizations.helpers import (
    PID,
    SECRET,
    SUB_MCHID,
    TOKEN,
    api_token,
    approved_route,
    audit_actions,
    csrf,
    new_org,
    new_staff,
    new_user,
    notifications,
    run,
    sign_in,
)


def _routes(db: Database) -> list[PaymentRoute]:
    return list(run(db, lambda s: s.scalars(select(PaymentRoute).order_by(PaymentRoute.id))
                    .all()))


def _route(db: Database, route_id: int) -> PaymentRoute:
    return run(db, lambda s: s.get_one(PaymentRoute, route_id))


def _route_audits(db: Database) -> int:
    return run(db, lambda s: s.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.object_type == "payment_route")) or 0)


def _submit(client: TestClient, db: Database, org_id: int, user_id: int, **body: str) -> Any:
    return client.post(f"/api/v1/organizations/{org_id}/payment-routes", json=body,
                       headers=api_token(db, user_id))


def _decide(client: TestClient, db: Database, route_id: int, user_id: int, decision: str,
            reason: str = "") -> Any:
    return client.post(f"/api/v1/payment-routes/{route_id}/{decision}",
                       json={"reason": reason}, headers=api_token(db, user_id))


# --- each field -------------------------------------------------------------------------------

BAD_INPUT = [
    # (body, field, code)
    ({"provider": "unionpay", "merchant_id": SUB_MCHID}, "provider", "invalid_payment_provider"),
    ({"provider": "wechatpay", "merchant_id": "  "}, "merchant_id", "required"),
    ({"provider": "wechatpay", "merchant_id": "1234567"}, "merchant_id", "invalid_sub_mchid"),
    ({"provider": "wechatpay", "merchant_id": "19000001090"}, "merchant_id", "invalid_sub_mchid"),
    ({"provider": "wechatpay", "merchant_id": "19OOOOO1O9"}, "merchant_id", "invalid_sub_mchid"),
    # Arabic-Indic digits are digits to str.isdigit() and \d, not to WeChat Pay.
    ({"provider": "wechatpay", "merchant_id": "١٩٠٠٠٠٠١٠٩"}, "merchant_id",
     "invalid_sub_mchid"),
    ({"provider": "wechatpay", "merchant_id": SUB_MCHID, "sub_appid": "wx123"}, "sub_appid",
     "invalid_sub_appid"),
    ({"provider": "wechatpay", "merchant_id": SUB_MCHID, "sub_appid": "wx8888888888888zzz"},
     "sub_appid", "invalid_sub_appid"),
    ({"provider": "wechatpay", "merchant_id": SUB_MCHID, "app_auth_token": TOKEN},
     "app_auth_token", "field_not_for_provider"),
    ({"provider": "alipay", "merchant_id": "2089102146225135", "app_auth_token": TOKEN},
     "merchant_id", "invalid_alipay_pid"),
    ({"provider": "alipay", "merchant_id": "208810214622513", "app_auth_token": TOKEN},
     "merchant_id", "invalid_alipay_pid"),
    ({"provider": "alipay", "merchant_id": SUB_MCHID, "app_auth_token": TOKEN},
     "merchant_id", "invalid_alipay_pid"),
    ({"provider": "alipay", "merchant_id": PID}, "app_auth_token", "app_auth_token_required"),
    ({"provider": "alipay", "merchant_id": PID, "app_auth_token": "202501BB f9c97810438"},
     "app_auth_token", "invalid_app_auth_token"),
    ({"provider": "alipay", "merchant_id": PID, "app_auth_token": "short1234"},
     "app_auth_token", "invalid_app_auth_token"),
    ({"provider": "alipay", "merchant_id": PID, "app_auth_token": TOKEN,
      "sub_appid": "wx8888888888888888"}, "sub_appid", "field_not_for_provider"),
]


@pytest.mark.parametrize(("body", "field", "code"), BAD_INPUT,
                         ids=[c for _, _, c in BAD_INPUT])
def test_each_bad_field_is_refused_with_its_code_and_nothing_changes(
    client: TestClient, db: Database, body: dict[str, str], field: str, code: str
) -> None:
    org_id = new_org(db)
    response = _submit(client, db, org_id, new_staff(db, org_id), **body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert _routes(db) == []
    assert _route_audits(db) == 0


def test_ids_typed_with_a_chinese_input_method_are_read_as_meant() -> None:
    typed = payment_routes.check_route_input(
        provider=" wechatpay ", merchant_id="１９００ ０００\u3000１０９",
        sub_appid="ＷＸ8888888888888888")
    assert (typed.merchant_id, typed.sub_appid) == (SUB_MCHID, "wx8888888888888888")
    alipay = payment_routes.check_route_input(
        provider="alipay", merchant_id="2088 1021 4622 5135", app_auth_token=f" {TOKEN} ")
    assert (alipay.merchant_id, alipay.app_auth_token) == (PID, TOKEN)


def test_the_staff_form_shows_a_readable_error_and_keeps_the_input_but_never_the_token(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db)
    sign_in(client, db, new_staff(db, org_id))
    page = client.get("/console/payment-routes", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200
    assert "收款账户" in page.text

    bad = client.post("/console/payment-routes", headers={"Accept-Language": "zh-CN"}, data={
        "csrf_token": csrf(client), "provider": "wechatpay", "merchant_id": "19000001",
        "sub_appid": "wx12"})
    assert bad.status_code == 422
    assert 'data-code="invalid_sub_appid"' in bad.text
    assert "AppID 应为 wx 加 16 位十六进制字符" in bad.text
    assert 'value="19000001"' in bad.text  # what was typed is kept

    token = "Z" * 19  # too short: refused, and not sent back in the page
    bad = client.post("/console/payment-routes", data={
        "csrf_token": csrf(client), "provider": "alipay", "merchant_id": PID,
        "app_auth_token": token})
    assert bad.status_code == 422
    assert 'data-code="invalid_app_auth_token"' in bad.text
    assert token not in bad.text
    assert _routes(db) == []

    ok = client.post("/console/payment-routes", follow_redirects=False, data={
        "csrf_token": csrf(client), "provider": "wechatpay", "merchant_id": SUB_MCHID})
    assert ok.status_code == 303
    assert ok.headers["location"] == "/console/payment-routes?submitted=wechatpay"
    [route] = _routes(db)
    assert (route.organization_id, route.provider, route.merchant_id, route.status) == (
        org_id, RouteProvider.WECHATPAY, SUB_MCHID, RouteStatus.PENDING)


# --- who may ----------------------------------------------------------------------------------


def test_only_the_organizations_staff_may_submit_and_see_its_routes(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db)
    other_staff = new_staff(db, new_org(db))
    donor = new_user(db)
    reviewer = new_user(db, Role.REVIEWER)
    body = {"provider": "wechatpay", "merchant_id": SUB_MCHID}
    url = f"/api/v1/organizations/{org_id}/payment-routes"

    for user_id in (other_staff, donor, reviewer):
        refused = _submit(client, db, org_id, user_id, **body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "not_your_organization"
    anonymous = client.post(url, json=body)
    assert anonymous.status_code == 401
    assert _routes(db) == []

    for user_id in (other_staff, donor):
        listed = client.get(url, headers=api_token(db, user_id))
        assert listed.status_code == 403
    assert client.get(url).status_code == 401
    staff = new_staff(db, org_id)
    assert _submit(client, db, org_id, staff, **body).status_code == 201
    [route] = _routes(db)
    assert client.get(url, headers=api_token(db, reviewer)).json()[0]["id"] == route.id
    assert client.get(url, headers=api_token(db, staff)).json()[0]["id"] == route.id
    # One route by id: the same 404 as a missing one for anyone else.
    for user_id in (other_staff, donor):
        one = client.get(f"/api/v1/payment-routes/{route.id}", headers=api_token(db, user_id))
        assert one.status_code == 404
        assert one.json()["error"]["code"] == "payment_route_not_found"

    # The pages: anonymous is sent to sign in; a donor is refused; only reviewers review.
    for path in ("/console/payment-routes", "/review/payment-routes",
                 f"/review/payment-routes/{route.id}"):
        assert client.get(path, follow_redirects=False).status_code == 303, path
    sign_in(client, db, donor)
    assert client.get("/console/payment-routes").status_code == 403
    for user_id in (donor, staff):
        sign_in(client, db, user_id)
        for path in ("/review/payment-routes", f"/review/payment-routes/{route.id}"):
            assert client.get(path).status_code == 403, path


def test_only_reviewers_decide_and_nobody_else_revokes(client: TestClient, db: Database) -> None:
    org_id = new_org(db)
    staff = new_staff(db, org_id)
    other_staff = new_staff(db, new_org(db))
    donor = new_user(db)
    route_id = _submit(client, db, org_id, staff, provider="wechatpay",
                       merchant_id=SUB_MCHID).json()["id"]

    for user_id in (staff, other_staff, donor):
        for decision in ("approve", "reject"):
            refused = _decide(client, db, route_id, user_id, decision, "理由")
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "reviewer_only"
    assert client.post(f"/api/v1/payment-routes/{route_id}/approve", json={}).status_code == 401
    sign_in(client, db, staff)
    page = client.post(f"/review/payment-routes/{route_id}/approve",
                       data={"csrf_token": csrf(client)})
    assert page.status_code == 403
    assert _route(db, route_id).status == RouteStatus.PENDING

    reviewer = new_user(db, Role.REVIEWER)
    assert _decide(client, db, route_id, reviewer, "approve").status_code == 200
    for user_id in (other_staff, donor):
        refused = _decide(client, db, route_id, user_id, "revoke", "不再使用")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "payment_route_not_found"
    assert _route(db, route_id).status == RouteStatus.APPROVED
    assert audit_actions(db, "payment_route", route_id) == [
        "organizations.payment_route.submitted", "organizations.payment_route.approved"]


def test_a_suspended_organization_cannot_change_its_routes(client: TestClient,
                                                           db: Database) -> None:
    org_id = new_org(db, status=OrgStatus.SUSPENDED)
    refused = _submit(client, db, org_id, new_staff(db, org_id), provider="wechatpay",
                      merchant_id=SUB_MCHID)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "organization_suspended"
    assert _routes(db) == []


# --- the review flow --------------------------------------------------------------------------


def test_review_flow_on_the_pages_with_audit_and_notifications(client: TestClient,
                                                               db: Database) -> None:
    org_id = new_org(db)
    staff = new_staff(db, org_id)
    first = _submit(client, db, org_id, staff, provider="wechatpay", merchant_id=SUB_MCHID,
                    sub_appid="wx8888888888888888")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "pending"
    route_id = first.json()["id"]
    reviewer = new_user(db, Role.REVIEWER)
    sign_in(client, db, reviewer)
    index = client.get("/review")
    assert 'id="pending-payment-routes"' in index.text
    queue = client.get("/review/payment-routes?status=pending")
    assert f'data-route-id="{route_id}"' in queue.text
    detail = client.get(f"/review/payment-routes/{route_id}")
    assert SUB_MCHID in detail.text and "wx8888888888888888" in detail.text

    # Rejecting needs a reason; the route is untouched until one is given.
    no_reason = client.post(f"/review/payment-routes/{route_id}/reject",
                            data={"csrf_token": csrf(client), "reason": "  "})
    assert no_reason.status_code == 422
    assert 'data-code="reason_required"' in no_reason.text
    assert _route(db, route_id).status == RouteStatus.PENDING
    rejected = client.post(f"/review/payment-routes/{route_id}/reject", follow_redirects=False,
                           data={"csrf_token": csrf(client), "reason": "子商户号与机构名称不符"})
    assert rejected.status_code == 303
    route = _route(db, route_id)
    assert (route.status, route.reviewed_by_id, route.review_note) == (
        RouteStatus.REJECTED, reviewer, "子商户号与机构名称不符")
    again = client.post(f"/review/payment-routes/{route_id}/approve",
                        data={"csrf_token": csrf(client)})
    assert again.status_code == 409
    assert 'data-code="invalid_transition"' in again.text

    second_id = _submit(client, db, org_id, staff, provider="wechatpay",
                        merchant_id="1900000110").json()["id"]
    approved = client.post(f"/review/payment-routes/{second_id}/approve",
                           follow_redirects=False, data={"csrf_token": csrf(client)})
    assert approved.status_code == 303
    assert _route(db, second_id).status == RouteStatus.APPROVED
    assert audit_actions(db, "payment_route", route_id) == [
        "organizations.payment_route.submitted", "organizations.payment_route.rejected"]
    assert audit_actions(db, "payment_route", second_id) == [
        "organizations.payment_route.submitted", "organizations.payment_route.approved"]
    notes = accounts.render_notifications(notifications(db, staff), locale="zh_CN")
    assert [n.title for n in notes] == [
        "平台未通过您的微信支付收款账户 1900000109。",
        "平台已审核通过您的微信支付收款账户 1900000110。",
    ]
    assert notes[0].body == "审核意见：子商户号与机构名称不符"


def test_a_change_is_pending_while_the_approved_route_stays_in_force(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db)
    old_id = approved_route(db, org_id, provider="wechatpay", merchant_id=SUB_MCHID)
    staff = new_staff(db, org_id)
    reviewer = new_user(db, Role.REVIEWER)

    def route_in_force(s: Session) -> MerchantRoute | None:
        return payment_routes.merchant_route(session=s, organization_id=org_id,
                                             provider="wechatpay", secret_key=SECRET)

    same = _submit(client, db, org_id, staff, provider="wechatpay", merchant_id=SUB_MCHID)
    assert same.status_code == 409
    assert same.json()["error"]["code"] == "route_unchanged"

    typo_id = _submit(client, db, org_id, staff, provider="wechatpay",
                      merchant_id="1900000119").json()["id"]
    new_id = _submit(client, db, org_id, staff, provider="wechatpay",
                     merchant_id="1900000110").json()["id"]
    # The second submission replaced the first; the approved route is still the one in force.
    assert _route(db, typo_id).status == RouteStatus.SUPERSEDED
    assert _route(db, new_id).status == RouteStatus.PENDING
    assert run(db, route_in_force) == MerchantRoute(provider="wechatpay",
                                                    merchant_id=SUB_MCHID)
    assert run(db, lambda s: payment_routes.payment_block_reason(
        session=s, organization_id=org_id, providers=["wechatpay"])) is None

    assert _decide(client, db, new_id, reviewer, "approve").status_code == 200
    assert run(db, route_in_force) == MerchantRoute(provider="wechatpay",
                                                    merchant_id="1900000110")
    old = _route(db, old_id)
    assert (old.status, old.ended_by_id) == (RouteStatus.SUPERSEDED, reviewer)
    assert audit_actions(db, "payment_route", old_id)[-1] == (
        "organizations.payment_route.superseded")
    assert audit_actions(db, "payment_route", typo_id) == [
        "organizations.payment_route.submitted", "organizations.payment_route.superseded"]


def test_revoking_takes_a_route_out_of_force(client: TestClient, db: Database) -> None:
    org_id = new_org(db)
    wechat_id = approved_route(db, org_id, provider="wechatpay", merchant_id=SUB_MCHID)
    alipay_id = approved_route(db, org_id, provider="alipay", merchant_id=PID,
                                app_auth_token=TOKEN)
    reviewer = new_user(db, Role.REVIEWER)
    staff = new_staff(db, org_id)

    def block(s: Session) -> str | None:
        return payment_routes.payment_block_reason(session=s, organization_id=org_id,
                                                   providers=["wechatpay", "alipay"])

    no_reason = _decide(client, db, wechat_id, reviewer, "revoke")
    assert no_reason.status_code == 422
    assert no_reason.json()["error"]["code"] == "reason_required"
    revoked = _decide(client, db, wechat_id, reviewer, "revoke", "子商户已注销")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["end_reason"] == "子商户已注销"
    assert run(db, lambda s: payment_routes.merchant_route(
        session=s, organization_id=org_id, provider="wechatpay", secret_key=SECRET)) is None
    assert run(db, block) is None  # Alipay still takes the money

    # The organization's own staff may revoke too (e.g. it closed the merchant account).
    sign_in(client, db, staff)
    done = client.post(f"/console/payment-routes/{alipay_id}/revoke", follow_redirects=False,
                       data={"csrf_token": csrf(client), "reason": "更换了支付宝账户"})
    assert done.status_code == 303
    assert _route(db, alipay_id).status == RouteStatus.REVOKED
    assert run(db, block) == payment_routes.NO_ROUTE
    assert _decide(client, db, wechat_id, reviewer, "revoke", "再次").status_code == 409
    assert audit_actions(db, "payment_route", alipay_id)[-1] == (
        "organizations.payment_route.revoked")


# --- the token --------------------------------------------------------------------------------


def test_the_alipay_token_is_stored_sealed_and_never_shown(client: TestClient,
                                                           db: Database) -> None:
    org_id = new_org(db)
    staff = new_staff(db, org_id)
    response = _submit(client, db, org_id, staff, provider="alipay", merchant_id=PID,
                       app_auth_token=TOKEN)
    assert response.status_code == 201, response.text
    assert response.json()["app_auth_token_set"] is True
    assert TOKEN not in response.text
    route_id = response.json()["id"]

    # Nowhere in the database in clear: not the row (read raw), not the audit log.
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM payment_routes")).one()
        audit_rows = conn.execute(text("SELECT data FROM audit_entries")).all()
    assert TOKEN not in repr(tuple(row)) and TOKEN.lower() not in repr(tuple(row)).lower()
    assert row._mapping["auth_token_sealed"].startswith("v1.")
    assert all(TOKEN not in str(r) for r in audit_rows)

    reviewer = new_user(db, Role.REVIEWER)
    assert TOKEN not in client.get(f"/api/v1/payment-routes/{route_id}",
                                   headers=api_token(db, reviewer)).text
    _decide(client, db, route_id, reviewer, "approve")
    sign_in(client, db, staff)
    assert TOKEN not in client.get("/console/payment-routes").text
    sign_in(client, db, reviewer)
    assert TOKEN not in client.get(f"/review/payment-routes/{route_id}").text

    # The payment code gets it back in clear, under the installation's key only.
    assert run(db, lambda s: payment_routes.merchant_route(
        session=s, organization_id=org_id, provider="alipay", secret_key=SECRET)) == (
        MerchantRoute(provider="alipay", merchant_id=PID, auth_token=TOKEN))
    with pytest.raises(payment_routes.PaymentRouteUnreadable):
        run(db, lambda s: payment_routes.merchant_route(
            session=s, organization_id=org_id, provider="alipay", secret_key="another-key"))


def test_a_sealed_token_moved_to_another_organization_does_not_open(db: Database) -> None:
    org_id, thief_id = new_org(db), new_org(db)
    approved_route(db, org_id, provider="alipay", merchant_id=PID, app_auth_token=TOKEN)
    approved_route(db, thief_id, provider="alipay", merchant_id=PID,
                    app_auth_token="A" * 40)

    def move(s: Session) -> None:
        sealed = s.scalar(select(PaymentRoute.auth_token_sealed).where(
            PaymentRoute.organization_id == org_id))
        s.execute(text("UPDATE payment_routes SET auth_token_sealed = :v "
                       "WHERE organization_id = :o"), {"v": sealed, "o": thief_id})

    run(db, move)
    with pytest.raises(payment_routes.PaymentRouteUnreadable):
        run(db, lambda s: payment_routes.merchant_route(
            session=s, organization_id=thief_id, provider="alipay", secret_key=SECRET))


def test_rotating_the_secret_key_reseals_the_tokens(db: Database) -> None:
    org_id = new_org(db)
    approved_route(db, org_id, provider="alipay", merchant_id=PID, app_auth_token=TOKEN)
    new_key = "a-new-secret-key-of-the-installation"

    def route(secret: str) -> Callable[[Session], MerchantRoute | None]:
        return lambda s: payment_routes.merchant_route(
            session=s, organization_id=org_id, provider="alipay", secret_key=secret)

    with pytest.raises(payment_routes.PaymentRouteUnreadable):
        run(db, route(new_key))
    assert run(db, lambda s: payment_routes.do_reseal_tokens(
        session=s, old_secret_key=SECRET, new_secret_key=new_key)) == 1
    found = run(db, route(new_key))
    assert found is not None and found.auth_token == TOKEN
    with pytest.raises(payment_routes.PaymentRouteUnreadable):
        run(db, route(SECRET))


def test_a_change_of_an_alipay_route_may_keep_the_token_on_file(client: TestClient,
                                                               db: Database) -> None:
    org_id = new_org(db)
    approved_route(db, org_id, provider="alipay", merchant_id=PID, app_auth_token=TOKEN)
    staff = new_staff(db, org_id)
    # Same PID, no token, nothing else changed: nothing to review.
    same = _submit(client, db, org_id, staff, provider="alipay", merchant_id=PID)
    assert same.json()["error"]["code"] == "route_unchanged"
    # Another PID needs its own token.
    other = _submit(client, db, org_id, staff, provider="alipay",
                    merchant_id="2088102146225136")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "app_auth_token_required"
    renewed = _submit(client, db, org_id, staff, provider="alipay", merchant_id=PID,
                      app_auth_token="B" * 40)
    assert renewed.status_code == 201
    reviewer = new_user(db, Role.REVIEWER)
    _decide(client, db, renewed.json()["id"], reviewer, "approve")
    assert run(db, lambda s: payment_routes.merchant_route(
        session=s, organization_id=org_id, provider="alipay", secret_key=SECRET)) == (
        MerchantRoute(provider="alipay", merchant_id=PID, auth_token="B" * 40))


# --- the database's own guard -----------------------------------------------------------------


@pytest.mark.parametrize("status", [RouteStatus.APPROVED, RouteStatus.PENDING])
def test_the_database_holds_one_approved_and_one_pending_route_per_provider(
    db: Database, status: RouteStatus
) -> None:
    org_id = new_org(db)

    def add(s: Session, route_status: RouteStatus, provider: RouteProvider) -> None:
        s.add(PaymentRoute(organization_id=org_id, provider=provider, merchant_id=SUB_MCHID,
                           status=route_status))
        s.flush()

    # Any number of past routes, and one of each live status per provider.
    for past in (RouteStatus.REJECTED, RouteStatus.REJECTED, RouteStatus.REVOKED,
                 RouteStatus.SUPERSEDED, RouteStatus.SUPERSEDED):
        run(db, lambda s, past=past: add(s, past, RouteProvider.WECHATPAY))
    run(db, lambda s: add(s, status, RouteProvider.WECHATPAY))
    run(db, lambda s: add(s, status, RouteProvider.ALIPAY))
    with pytest.raises(IntegrityError):
        run(db, lambda s: add(s, status, RouteProvider.WECHATPAY))
