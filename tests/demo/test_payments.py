"""The demo pays through the emulators: WeChat Pay and Alipay served by the demo server itself.

The demo's database is seeded as ``shanju demo`` seeds it (its organizations' payment routes
approved), the demo app is served by a real uvicorn with both emulators mounted, and the demo
donor gives over HTTP as a phone browser does: checkout, the emulator's payer page, pay, back
to the platform — while the emulator's signed callback reaches the platform's intake. SQLite
only: the demo's database is SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.demo import payments as demo_payments
from shanju.donations.models import Donation
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.organizations.models import Organization, OrgStatus, PaymentRoute, RouteStatus
from shanju.payments.models import PaymentIntent
from shanju.projects.models import Project
from shanju.transparency.check import check as transparency_check
from tests.demo.helpers import SECRET, Demo, give, serve_demo, signed_in_donor
from tests.payments.helpers import configure_wechatpay
from tests.payments.test_production import production


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo, seeded small, served on a free port."""
    with serve_demo(tmp_path_factory.mktemp("demo")) as served:
        yield served


def emulator_page(answer: requests.Response) -> str:
    """An emulator's payer page: served by the demo under its own policy, not the site's."""
    assert answer.status_code == 200, answer.text
    policy = answer.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert "nonce-" not in policy
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.text


def paid_once(demo: Demo, browser: requests.Session, order: dict[str, Any]) -> None:
    """The order succeeded, its donation is paid and credited once, the books are sound."""
    order_id = order["order_id"]
    state = browser.get(f"{demo.url}/api/v1/gifts/orders/{order_id}", timeout=30)
    assert state.status_code == 200, state.text
    assert state.json()["status"] == "succeeded"
    with demo.db.transaction(write=False) as session:
        donation = session.scalars(
            select(Donation).where(Donation.payment_intent_id == order_id)).one()
        assert donation.status.value == "paid"
        assert donation.amount_fen == order["amount_fen"]
        intent = session.get_one(PaymentIntent, order_id)
        assert intent.provider_txn_id and intent.payer_hash
        credits = session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.dedupe_key == f"donation.paid:{donation.public_id}"))
        assert credits == 1
        assert ledger.check(session).ok
        assert transparency_check(session).ok


def test_the_seed_approves_both_routes_of_every_receiving_organization(demo: Demo) -> None:
    with demo.db.transaction(write=False) as session:
        approved = session.scalar(select(func.count()).select_from(Organization).where(
            Organization.status == OrgStatus.APPROVED,
            Organization.id.in_(select(Project.recipient_org_id))))
        routes = session.execute(
            select(PaymentRoute.provider, func.count()).where(
                PaymentRoute.status == RouteStatus.APPROVED).group_by(PaymentRoute.provider)
        ).all()
    assert approved and dict(routes) == {"wechatpay": approved, "alipay": approved}
    # ... and the emulated providers know them all.
    assert len(demo.payments.wechatpay.sub_merchants) == approved
    assert len(demo.payments.alipay.merchants) == approved


def test_a_gift_through_the_wechat_pay_h5_page(demo: Demo) -> None:
    browser = signed_in_donor(demo)
    order = give(demo, browser, "wechat_h5", 2600)
    pay_url = order["pay"]["url"]
    assert pay_url.startswith(f"{demo.url}{demo_payments.WECHATPAY_PATH}/emulator/pay/")

    page = emulator_page(browser.get(pay_url, timeout=10))
    assert "¥26.00" in page and "确认支付" in page
    back = re.search(r'name="redirect_url" value="([^"]*)"', page)
    assert back is not None
    # The page may send the browser on to the platform (form-action names its origin).
    assert f"form-action 'self' {demo.url}" in browser.get(pay_url).headers[
        "Content-Security-Policy"]
    paid = browser.post(pay_url, data={"redirect_url": back.group(1).replace("&amp;", "&")},
                        allow_redirects=False, timeout=10)
    assert paid.status_code == 303
    assert paid.headers["Location"] == demo.url + order["gift_url"]

    assert demo.payments.wechatpay.outbox.wait_idle()
    # Answered once, as WeChat Pay expects: 204 (accepted, nothing more to say).
    assert [c.attempts for c in demo.payments.wechatpay.outbox.log] == [[204]]
    assert urlsplit(demo.payments.wechatpay.outbox.log[0].url).path == (
        "/api/v1/payments/notify/wechatpay")
    paid_once(demo, browser, order)


def test_a_gift_through_the_alipay_wap_cashier(demo: Demo) -> None:
    browser = signed_in_donor(demo)
    order = give(demo, browser, "alipay_wap", 1800)
    gateway = order["pay"]["url"]
    assert gateway.startswith(f"{demo.url}{demo_payments.ALIPAY_PATH}/gateway.do?")

    cashier = browser.get(gateway, allow_redirects=False, timeout=10)
    assert cashier.status_code == 302
    cashier_url = cashier.headers["Location"]
    assert cashier_url.startswith(f"{demo.url}{demo_payments.ALIPAY_PATH}/emulator/pay/")
    page = emulator_page(browser.get(cashier_url, timeout=10))
    assert "18.00" in page and "确认付款" in page
    paid = browser.post(cashier_url, allow_redirects=False, timeout=10)
    assert paid.status_code == 303
    back = urlsplit(paid.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == demo.url + order["gift_url"]
    assert "sign=" in back.query  # Alipay's signed return parameters

    assert demo.payments.alipay.outbox.wait_idle()
    assert [c.attempts for c in demo.payments.alipay.outbox.log] == [[200]]
    paid_once(demo, browser, order)


def test_a_restart_reuses_the_keys_and_knows_the_merchants(demo: Demo) -> None:
    before = {p.name: p.read_bytes() for p in demo.key_dir.iterdir()}
    assert {"wechatpay-merchant.key.pem", "alipay-app.key.pem"} <= set(before)
    assert all(p.stat().st_mode & 0o077 == 0 for p in demo.key_dir.glob("*.key.pem"))
    again = demo_payments.start(key_dir=demo.key_dir, url="http://127.0.0.1:1")
    assert {p.name: p.read_bytes() for p in demo.key_dir.iterdir()} == before
    assert demo_payments.register_merchants(again, database=demo.db, secret_key=SECRET) == (
        len(demo.payments.wechatpay.sub_merchants) + len(demo.payments.alipay.merchants))
    # Another secret key opens no Alipay token: those merchants are left out, not guessed.
    other = demo_payments.start(key_dir=demo.key_dir, url="http://127.0.0.1:1")
    demo_payments.register_merchants(other, database=demo.db, secret_key="another " * 8)
    assert other.alipay.merchants == {} and other.wechatpay.sub_merchants


def _emulator_paths(app: FastAPI) -> list[str]:
    return sorted({path for r in [*app.routes, *iter_route_contexts(app.routes)]
                   if (path := getattr(r, "path", "")).startswith(demo_payments.EMULATORS_PATH)})


CONTROL_PAGES = ("/emulators/wechatpay/emulator/orders", "/emulators/alipay/emulator/state")


def test_only_the_demo_serves_the_emulators(db: Database, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # What `shanju serve` runs (create_app from the settings), in production — with the real
    # WeChat Pay configured, as production requires — and in development.
    configure_wechatpay(monkeypatch, tmp_path / "wechatpay-keys")
    development = Settings(environment="development", database_url=db.url,
                           upload_dir=tmp_path / "uploads",
                           transparency_key_file=tmp_path / "transparency.key")
    for settings in (production(db, tmp_path), development):
        app = create_app(settings, database=db)
        assert _emulator_paths(app) == []
        assert app.state.providers.gateway_names == ["wechatpay"]
        with TestClient(app, base_url="https://testserver") as client:
            assert [client.get(page).status_code for page in CONTROL_PAGES] == [404, 404]
    # The demo's mounting refuses a production app outright.
    payments = demo_payments.start(key_dir=tmp_path / "keys", url="http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="never mounted in production"):
        demo_payments.install(create_app(production(db, tmp_path), database=db), payments)
    app = create_app(development, database=db)
    demo_payments.install(app, payments)
    assert _emulator_paths(app) == ["/emulators/alipay", "/emulators/wechatpay"]
    # The emulators' gateways replace the environment's, beside the sandbox.
    assert app.state.providers.gateway_names == ["alipay", "wechatpay"]
    assert app.state.providers.gateway("wechatpay") is payments.gateways["wechatpay"]
    assert "sandbox" in app.state.providers.names
    with TestClient(app) as client:
        assert [client.get(page).status_code for page in CONTROL_PAGES] == [200, 200]


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104
    ("192.168.1.5", "http://192.168.1.5:8000"), ("::", "http://[::1]:8000"),
    ("localhost", "http://localhost:8000"),
])
def test_the_gateways_reach_the_demo_where_it_listens(host: str, url: str) -> None:
    assert demo_payments.server_url(host, 8000) == url
