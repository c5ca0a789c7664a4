"""A project whose receiving organization has no approved payment route, in an installation
with a real provider configured: the page says why instead of showing the donate form, and
every donate endpoint refuses with ``no_payment_route`` — on SQLite and PostgreSQL. With only
the sandbox (development, test, demo) nothing changes.

The real gateways are built elsewhere; here a stand-in object carries a real provider's name
so that ``Providers`` lists it. It is never asked to take a payment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.payments.providers import Notification, Providers
from shanju.projects.models import Project
from tests.factories import make_campaign, make_org, make_project
from tests.organizations.helpers import (
    PID,
    SUB_MCHID,
    TOKEN,
    api_token,
    approved_route,
    csrf,
    new_staff,
    new_user,
    run,
    sign_in,
)

ZH = {"Accept-Language": "zh-CN"}
REASON_ZH = "接收善款的机构尚未开通经平台审核的收款账户，本项目暂时无法在线捐赠。"


class StandInGateway:
    """Carries a real provider's name in ``Providers``; any payment call fails the test."""

    def __init__(self, name: str) -> None:
        self.name = name

    def checkout_url(self, intent_id: str) -> str:
        raise AssertionError(f"no payment may start here ({intent_id})")

    def verify(self, *, body: bytes, headers: Mapping[str, str]) -> Notification:
        raise AssertionError("no callback in this test")

    def request_refund(self, *, refund_id: str, intent_id: str, amount_fen: int) -> None:
        raise AssertionError("no refund in this test")


@pytest.fixture
def real(settings: Settings, db: Database) -> Iterator[TestClient]:
    """The app without the sandbox and with WeChat Pay (a stand-in) as its provider."""
    app = create_app(settings.model_copy(update={"sandbox_enabled": False}), database=db)
    app.state.providers = Providers(StandInGateway("wechatpay"))
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def _project(db: Database, *, partner: bool = False) -> tuple[int, int, int]:
    """A fundraising project enrolled in a live giving day: (publisher, project, campaign).

    ``partner``: the publisher has no qualification and a partner receives the funds.
    """
    def make(s: Any) -> tuple[int, int, int]:
        org = make_org(s, qualified=not partner)
        recipient = make_org(s) if partner else None
        project = make_project(s, org=org, recipient=recipient)
        campaign = make_campaign(s, projects=[project])
        return org.id, project.id, campaign.id

    return run(db, make)


def _gifts(client: TestClient, db: Database, donor: int, project_id: int, campaign_id: int
           ) -> list[Any]:
    """Every way to start a gift: the donation API and page, the giving-day order API and page."""
    headers = {**api_token(db, donor), "Idempotency-Key": "k" * 16}
    api = client.post("/api/v1/donations", headers=headers,
                      json={"project_id": project_id, "amount_fen": 2000})
    order = client.post(f"/api/v1/campaigns/{campaign_id}/orders", headers=headers,
                        json={"project_id": project_id, "amount_fen": 2000})
    sign_in(client, db, donor)
    form = {"csrf_token": csrf(client), "amount": "20", "idempotency_key": "p" * 16}
    page = client.post(f"/projects/{project_id}/donate", data=form, headers=ZH,
                       follow_redirects=False)
    day = client.post(f"/campaigns/{campaign_id}/projects/{project_id}/donate", data=form,
                      headers=ZH, follow_redirects=False)
    client.cookies.clear()
    return [api, order, page, day]


def test_without_a_route_the_page_says_why_and_every_donate_endpoint_refuses(
    real: TestClient, db: Database, snapshot: Any
) -> None:
    org_id, project_id, campaign_id = _project(db)
    donor = new_user(db)

    page = real.get(f"/projects/{project_id}", headers=ZH)
    assert page.status_code == 200
    assert 'data-status="no_payment_route"' in page.text
    assert REASON_ZH in page.text
    assert 'id="donate"' not in page.text
    for path in (f"/projects/{project_id}/donate",
                 f"/campaigns/{campaign_id}/projects/{project_id}/donate"):
        alone = real.get(path, headers=ZH)
        assert REASON_ZH in alone.text and 'id="donate"' not in alone.text, path

    before = snapshot()
    api, order, form, day = _gifts(real, db, donor, project_id, campaign_id)
    for response in (api, order):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "no_payment_route"
    for response in (form, day):
        assert response.status_code == 409, response.text
        assert REASON_ZH in response.text
    assert snapshot() == before

    # A route at a provider this installation does not run does not count.
    approved_route(db, org_id, provider="alipay", merchant_id=PID, app_auth_token=TOKEN)
    assert REASON_ZH in real.get(f"/projects/{project_id}", headers=ZH).text

    # The organization's console says so too, and leads to its payment accounts.
    sign_in(real, db, new_staff(db, org_id))
    console = real.get("/console", headers=ZH)
    assert "data-payment-block" in console.text
    assert 'href="/console/payment-routes"' in console.text


def test_with_an_approved_route_the_form_is_back_and_the_route_check_passes(
    real: TestClient, db: Database
) -> None:
    org_id, project_id, campaign_id = _project(db)
    approved_route(db, org_id, provider="wechatpay", merchant_id=SUB_MCHID)

    page = real.get(f"/projects/{project_id}", headers=ZH)
    assert 'id="donate"' in page.text
    assert "no_payment_route" not in page.text
    for response in _gifts(real, db, new_user(db), project_id, campaign_id):
        # Past the route check: what answers now is the checkout behind it (the stand-in
        # takes no payments), never the missing route.
        assert "no_payment_route" not in response.text
        assert REASON_ZH not in response.text


def test_the_route_that_counts_is_the_receiving_partners(real: TestClient, db: Database) -> None:
    publisher_id, project_id, _ = _project(db, partner=True)
    recipient_id = run(db, lambda s: s.get_one(Project, project_id).recipient_org_id)
    assert recipient_id != publisher_id
    approved_route(db, recipient_id, provider="wechatpay", merchant_id=SUB_MCHID)
    assert 'id="donate"' in real.get(f"/projects/{project_id}").text

    # The publisher's own route would not do: money settles to whoever receives it.
    other_publisher, other_project, _ = _project(db, partner=True)
    approved_route(db, other_publisher, provider="wechatpay", merchant_id=SUB_MCHID)
    assert 'id="donate"' not in real.get(f"/projects/{other_project}").text


def test_with_only_the_sandbox_nothing_changes(client: TestClient, db: Database) -> None:
    _, project_id, _ = _project(db)
    donor = new_user(db)
    page = client.get(f"/projects/{project_id}", headers=ZH)
    assert 'id="donate"' in page.text
    assert "no_payment_route" not in page.text
    created = client.post("/api/v1/donations",
                          headers={**api_token(db, donor), "Idempotency-Key": "k" * 16},
                          json={"project_id": project_id, "amount_fen": 2000})
    assert created.status_code == 201, created.text
    assert created.json()["payment"]["provider"] == "sandbox"

