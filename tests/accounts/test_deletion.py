"""Deleting an account (PIPL): the password (or an SMS code) confirms; every session and token
ends; personal data is erased; donations, payment orders, giving-day gifts, reports and the
audit log stay, de-identified — amounts and totals unchanged (both databases)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.flows import DELETED_NAME
from shanju.accounts.models import ApiToken, Notification, User, WebSession
from shanju.accounts.sms_emulator import AliyunSmsEmulator
from shanju.campaigns.models import CampaignGift
from shanju.complaints.models import Complaint
from shanju.core import mail
from shanju.core.audit import AuditEntry
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.donations.models import Donation
from shanju.ledger import service as ledger
from shanju.payments.models import PaymentIntent
from tests.accounts.helpers import csrf, error_code, login
from tests.accounts.world import Clock
from tests.factories import PASSWORD, make_campaign, make_campaign_gift, make_org, make_project
from tests.projects.helpers import paid_donation

EMAIL = "li.na@example.org"


def _donor_with_history(db: Database) -> dict[str, int | str]:
    """A donor who gave, gave on a giving day, reported, and has a phone, a token and mail."""
    with db.transaction() as session:
        user = accounts.do_create_user(session=session, email=EMAIL, password=PASSWORD,
                                       display_name="李娜", province="浙江")
        user.phone = "+8613800138000"
        org = make_org(session)
        project = make_project(session, org=org)
        donation = paid_donation(session, project, amount_fen=12_345, donor=user, name="李娜",
                                 message="加油，李娜支持你们")
        intent = session.get_one(PaymentIntent, donation.payment_intent_id)
        intent.donor_id, intent.donor_name, intent.message = user.id, "李娜", "加油"
        intent.contact_sealed, intent.contact_hash = "v1.sealed", "h" * 32
        intent.payer_hash = "p" * 32
        campaign = make_campaign(session, projects=[project])
        gift = make_campaign_gift(session, campaign=campaign, project=project, donor=user,
                                  amount_fen=5_000, payer_hash="q" * 32, device_hash="d" * 32)
        session.add(Complaint(organization_id=org.id, reporter_id=user.id,
                              reporter_contact="13800138000", category="other",
                              content="项目进展没有更新", due_on=today_cn()))
        accounts.do_create_api_token(session=session, user=user, name="脚本")
        accounts.do_notify(session=session, user_ids=[user.id], kind="test", title="Hello")
        mail.queue(session, to=EMAIL, subject="您好李娜", body="…", kind="test.sent")
        return {"user": user.id, "donation": donation.id, "intent": intent.id,
                "gift": gift.id, "project": project.id, "org": org.id}


def _fund(db: Database, project_id: int) -> int:
    with db.transaction(write=False) as session:
        return ledger.balance(session, ledger.project_fund(project_id))


def test_deleting_erases_the_person_and_keeps_their_gifts_de_identified(
    app, client: TestClient, db: Database, clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    ids = _donor_with_history(db)
    fund_before = _fund(db, int(ids["project"]))
    laptop = TestClient(app, base_url="http://testserver")
    assert login(laptop, EMAIL).status_code == 303
    assert login(client, EMAIL).status_code == 303
    page = client.get("/me/delete")
    assert page.status_code == 200 and "已注销用户" in page.text and "data-delete-form" in page.text
    wrong = client.post("/me/delete", data={"password": "not my password",
                                            "csrf_token": csrf(client)})
    assert wrong.status_code == 422 and error_code(wrong.text) == "invalid_password"
    done = client.post("/me/delete", data={"password": PASSWORD, "csrf_token": csrf(client)},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login?flash=account_deleted"
    # Signed out everywhere, tokens dead, and the account cannot sign in again.
    for browser in (client, laptop):
        assert browser.get("/me", follow_redirects=False).status_code == 303
    assert login(client, EMAIL).status_code == 422
    with db.transaction(write=False) as session:
        user = session.get_one(User, ids["user"])
        assert (user.email, user.phone, user.display_name, user.province) == (
            None, None, DELETED_NAME, None)
        assert not user.is_active and user.deleted_at == clock.now
        assert not accounts.has_password(user)
        for model in (WebSession, ApiToken, Notification):
            assert session.scalar(select(func.count()).select_from(model)) == 0
        assert mail.recent(session) == []  # the emails sent to the person are gone
        # What the law keeps: the gifts, with their amounts, de-identified.
        donation = session.get_one(Donation, ids["donation"])
        assert (donation.donor_id, donation.amount_fen, donation.donor_name, donation.message) \
            == (ids["user"], 12_345, DELETED_NAME, "")
        intent = session.get_one(PaymentIntent, ids["intent"])
        assert (intent.donor_name, intent.message, intent.contact_sealed, intent.contact_hash,
                intent.payer_hash, intent.amount_fen) == (DELETED_NAME, "", None, None, "", 12_345)
        gift = session.get_one(CampaignGift, ids["gift"])
        assert (gift.donor_name, gift.payer_hash, gift.device_hash, gift.amount_fen) == (
            DELETED_NAME, "", "", 5_000)
        complaint = session.scalars(select(Complaint)).one()
        assert complaint.reporter_contact is None and complaint.content == "项目进展没有更新"
        # The audit log keeps what happened, without the address or the number.
        entries = list(session.scalars(select(AuditEntry)))
        text = json.dumps([e.data for e in entries], ensure_ascii=False)
        assert EMAIL not in text and "13800138000" not in text
        assert "accounts.user.deleted" in {e.action for e in entries}
    assert _fund(db, int(ids["project"])) == fund_before  # the project's money is untouched
    # The address is free again: signing up with it makes a new account.
    with db.transaction() as session:
        fresh = accounts.do_create_user(session=session, email=EMAIL, password=PASSWORD,
                                        display_name="新的李娜")
        assert fresh.id != ids["user"]


def test_the_api_deletes_too_and_refuses_a_wrong_password(
    client: TestClient, db: Database, clock: Clock,
) -> None:
    ids = _donor_with_history(db)
    with db.transaction() as session:
        user = session.get_one(User, ids["user"])
        _, plain = accounts.do_create_api_token(session=session, user=user, name="删除")
    headers = {"Authorization": f"Bearer {plain}"}
    wrong = client.post("/api/v1/me/delete", json={"password": "nope"}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_password"
    assert client.post("/api/v1/me/delete", json={"password": PASSWORD},
                       headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_an_account_made_with_a_phone_confirms_with_a_code(
    client: TestClient, db: Database, emulator: AliyunSmsEmulator, clock: Clock,
) -> None:
    client.post("/login/phone/code", data={"phone": "13900139000", "csrf_token": csrf(client)})
    client.post("/login/phone", data={"phone": "+8613900139000", "csrf_token": csrf(client),
                                      "code": emulator.latest_code("13900139000") or ""})
    page = client.get("/me/delete")
    assert "139****9000" in page.text and 'action="/me/delete/code"' in page.text
    clock.advance(minutes=1, seconds=1)
    sent = client.post("/me/delete/code", data={"csrf_token": csrf(client)})
    assert sent.status_code == 200 and 'name="code"' in sent.text
    wrong = client.post("/me/delete", data={"code": "000000" if emulator.latest_code(
        "13900139000") != "000000" else "111111", "csrf_token": csrf(client)})
    assert wrong.status_code == 422 and error_code(wrong.text) == "invalid_code"
    done = client.post("/me/delete", data={"code": emulator.latest_code("13900139000") or "",
                                           "csrf_token": csrf(client)}, follow_redirects=False)
    assert done.status_code == 303
    with db.transaction(write=False) as session:
        [user] = session.scalars(select(User)).all()
        assert user.phone is None and user.deleted_at is not None
    # The number is free: signing in with it again makes a new account.
    clock.advance(minutes=1, seconds=1)
    client.post("/login/phone/code", data={"phone": "13900139000", "csrf_token": csrf(client)})
    client.post("/login/phone", data={"phone": "+8613900139000", "csrf_token": csrf(client),
                                      "code": emulator.latest_code("13900139000") or ""})
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 2
