"""The home page: platform totals from paid donations only, and featured project cards."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.ids import public_id
from shanju.donations.models import Donation, DonationStatus
from shanju.organizations.models import Organization, OrgStatus
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.projects.models import Project, ProjectStatus
from shanju.site import service
from tests.factories import make_org, make_project


def give(session: Session, project: Project, amount_fen: int,
         status: DonationStatus = DonationStatus.PAID, name: str = "王小明") -> Donation:
    """A donation row and its payment intent, written directly."""
    paid = status in (DonationStatus.PAID, DonationStatus.REFUNDED)
    intent = PaymentIntent(
        id=public_id("pi"), provider="sandbox", amount_fen=amount_fen,
        status=IntentStatus.SUCCEEDED if paid else IntentStatus.REQUIRES_PAYMENT,
        idempotency_scope="test", idempotency_key=public_id("k"), request_hash="0" * 64,
    )
    session.add(intent)
    session.flush()
    donation = Donation(
        public_id=public_id("d"), project_id=project.id,
        recipient_org_id=project.recipient_org_id, donor_name=name, amount_fen=amount_fen,
        status=status, payment_intent_id=intent.id, paid_at=utcnow() if paid else None,
    )
    session.add(donation)
    session.flush()
    return donation


def stat(html: str, name: str) -> str:
    match = re.search(rf'data-stat="{name}">([^<]*)<', html)
    assert match, name
    return match.group(1)


def test_totals_count_paid_donations_only(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        org_a, org_b, org_c = make_org(session), make_org(session), make_org(session)
        p1 = make_project(session, org=org_a)
        p2 = make_project(session, org=org_b)
        p3 = make_project(session, org=org_c)
        give(session, p1, 10_000)
        give(session, p1, 2_550)
        give(session, p2, 50_000)
        give(session, p2, 99_900, DonationStatus.PENDING)
        give(session, p3, 70_000, DonationStatus.REFUNDED)
        give(session, p3, 1_000, DonationStatus.FAILED)
    html = client.get("/").text
    assert stat(html, "raised") == "¥625.50"  # 100 + 25.50 + 500 yuan
    assert stat(html, "donations") == "3"
    # Organizations are the approved ones, whether or not they received a gift yet.
    assert stat(html, "organizations") == "3"


def test_organizations_figure_counts_approved_organizations(client: TestClient, db: Database
                                                           ) -> None:
    with db.transaction() as session:
        make_org(session)
        make_org(session)
        make_org(session, status=OrgStatus.PENDING)
        make_org(session, status=OrgStatus.SUSPENDED)
        make_org(session, status=OrgStatus.REJECTED)
    html = client.get("/").text
    # A new platform with approved organizations but no gifts does not read "0".
    assert stat(html, "organizations") == "2"
    assert stat(html, "donations") == "0"
    labels = re.findall(r'<div class="stat">.*?<span>([^<]*)</span>', html)
    assert labels == ["善款", "人次", "公益组织"]


def test_empty_platform(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert stat(response.text, "raised") == "¥0.00"
    assert stat(response.text, "donations") == "0"
    assert "暂时还没有正在募捐的项目。" in response.text


def test_featured_projects_come_first_then_most_raised(db: Database) -> None:
    with db.transaction() as session:
        org = make_org(session, name="北京春蕾助学基金会")
        featured = make_project(session, org=org, title="春蕾计划")
        featured.featured = True
        hidden = make_project(session, org=org, status=ProjectStatus.DRAFT, title="草稿")
        hidden.featured = True
        small = make_project(session, org=org, title="小额")
        big = make_project(session, org=org, title="大额", goal_fen=100_000)
        ended = make_project(session, org=org, status=ProjectStatus.ENDED, title="已结束")
        give(session, small, 1_000)
        give(session, big, 150_000)
        give(session, big, 5_000, DonationStatus.PENDING)
        give(session, ended, 900_000)
        ids = {"featured": featured.id, "small": small.id, "big": big.id}
    with db.transaction(write=False) as session:
        cards = service.featured_projects(session=session, limit=3)
    assert [c.id for c in cards] == [ids["featured"], ids["big"], ids["small"]]
    top = cards[1]
    assert (top.raised_fen, top.donations, top.percent, top.bar_percent) == (150_000, 1, 150, 100)
    assert cards[0].organization_name == "北京春蕾助学基金会"
    assert cards[0].raised_fen == 0


def test_home_page_uses_few_queries(db: Database) -> None:
    with db.transaction() as session:
        for _ in range(3):
            org = make_org(session)
            for _ in range(3):
                give(session, make_project(session, org=org), 1_000)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    def home() -> tuple[service.HomeTotals, list[service.ProjectCard]]:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            with db.transaction(write=False) as session:
                return service.home_page(session=session)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)

    totals, cards = home()
    assert len(cards) == 6
    assert totals.donations == 9
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 7
    assert sum("FROM gifts" in s for s in selects) == 1  # every total from one sum
    # The next request reuses the process's snapshot: no sum over the gifts at all.
    totals, cards = home()
    assert totals.donations == 9
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert not [s for s in selects if "FROM gifts" in s]
    assert len(selects) <= 6


def test_home_page_shows_cards_with_progress(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org, title="山区孩子过冬计划", goal_fen=100_000)
        give(session, project, 25_000)
        pid = project.id
        assert session.get(Organization, org.id) is not None
    html = client.get("/").text
    assert "山区孩子过冬计划" in html
    assert f'href="/projects/{pid}"' in html
    assert 'style="width: 25%"' in html
    assert "1 人次" in html
    assert 'href="/organizations"' in html


def test_home_page_in_english(client: TestClient) -> None:
    html = client.get("/?lang=en").text
    assert "Featured projects" in html
    assert "Every fen is accounted for" in html
