"""A world for the gift pipeline's tests: the platform served by a real uvicorn on a real
database, a provider's emulator served beside it, the production gateway between them.

Callbacks travel over HTTP from the emulator's outbox to the platform's intake
(``/api/v1/payments/notify/{provider}``), exactly as in production; only the base URL and the
keys differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.donations.models import Donation
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.payments.gateway import Gateway
from shanju.payments.models import PaymentIntent, ProviderEvent, Refund
from shanju.payments.providers import Providers
from shanju.transparency import check as transparency_check
from tests.organizations.helpers import api_token, approved_route, new_staff, run
from tests.serving import free_socket, uvicorn_thread


@dataclass
class Platform:
    """The platform as a provider and a donor's phone see it: a URL, a database, a donor."""

    url: str
    db: Database
    app: Any
    project_id: int
    org_id: int
    donor_id: int
    auth: dict[str, str]

    def give(self, channel: str, *, amount_fen: int = 1234, key: str = "k1",
             **extra: object) -> requests.Response:
        return requests.post(f"{self.url}/api/v1/gifts", json={
            "project_id": self.project_id, "amount_fen": amount_fen, "channel": channel,
            "donor_name": "小林", "message": "加油", **extra},
            headers={**self.auth, "Idempotency-Key": key}, timeout=30)

    def refund(self, order_id: str, amount_fen: int | None) -> requests.Response:
        """The receiving organization's staff refunds the order's donation (all of what
        remains, or ``amount_fen``) through the API."""
        donation = self.donation(order_id)
        staff = new_staff(self.db, self.org_id)
        body: dict[str, object] = {"reason": "捐赠人申请退款"}
        if amount_fen is not None:
            body["amount_fen"] = amount_fen
        return requests.post(f"{self.url}/api/v1/donations/{donation.public_id}/refunds",
                             json=body, headers=api_token(self.db, staff), timeout=30)

    def order(self, order_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/api/v1/gifts/orders/{order_id}", headers=self.auth,
                              timeout=30)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def read(self, fn: Callable[[Session], Any]) -> Any:
        return run(self.db, fn)

    def donation(self, order_id: str) -> Donation:
        def go(s: Session) -> Donation:
            found = s.scalars(select(Donation).where(Donation.payment_intent_id == order_id)).one()
            s.expunge(found)
            return found
        result: Donation = self.read(go)
        return result

    def intent(self, order_id: str) -> PaymentIntent:
        def go(s: Session) -> PaymentIntent:
            found = s.get_one(PaymentIntent, order_id)
            s.expunge(found)
            return found
        result: PaymentIntent = self.read(go)
        return result

    def outcomes(self, order_id: str) -> list[str]:
        return list(self.read(lambda s: s.scalars(
            select(ProviderEvent.outcome).where(ProviderEvent.intent_id == order_id)
            .order_by(ProviderEvent.id)).all()))

    def credits(self, order_id: str) -> int:
        """Journal entries that credited this order's donation (exactly-once: 0 or 1)."""
        donation = self.donation(order_id)
        return int(self.read(lambda s: s.scalar(
            select(func.count()).select_from(JournalEntry)
            .where(JournalEntry.dedupe_key == f"donation.paid:{donation.public_id}"))))

    def refunds(self, order_id: str) -> list[Refund]:
        def go(s: Session) -> list[Refund]:
            found = list(s.scalars(select(Refund).where(Refund.intent_id == order_id)
                                   .order_by(Refund.created_at)))
            for r in found:
                s.expunge(r)
            return found
        result: list[Refund] = self.read(go)
        return result

    def books_are_sound(self) -> None:
        """The ledger balances and the transparency log verifies."""
        def go(s: Session) -> None:
            assert ledger.check(s).ok
            report = transparency_check.check(s)
            assert report.ok, report
        self.read(go)


@contextmanager
def serve_platform(db: Database, tmp_path: Any, *, gateways: Callable[[str], dict[str, Gateway]],
                   merchants: dict[str, dict[str, str]]) -> Iterator[Platform]:
    """Serve the platform on ``db``; ``gateways(base_url)`` builds its gateways once its URL
    is known; ``merchants`` are the organization's routes to approve (provider → fields)."""
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        environment="test", database_url=db.url, upload_dir=tmp_path / "uploads",
        secret_key="test-secret", sandbox_secret="test-sandbox-secret",
        transparency_key_file=tmp_path / "transparency-ed25519.key", base_url=url)
    app = create_app(settings, database=db)
    # The real providers' gateways beside the sandbox, as the registry would build them.
    app.state.providers = Providers(app.state.providers.get("sandbox"), gateways=gateways(url))
    from tests.factories import make_org, make_project, make_user

    def seed(s: Session) -> tuple[int, int, int]:
        org = make_org(s)
        project = make_project(s, org=org)
        donor = make_user(s)
        return org.id, project.id, donor.id

    org_id, project_id, donor_id = run(db, seed)
    for provider, fields in merchants.items():
        approved_route(db, org_id, provider=provider, **fields)
    with ExitStack() as stack:
        stack.enter_context(uvicorn_thread(app, sock))
        yield Platform(url=url, db=db, app=app, project_id=project_id, org_id=org_id,
                       donor_id=donor_id, auth=api_token(db, donor_id))


# --- WeChat Pay beside the platform, and a giving day (added for the reconciliation's tests) ---


@contextmanager
def serve_wechatpay(db: Database, tmp_path: Any, key_dir: Path, *,
                    sub_merchants: dict[str, str],
                    merchant_id: str) -> Iterator[tuple[Platform, Any]]:
    """The platform on ``db`` with WeChat Pay's emulator (its keys kept in ``key_dir``)
    served beside it and the organization's approved route to ``merchant_id``; yields the
    platform and the emulator. The platform's gateway is
    ``app.state.providers.gateway("wechatpay")``."""
    from shanju.payments.emulators.outbox import Outbox
    from shanju.payments.emulators.wechatpay import create_app as emulator_app
    from shanju.payments.emulators.wechatpay import setup
    from shanju.payments.wechatpay import WeChatPayGateway

    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    emulator, config = setup(base, key_dir, sub_merchants=sub_merchants,
                             outbox=Outbox(retry_delays=(0.05, 0.05)))

    def gateways(_platform_url: str) -> dict[str, Gateway]:
        return {"wechatpay": WeChatPayGateway(config)}

    with uvicorn_thread(emulator_app(emulator), sock), serve_platform(
            db, tmp_path, gateways=gateways,
            merchants={"wechatpay": {"merchant_id": merchant_id}}) as platform:
        yield platform, emulator
        emulator.outbox.wait_idle()


def enrol_in_giving_day(platform: Platform) -> int:
    """Enrol the platform's project in a live giving day with a 1:1 pool; its id."""
    from tests.factories import make_campaign, make_pool

    def go(s: Session) -> int:
        from shanju.projects.models import Project

        project = s.get_one(Project, platform.project_id)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=1_000_00, params={"ratio_num": 1})
        return campaign.id

    result: int = run(platform.db, go)
    return result


def campaign_gifts(platform: Platform, order_id: str) -> int:
    """Giving-day gifts written for this order (exactly-once: 0 or 1)."""
    from shanju.campaigns.models import CampaignGift

    return int(platform.read(lambda s: s.scalar(
        select(func.count()).select_from(CampaignGift).where(CampaignGift.order_id == order_id))))
