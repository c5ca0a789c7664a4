"""Production never runs the sandbox, and starts only with a real payment provider configured:
its routes do not exist, a callback for provider "sandbox" — even one signed with the
published default secret — is refused and credits nothing, and giving says plainly why it
cannot start (the checkout through the real gateways is not built yet: ADR 0028). The app
refuses to start with a sandbox variable set, a default secret, no real provider, or one partly
set or not on https (the same refusals as `shanju serve`: tests/cli/test_serve_production.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import User
from shanju.app import create_app
from shanju.campaigns import orders
from shanju.campaigns.models import CampaignGift
from shanju.core.config import DEFAULT_SANDBOX_SECRET, DEV_SECRET, ProductionRefused, Settings
from shanju.core.db import Database
from shanju.donations import flows
from shanju.ledger import service as ledger
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.payments.providers import SandboxProvider
from shanju.payments.registry import NO_PROVIDER
from shanju.projects.models import Project
from tests.factories import make_campaign, make_org, make_project, make_user
from tests.money import World
from tests.organizations.helpers import SUB_MCHID, approved_route
from tests.payments.helpers import configure_wechatpay
from tests.projects.helpers import api_token, sign_in

SECRET_KEY = secrets.token_urlsafe(48)


def production(db: Database, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production", "database_url": db.url, "secret_key": SECRET_KEY,
        "upload_dir": tmp_path / "uploads",
        "transparency_key_file": tmp_path / "transparency-ed25519.key",
        "transparency_checkpoint_seconds": 0,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WeChat Pay emulator's keys as files, made once: the platform's real provider here."""
    return tmp_path_factory.mktemp("wechatpay-keys")


@pytest.fixture
def wechatpay(key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """WeChat Pay configured in the environment (its real https base URL, never called)."""
    return configure_wechatpay(monkeypatch, key_dir)


@pytest.fixture
def prod(db: Database, tmp_path: Path, wechatpay: dict[str, str]) -> Iterator[TestClient]:
    """A production app with WeChat Pay configured on the test database; https, as its
    cookies are Secure."""
    app = create_app(production(db, tmp_path), database=db)
    assert app.state.providers.names == ["wechatpay"]
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def sandbox_paths(app: FastAPI) -> list[str]:
    """Every route of the app whose path names the sandbox (routers are included lazily)."""
    return sorted(path for r in iter_route_contexts(app.routes)
                  if (path := r.path) and "sandbox" in path)


def pending_sandbox_donation(db: Database, world: World) -> str:
    """A donation left waiting for a sandbox payment (e.g. from before the upgrade)."""
    with db.transaction() as s:
        donor = s.get_one(User, world.donor_id)
        request, project = flows.check_donation_request(
            session=s, actor=donor, project_id=world.project_id, amount_fen=2000,
            donor_name=None, anonymous=False, message="", province=None)
        donation, _ = flows.start_donation(
            session=s, actor=donor, request=request, project=project,
            provider=SandboxProvider(DEFAULT_SANDBOX_SECRET), idempotency_key="left-over")
        return donation.payment_intent_id


def test_every_sandbox_route_is_a_404_in_production(
    prod: TestClient, client: TestClient, world: World, db: Database
) -> None:
    # The test app (environment "test") has them; the production app has none.
    assert sandbox_paths(client.app) == [  # type: ignore[arg-type]
        "/api/v1/payments/sandbox/orders/complete",
        "/api/v1/payments/sandbox/{intent_id}/complete",
        "/pay/sandbox/orders", "/pay/sandbox/{intent_id}", "/pay/sandbox/{intent_id}",
    ]
    assert sandbox_paths(prod.app) == []  # type: ignore[arg-type]
    assert not [p for p in prod.get("/openapi.json").json()["paths"] if "sandbox" in p]
    intent_id = pending_sandbox_donation(db, world)
    auth = world.auth()
    api = [
        prod.post(f"/api/v1/payments/sandbox/{intent_id}/complete", json={}, headers=auth),
        prod.post("/api/v1/payments/sandbox/orders/complete", json={"token": "x"},
                  headers=auth),
    ]
    for response in api:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    csrf = sign_in(prod, db, world.donor_id)
    pages = [
        prod.get(f"/pay/sandbox/{intent_id}"),
        prod.post(f"/pay/sandbox/{intent_id}", data={"csrf_token": csrf, "action": "pay"}),
        prod.post("/pay/sandbox/orders", data={"csrf_token": csrf, "token": "x"}),
    ]
    for response in pages:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
    with db.transaction(write=False) as s:
        assert s.get_one(PaymentIntent, intent_id).status == IntentStatus.REQUIRES_PAYMENT


def test_a_callback_signed_with_the_default_sandbox_secret_credits_nothing(
    prod: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    intent_id = pending_sandbox_donation(db, world)
    forger = SandboxProvider(DEFAULT_SANDBOX_SECRET)
    body, headers = forger.build_callback(
        event_type="payment.succeeded", intent_id=intent_id, amount_fen=2000)
    before = snapshot()
    response = prod.post("/api/v1/payments/callbacks/sandbox", content=body, headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_provider"
    assert snapshot() == before
    with db.transaction(write=False) as s:
        assert s.get_one(PaymentIntent, intent_id).status == IntentStatus.REQUIRES_PAYMENT
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == 0
        assert ledger.check(s).ok


def test_a_giving_day_callback_for_the_sandbox_credits_nothing(
    prod: TestClient, db: Database
) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        donor = make_user(s)
        ids = (campaign.id, project.id, donor.id)
        org_id = org.id
    # The organization can take money through WeChat Pay: the refusal below is not its route.
    approved_route(db, org_id, provider="wechatpay", merchant_id=SUB_MCHID)
    # Even an order token the platform itself signed: no provider "sandbox" takes payments.
    token = orders.OrderSigner(SECRET_KEY).sign(orders.Order(
        order_id="o_forged", campaign_id=ids[0], project_id=ids[1], donor_id=ids[2],
        donor_name="x", anonymous=False, message="", province=None, amount_fen=5_000,
        expires_at=2**31))
    body, headers = SandboxProvider(DEFAULT_SANDBOX_SECRET).build_order_callback(
        order_id="o_forged", amount_fen=5_000, attach=token, payer="p", device="d")
    response = prod.post("/api/v1/payments/callbacks/sandbox/orders", content=body,
                         headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_provider"
    # And no giving-day order is handed out to pay with a provider that is not there.
    refused = prod.post(f"/api/v1/campaigns/{ids[0]}/orders",
                        json={"project_id": ids[1], "amount_fen": 5_000},
                        headers={**api_token(db, ids[2]), "Idempotency-Key": "k"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "use_gift_checkout"
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CampaignGift)) == 0
        assert ledger.check(s).ok


def test_the_sandbox_checkouts_in_production_point_to_the_gift_checkout(
    prod: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    before = snapshot()
    # No approved route of the receiving organization at the configured provider: that is why.
    refused = prod.post("/api/v1/donations", json={"project_id": world.project_id,
                                                   "amount_fen": 2000},
                        headers={**world.auth(), "Idempotency-Key": "k"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "no_payment_route"
    assert snapshot() == before
    with db.transaction(write=False) as s:
        org_id = s.get_one(Project, world.project_id).recipient_org_id
    approved_route(db, org_id, provider="wechatpay", merchant_id=SUB_MCHID)
    before = snapshot()
    # With a route, the sandbox's checkout says where gifts are made: the gift pipeline.
    api = prod.post("/api/v1/donations", json={"project_id": world.project_id,
                                               "amount_fen": 2000},
                    headers={**world.auth(), "Idempotency-Key": "k"})
    assert api.status_code == 503, api.text
    assert api.json()["error"]["code"] == "use_gift_checkout"
    # Not a passing refusal: no Retry-After invites a retry in a second (only ServiceBusy does).
    assert "retry-after" not in api.headers
    csrf = sign_in(prod, db, world.donor_id)
    page = prod.post(f"/projects/{world.project_id}/donate",
                     data={"csrf_token": csrf, "amount": "20", "idempotency_key": "k" * 16},
                     headers={"Accept-Language": "zh-CN"}, follow_redirects=False)
    assert page.status_code == 503
    assert "请在捐赠表单中选择微信支付或支付宝" in page.text
    assert snapshot() == before


def test_the_app_refuses_to_start_in_production_without_what_it_needs(
    db: Database, tmp_path: Path, wechatpay: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox in any form, a default secret, no real provider, one partly set or on
    plain http: each refused in one line, all at once."""
    with pytest.raises(ProductionRefused) as refused:
        create_app(production(db, tmp_path, sandbox_enabled=True,
                              sandbox_secret=secrets.token_urlsafe(48)), database=db)
    assert refused.value.problems == [
        "SHANJU_SANDBOX_ENABLED and SHANJU_SANDBOX_SECRET are set, but production never runs "
        "the sandbox payment provider (its payments are not real money): remove them"]
    with pytest.raises(ProductionRefused) as refused:
        create_app(production(db, tmp_path, secret_key=DEV_SECRET), database=db)
    assert refused.value.problems == [
        "SHANJU_SECRET_KEY is not set (the development default); set a secret of your own"]
    monkeypatch.setenv("SHANJU_WECHATPAY_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("SHANJU_WECHATPAY_APIV3_KEY")
    with pytest.raises(ProductionRefused) as refused:
        create_app(production(db, tmp_path), database=db)
    assert refused.value.problems == [
        "WeChat Pay: SHANJU_WECHATPAY_APIV3_KEY is not set",
        "WeChat Pay: SHANJU_WECHATPAY_BASE_URL must be an https URL in production"]
    for name in wechatpay:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProductionRefused) as refused:
        create_app(production(db, tmp_path), database=db)
    assert refused.value.problems == [NO_PROVIDER]
    # Outside production the same settings start, with the sandbox.
    app = create_app(production(db, tmp_path, environment="test"), database=db)
    assert app.state.providers.names == ["sandbox"]
