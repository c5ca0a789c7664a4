"""The demo seeder: consistent money, every lifecycle state, deterministic, empty-only."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import files, images
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.images import ImageVariant
from shanju.core.migrations import create_schema
from shanju.demo import covers as covers_module
from shanju.demo.seed import DEMO_ACCOUNTS, DEMO_PASSWORD, is_empty, seed
from shanju.donations.models import Donation, DonationStatus
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, JournalEntry, LedgerAccount
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus
from shanju.payments.models import IntentStatus, PaymentIntent, Refund
from shanju.projects.models import FundUsage, Project, ProjectStatus
from shanju.transparency import service as ts
from shanju.transparency.check import check as transparency_check
from tests.factories import make_user

NOW = dt.datetime(2025, 9, 20, 12, 0, tzinfo=dt.UTC)


def _count(session, model, *where) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_small_seed_is_consistent_and_covers_every_project_state(db: Database,
                                                                tmp_path: Path) -> None:
    with db.transaction() as session:
        report = seed(session, scale=0.02, now=NOW, upload_dir=tmp_path)

    with db.transaction(write=False) as session:
        check = ledger.check(session)
        assert check.ok, check
        logged = transparency_check(session)
        assert logged.ok, dict(logged.problems)
        assert logged.entries == _count(session, JournalEntry)
        statuses = set(session.scalars(select(Project.status).distinct()))
        assert statuses == set(ProjectStatus)

        # One succeeded sandbox intent and one donation.paid entry per donation.
        donations = _count(session, Donation)
        assert donations == report.donations >= 60
        assert _count(session, PaymentIntent, PaymentIntent.status == IntentStatus.SUCCEEDED,
                      PaymentIntent.provider == "sandbox") == donations
        assert _count(session, JournalEntry, JournalEntry.kind == "donation.paid") == donations
        refunds = _count(session, Refund)
        assert refunds == report.refunds >= 2
        assert _count(session, Donation, Donation.status == DonationStatus.REFUNDED) == refunds
        for kind in ("donation.refund_requested", "donation.refunded"):
            assert _count(session, JournalEntry, JournalEntry.kind == kind) == refunds

        # Project funds hold exactly the paid, unrefunded gifts minus disclosed usage.
        paid = dict(session.execute(
            select(Donation.project_id, func.sum(Donation.amount_fen))
            .where(Donation.status == DonationStatus.PAID).group_by(Donation.project_id)
        ).all())
        used = dict(session.execute(
            select(FundUsage.project_id, func.sum(FundUsage.amount_fen))
            .group_by(FundUsage.project_id)
        ).all())
        assert used, "some projects disclose fund usage"
        for project_id, raised in paid.items():
            fund = ledger.balance(session, ledger.project_fund(project_id))
            assert fund == raised - used.get(project_id, 0) >= 0
        assert _count(session, FundUsage, FundUsage.journal_entry_id.is_(None)) == 0
        # Donations only go to projects that have been raising money.
        donated = set(session.scalars(
            select(Project.status).join(Donation, Donation.project_id == Project.id).distinct()
        ))
        assert donated <= {ProjectStatus.FUNDRAISING, ProjectStatus.PAUSED, ProjectStatus.ENDED,
                           ProjectStatus.EXECUTING, ProjectStatus.COMPLETED,
                           ProjectStatus.TAKEN_DOWN}
        balances = session.scalars(select(LedgerAccount.balance_fen).where(
            LedgerAccount.kind != AccountKind.DONOR_CLEARING
        ))
        assert all(b >= 0 for b in balances)


def test_seeded_organizations_and_demo_accounts_are_usable(db: Database,
                                                           tmp_path: Path) -> None:
    with db.transaction() as session:
        seed(session, scale=0.02, now=NOW, upload_dir=tmp_path)
    with db.transaction(write=False) as session:
        orgs = list(session.scalars(select(Organization)))
        warnings = [o for o in orgs if uscc.validate(o.uscc).warning]
        assert len(warnings) == 1 and warnings[0].uscc_warning
        assert any(o.status == OrgStatus.PENDING for o in orgs)
        today = NOW.date()
        # Projects of organizations without the qualification raise through a partner.
        by_id = {o.id: o for o in orgs}
        for project in session.scalars(select(Project)):
            recipient = by_id[project.recipient_org_id]
            assert recipient.is_qualified_on(today)
            if not by_id[project.organization_id].is_qualified_on(today):
                assert project.recipient_org_id != project.organization_id

        for email, role, _name in DEMO_ACCOUNTS:
            user = accounts.authenticate(session=session, email=email, password=DEMO_PASSWORD)
            assert user.role == role
        staff = session.scalar(select(User).where(User.email == "org@demo.shanju.org"))
        assert staff is not None and staff.organization_id is not None
        org = by_id[staff.organization_id]
        assert org.status == OrgStatus.APPROVED and org.is_qualified_on(today)
        assert _count(session, Project, Project.organization_id == org.id,
                      Project.status == ProjectStatus.FUNDRAISING) >= 2
        donor = session.scalar(select(User).where(User.email == "donor@demo.shanju.org"))
        assert donor is not None
        assert _count(session, Donation, Donation.donor_id == donor.id) >= 3


def test_seed_is_deterministic(tmp_path: Path) -> None:
    def titles(name: str) -> list[tuple[str, int]]:
        database = Database(f"sqlite:///{tmp_path / name}")
        create_schema(database)
        with database.transaction() as session:
            seed(session, scale=0.02, now=NOW, upload_dir=tmp_path / "uploads")
        with database.transaction(write=False) as session:
            rows = session.execute(
                select(Project.title, func.coalesce(func.sum(Donation.amount_fen), 0))
                .outerjoin(Donation, Donation.project_id == Project.id)
                .group_by(Project.id, Project.title).order_by(Project.id)
            ).all()
        database.dispose()
        return [(str(t), int(s)) for t, s in rows]

    assert titles("a.sqlite3") == titles("b.sqlite3")


def test_seed_refuses_a_database_that_holds_data(db: Database, tmp_path: Path) -> None:
    with db.transaction() as session:
        make_user(session, role=Role.DONOR)
    with db.transaction() as session:
        assert not is_empty(session)
        with pytest.raises(RuntimeError, match="already holds data"):
            seed(session, scale=0.02, now=NOW, upload_dir=tmp_path)
    with db.transaction(write=False) as session:
        assert _count(session, User) == 1
        assert _count(session, Project) == 0


def test_demo_categories_are_the_projects_domain_categories() -> None:
    from shanju.demo import data
    from shanju.projects.service import CATEGORIES

    assert set(data.CATEGORY_WEIGHTS) <= set(CATEGORIES)
    assert set(data.PROJECTS) <= set(CATEGORIES)


def test_the_demo_giving_day_is_live_with_gifts_through_the_engine(db: Database,
                                                                   tmp_path: Path) -> None:
    from shanju.campaigns import check as campaigns_check
    from shanju.campaigns.models import Campaign, CampaignGift, CampaignStatus, MatchStatus

    with db.transaction() as session:
        report = seed(session, scale=0.02, upload_dir=tmp_path)  # today: the giving day is live

    with db.transaction(write=False) as session:
        assert ledger.check(session).ok
        assert campaigns_check.check(session).ok
        # The log holds every money movement of the demo: every entry, its postings exactly.
        logged = transparency_check(session)
        assert logged.ok, dict(logged.problems)
        assert logged.entries == _count(session, JournalEntry)
        kinds = {json.loads(leaf.data)["kind"] for leaf in ts.entries(session, 0, 1)}
        assert kinds  # readable leaves from the first one on
        gift = session.scalar(select(CampaignGift).where(CampaignGift.donor_id.is_not(None))
                              .limit(1))
        assert gift is not None
        assert ts.leaves_by_ref(session, f"gift:{gift.order_id}")
        donation = session.scalar(select(Donation).where(Donation.donor_id.is_not(None))
                                  .limit(1))
        assert donation is not None
        assert ts.leaves_by_ref(session, f"donation:{donation.public_id}")
        campaign = session.scalar(select(Campaign).where(Campaign.slug == "99"))
        assert campaign is not None and campaign.status == CampaignStatus.LIVE
        gifts = _count(session, CampaignGift)
        assert gifts == report.giving_day_gifts >= 40
        assert _count(session, CampaignGift,
                      CampaignGift.match_status == MatchStatus.MATCHED) > 0
        # The cases the explanations are for: held (shared payer), too fast, own organization.
        reasons = set(session.scalars(select(CampaignGift.reason).distinct()))
        assert {"shared_payer", "too_fast", "staff_own_org"} <= reasons, reasons
        assert _count(session, CampaignGift,
                      CampaignGift.match_status == MatchStatus.HELD) >= 1


def test_every_demo_project_has_a_drawn_cover_and_a_story(db: Database, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    yesterday = utcnow() - dt.timedelta(days=1)  # in the past: no live giving day, quicker
    with db.transaction() as session:
        seed(session, scale=0.02, now=yesterday, upload_dir=uploads)

    def cover_files(session: Session) -> list[Path]:
        shas = session.scalars(
            select(ImageVariant.sha256)
            .join(Project, Project.cover_image_id == ImageVariant.attachment_id)).all()
        return [files.path_for(uploads, sha) for sha in shas]

    with db.transaction(write=False) as session:
        projects = session.scalars(select(Project).order_by(Project.id)).all()
        assert len(projects) >= 10 and {p.status for p in projects} == set(ProjectStatus)
        covers = images.pictures(session=session,
                                 attachment_ids=[p.cover_image_id for p in projects])
        for project in projects:
            assert project.cover_image_id in covers, project.title
            cover = covers[project.cover_image_id]
            assert cover.widths == (320, 640, 1280), project.title
            assert (cover.width, cover.height) == (1280, 720)
            assert project.title in cover.alt
            assert project.story and "化名" in project.story
        stored = cover_files(session)
        assert len(stored) == 3 * len(projects)
        for path in set(stored):
            with Image.open(path) as im:
                assert im.format == "WEBP" and not im.getexif()
        # One drawing per design, shared by the projects written from the same text.
        assert len(set(stored)) < len(stored)

    # A demo whose uploads were deleted gets its covers drawn again on its next start.
    shutil.rmtree(uploads)
    with db.transaction() as session:
        assert covers_module.do_give_missing_covers(session=session,
                                                    upload_dir=uploads) == len(projects)
    with db.transaction() as session:
        assert all(path.is_file() for path in cover_files(session))
        assert covers_module.do_give_missing_covers(session=session, upload_dir=uploads) == 0
