"""Seed a database with realistic, deterministic demo data.

About 30 organizations across provinces, about 100 projects in every lifecycle state and
about 20,000 paid donations over the last 30 days (more in the evenings and on one giving
day), with refunds, progress updates, fund-usage disclosures and a few complaints; the
receiving organizations' WeChat Pay and Alipay accounts approved (``demo/payments.py``: the
demo pays through the providers' emulators). Every project has a cover drawn by
``demo/covers.py`` and a beneficiary's story.

Everything is planned in memory from one seeded :class:`random.Random` first, then written
with bulk inserts. Money goes through :func:`shanju.ledger.service.post_many` exactly as the
ledger contract prescribes, so ``shanju ledger check`` holds afterwards. The seeder only
flushes: the caller (``shanju demo``) owns the transaction, so a half-seeded database is
never committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.complaints import service as complaints
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.core import audit
from shanju.core.clock import CHINA_TZ, today_cn, utcnow
from shanju.core.config import get_settings
from shanju.core.security import hash_password
from shanju.demo import data
from shanju.demo.data import AMOUNTS
from shanju.donations.models import Donation, DonationStatus
from shanju.ledger import service as ledger
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.payments.models import IntentStatus, PaymentIntent, Refund, RefundStatus
from shanju.projects.models import FundUsage, Project, ProjectStatus, ProjectUpdate

DEMO_PASSWORD = "shanju-demo"  # noqa: S105 - published in the README on purpose
DEFAULT_RANDOM_SEED = 99
DAYS = 30
LEDGER_BATCH = 2500
REQUEST_HASH = "0" * 64  # demo intents were never requested over HTTP

# (email, role, display name): printed by ``shanju demo`` and listed in the README.
DEMO_ACCOUNTS: tuple[tuple[str, Role, str], ...] = (
    ("donor@demo.shanju.org", Role.DONOR, "李明"),
    # Organizes and moderates the demo summit (created with it, by demo/summit.py). Listed
    # before org@: code that maps roles to one account each keeps the last one of a role.
    ("summit@demo.shanju.org", Role.ORG_STAFF, "卢思"),
    ("org@demo.shanju.org", Role.ORG_STAFF, "王芳"),
    ("reviewer@demo.shanju.org", Role.REVIEWER, "赵审核"),
    ("admin@demo.shanju.org", Role.ADMIN, "平台管理员"),
)

# How 100 projects spread over the lifecycle; every state gets at least one at any scale.
STATUS_SHARES: tuple[tuple[ProjectStatus, int], ...] = (
    (ProjectStatus.DRAFT, 5),
    (ProjectStatus.SUBMITTED, 6),
    (ProjectStatus.APPROVED, 4),
    (ProjectStatus.REJECTED, 4),
    (ProjectStatus.FUNDRAISING, 55),
    (ProjectStatus.PAUSED, 3),
    (ProjectStatus.ENDED, 6),
    (ProjectStatus.EXECUTING, 8),
    (ProjectStatus.COMPLETED, 6),
    (ProjectStatus.TAKEN_DOWN, 3),
)
RAISING = frozenset({
    ProjectStatus.FUNDRAISING, ProjectStatus.PAUSED, ProjectStatus.ENDED,
    ProjectStatus.EXECUTING, ProjectStatus.COMPLETED, ProjectStatus.TAKEN_DOWN,
})
# Relative giving by hour of day, China time: lunch and evening peaks.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 1, 2, 4, 6, 6, 7, 8, 10, 9, 7, 7, 7, 8, 10, 14, 18, 20, 16, 8)
GIVING_DAY_AGO = 9  # days before today
GOALS_YUAN = (50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000, 2_000_000)
ID_ALPHABET = "0123456789abcdefghijkmnopqrstuvwxyz"

ProgressCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class Plan:
    """How much to create at a given scale (1.0 is the full demo)."""

    organizations: int
    projects: dict[ProjectStatus, int]
    donations: int
    donor_users: int
    giving_day_gifts: int
    summit_organizations: int

    @classmethod
    def for_scale(cls, scale: float) -> Plan:
        """Counts for ``scale`` (0.02 makes a quick test database with every state)."""
        if scale <= 0:
            raise ValueError("scale must be positive")
        n_projects = round(100 * scale)
        projects = {s: max(1, round(share * n_projects / 100)) for s, share in STATUS_SHARES}
        projects[ProjectStatus.FUNDRAISING] = max(3, projects[ProjectStatus.FUNDRAISING])
        return cls(
            organizations=max(8, round(30 * scale)),
            projects=projects,
            donations=max(60, round(20_000 * scale)),
            donor_users=max(6, round(4000 * scale)),
            giving_day_gifts=max(40, round(5000 * scale)),
            summit_organizations=max(20, round(3000 * scale)),
        )

    @property
    def total_steps(self) -> int:
        """Units of work for a progress bar: rows planned and money posted."""
        return (self.organizations + sum(self.projects.values()) + 2 * self.donations
                + self.giving_day_gifts + self.summit_organizations + 1)


@dataclass
class SeedReport:
    """What the seeder created."""

    organizations: int = 0
    users: int = 0
    projects: int = 0
    projects_by_status: dict[str, int] = field(default_factory=dict)
    donations: int = 0
    refunds: int = 0
    fund_usages: int = 0
    raised_fen: int = 0
    giving_day_gifts: int = 0
    payment_routes: int = 0
    summit_slug: str = ""
    summit_organizations: int = 0


def is_empty(session: Session) -> bool:
    """Tell whether the database holds no users and no organizations (safe to seed)."""
    users = session.scalar(select(func.count()).select_from(User)) or 0
    orgs = session.scalar(select(func.count()).select_from(Organization)) or 0
    return users == 0 and orgs == 0


def seed(
    session: Session,
    *,
    scale: float = 1.0,
    random_seed: int = DEFAULT_RANDOM_SEED,
    now: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
    summit_organizations: int | None = None,
    secret_key: str | None = None,
    upload_dir: Path | None = None,
) -> SeedReport:
    """Fill an empty database with demo data in the caller's transaction.

    ``summit_organizations`` overrides how many organizations register for the demo summit
    (the plan's count for ``scale`` by default; 3,000 at full scale). ``secret_key`` seals the
    organizations' Alipay authorization tokens (the environment's ``SHANJU_SECRET_KEY`` by
    default: the one the demo serves with). The projects' cover pictures are written to
    ``upload_dir`` (the environment's ``SHANJU_UPLOAD_DIR`` by default).
    """
    if not is_empty(session):
        raise RuntimeError("the database already holds data; seed only an empty one")
    plan = Plan.for_scale(scale)
    if summit_organizations is not None:
        plan = dataclasses.replace(plan, summit_organizations=summit_organizations)
    return _Seeder(session, plan, random.Random(random_seed),  # noqa: S311
                   now or utcnow(), progress,
                   secret_key=secret_key or get_settings().secret_key,
                   upload_dir=upload_dir or get_settings().upload_dir).run()


# --- the seeder ----------------------------------------------------------------------------


@dataclass
class _OrgPlan:
    row: dict[str, Any]
    qualified: bool
    staff_id: int = 0
    id: int = 0


@dataclass
class _ProjectPlan:
    row: dict[str, Any]
    org: _OrgPlan
    window: tuple[dt.date, dt.date] | None  # China dates donations may fall on
    popularity: float
    id: int = 0
    fund_fen: int = 0
    donations: int = 0


@dataclass
class _DonationPlan:
    project: _ProjectPlan
    at: dt.datetime
    amount_fen: int
    donor_id: int | None
    name: str
    province: str | None
    anonymous: bool
    message: str
    public_id: str = ""
    intent_id: str = ""
    refunded_at: dt.datetime | None = None


class _Seeder:
    def __init__(
        self,
        session: Session,
        plan: Plan,
        rng: random.Random,
        now: dt.datetime,
        progress: ProgressCallback | None,
        *,
        secret_key: str,
        upload_dir: Path,
    ) -> None:
        self.session = session
        self.upload_dir = upload_dir
        self.secret_key = secret_key
        self.plan = plan
        self.rng = rng
        self.now = now
        self.today = now.astimezone(CHINA_TZ).date()
        self.progress = progress or (lambda _n, _s: None)
        self.password_hash = hash_password(DEMO_PASSWORD)
        self.report = SeedReport()
        self.used_ids: set[str] = set()

    # helpers ---------------------------------------------------------------------------

    def token(self, prefix: str, length: int = 20) -> str:
        while True:
            value = prefix + "".join(self.rng.choices(ID_ALPHABET, k=length))
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def person_name(self) -> str:
        surname = self.rng.choice(data.SURNAMES)
        given = "".join(self.rng.choices(data.GIVEN_CHARS, k=self.rng.choice((1, 2, 2))))
        return surname + given

    def province(self) -> str:
        names = [p[0] for p in data.PROVINCES]
        weights = [p[3] for p in data.PROVINCES]
        return self.rng.choices(names, weights)[0]

    def days_ago(self, lo: int, hi: int) -> dt.datetime:
        seconds = self.rng.randint(lo * 86400, hi * 86400)
        return self.now - dt.timedelta(seconds=seconds)

    def local_noon(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(12), CHINA_TZ).astimezone(dt.UTC)

    def insert_returning_ids(self, model: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
        return [int(v) for v in self.session.scalars(stmt, list(rows))]

    # steps -----------------------------------------------------------------------------

    def run(self) -> SeedReport:
        self.create_platform_users()
        orgs = self.create_organizations()
        projects = self.plan_projects(orgs)
        donations = self.plan_donations(projects)
        self.set_goals(projects)
        self.insert_projects(projects)
        self.give_covers(projects)
        self.insert_donations(donations)
        self.post_refunds(donations)
        self.create_updates_and_usages(projects)
        self.create_complaints(projects)
        self.approve_payment_routes()
        self.seed_giving_day()
        self.seed_summit()
        audit.record(
            self.session, actor_id=None, action="demo.data.seeded", object_type="database",
            object_id="demo",
            data={"new": {"organizations": self.report.organizations,
                          "projects": self.report.projects,
                          "donations": self.report.donations,
                          "giving_day_gifts": self.report.giving_day_gifts}},
        )
        self.session.flush()
        self.progress(1, "done")
        return self.report

    def seed_giving_day(self) -> None:
        """A live 99公益日 (sponsors, pools, enrolled projects) and today's gifts so far,
        through the giving-day engine's batch code. A seed dated in the past (a fixed clock)
        has no live giving day: campaigns cannot start in the past."""
        from shanju.demo import campaign, crowd

        today = self.now.astimezone(CHINA_TZ).date()
        if today < today_cn():
            return

        admin = self.session.get(User, self.admin_id)
        campaign.seed_campaign(self.session, actor=admin, today=today)
        results = crowd.seed_gifts(
            self.session, gifts=self.plan.giving_day_gifts, rng=self.rng, now=self.now,
            progress=lambda n: self.progress(n, "giving day"),
        )
        self.report.giving_day_gifts = len(results)

    def approve_payment_routes(self) -> None:
        """Every approved organization's WeChat Pay and Alipay accounts, submitted by its
        staff and approved by the demo reviewer: the demo pays through the emulators."""
        from shanju.demo import payments

        reviewer = self.session.get_one(User, self.reviewer_id)
        self.report.payment_routes = payments.do_approve_routes(
            session=self.session, reviewer=reviewer, secret_key=self.secret_key)

    def seed_summit(self) -> None:
        """The demo's two-day online summit, live now, with its registered organizations."""
        from shanju.demo import summit

        result = summit.seed_summit(
            self.session, now=self.now, rng=random.Random(self.rng.random()),  # noqa: S311
            organizations=self.plan.summit_organizations, password_hash=self.password_hash,
            progress=lambda n: self.progress(n, "summit"))
        self.report.summit_slug = result.slug
        self.report.summit_organizations = result.organizations
        self.report.users += result.users

    def create_platform_users(self) -> None:
        rows = []
        for email, role, name in DEMO_ACCOUNTS:
            if role == Role.ORG_STAFF:
                continue  # created with the organization it works for
            rows.append(self.user_row(email, name, role, province="北京"))
        ids = self.insert_returning_ids(User, rows)
        self.demo_donor_id = ids[0]
        self.admin_id = ids[-1]
        self.reviewer_id = ids[1]
        donor_rows = [
            self.user_row(f"donor{i:04d}@demo.shanju.org", self.person_name(), Role.DONOR,
                          province=self.province() if self.rng.random() < 0.95 else None)
            for i in range(1, self.plan.donor_users)
        ]
        donor_ids = self.insert_returning_ids(User, donor_rows)
        self.donors: list[tuple[int, str, str | None]] = [(ids[0], "李明", "北京")] + [
            (uid, str(row["display_name"]), row["province"])
            for uid, row in zip(donor_ids, donor_rows, strict=True)
        ]
        self.report.users += len(rows) + len(donor_rows)

    def user_row(
        self, email: str, name: str, role: Role, *, province: str | None
    ) -> dict[str, Any]:
        return {
            "email": email, "display_name": name, "password_hash": self.password_hash,
            "role": role, "province": province, "is_active": True,
            "created_at": self.days_ago(31, 400),
        }

    def create_organizations(self) -> list[_OrgPlan]:
        n = self.plan.organizations
        n_pending = max(1, round(n * 0.1))
        n_unqualified = max(1, round(n * 0.13))
        names: set[str] = set()
        orgs: list[_OrgPlan] = []
        for i in range(n):
            if i == 0:
                province, kind, pattern = "云南", "foundation", "{p}{k}基金会"
            else:
                province = self.province()
                kind, pattern = self.rng.choice(data.ORG_NAMES)
            while True:
                place = data.CITIES[province] if "市" in pattern else province
                name = pattern.format(p=place, k=self.rng.choice(data.ORG_THEMES))
                if name not in names:
                    names.add(name)
                    break
            pending = i >= n - n_pending
            qualified = not pending and not (1 <= i <= n_unqualified)
            orgs.append(self.org_plan(i, name, kind, province, pending=pending,
                                      qualified=qualified, pilot=(i == n - 1)))
        staff_rows = []
        for i, org in enumerate(orgs):
            email = "org@demo.shanju.org" if i == 0 else f"staff{i:02d}@demo.shanju.org"
            name = "王芳" if i == 0 else self.person_name()
            staff_rows.append(self.user_row(email, name, Role.ORG_STAFF,
                                            province=org.row["province"]))
        staff_ids = self.insert_returning_ids(User, staff_rows)
        for org, staff_id in zip(orgs, staff_ids, strict=True):
            org.staff_id = staff_id
            org.row["created_by_id"] = staff_id
            org.row["contact_name"] = next(
                r["display_name"] for r, s in zip(staff_rows, staff_ids, strict=True)
                if s == staff_id
            )
        org_ids = self.insert_returning_ids(Organization, [o.row for o in orgs])
        for org, org_id in zip(orgs, org_ids, strict=True):
            org.id = org_id
        self.session.execute(
            update(User),
            [{"id": o.staff_id, "organization_id": o.id} for o in orgs],
        )
        self.report.users += len(staff_rows)
        self.report.organizations = n
        self.progress(n, "organizations")
        return orgs

    def org_plan(self, i: int, name: str, kind: str, province: str, *, pending: bool,
                 qualified: bool, pilot: bool) -> _OrgPlan:
        type_digit = {"social_group": "1", "social_service": "2", "foundation": "3"}[kind]
        division = data.PROVINCE_CODES[province]
        if pilot:
            # An early pilot code: the embedded organization code fails its mod-11 check
            # but the final check character is right, so it is accepted with a warning.
            body = f"{50002100 + i:08d}"
            wrong = next(c for c in "0123456789" if c != uscc.org_code_check(body))
            first17 = f"5{type_digit}{division}{body}{wrong}"
            code = first17 + uscc.check_digit(first17)
        else:
            code = uscc.make(f"5{type_digit}{division}MJ{self.rng.randint(0, 9999):04d}{i:02d}")
        warning = uscc.validate(code).warning
        created = self.days_ago(60, 900)
        city = data.CITIES[province]
        street = self.rng.choice(("人民路", "解放路", "建设路", "中山路"))
        authority = data.PROVINCE_AUTHORITY[province]
        founded = created.year - self.rng.randint(1, 15)
        valid_from = self.today - dt.timedelta(days=self.rng.randint(200, 1500))
        expired = not qualified and not pending and i == 1
        row: dict[str, Any] = {
            "name": name,
            "short_name": None,
            "uscc": code,
            "uscc_warning": warning,
            "org_type": OrgType(kind),
            "registering_authority": authority,
            "province": province,
            "city": city,
            "address": f"{city}市{street}{self.rng.randint(1, 300)}号",
            "contact_phone": f"400-{self.rng.randint(100, 999)}-{self.rng.randint(1000, 9999)}",
            "contact_email": f"contact{i:02d}@demo.shanju.org",
            "website": None,
            "description": (
                f"{name}于{founded}年在{authority}登记成立"
                ",长期关注困境人群，项目执行与财务信息定期向社会公开。"
            ),
            "fundraising_cert_no": code if (qualified or expired) else None,
            "fundraising_valid_from": valid_from if (qualified or expired) else None,
            "fundraising_valid_until": (
                self.today - dt.timedelta(days=30) if expired
                else valid_from + dt.timedelta(days=5 * 365) if qualified else None
            ),
            "status": OrgStatus.PENDING if pending else OrgStatus.APPROVED,
            "review_note": None,
            "created_at": created,
            "reviewed_at": None if pending else created + dt.timedelta(days=3),
        }
        if qualified and row["fundraising_valid_until"] < self.today + dt.timedelta(days=200):
            row["fundraising_valid_until"] = self.today + dt.timedelta(days=365)
        return _OrgPlan(row=row, qualified=qualified)

    def plan_projects(self, orgs: list[_OrgPlan]) -> list[_ProjectPlan]:
        approved = [o for o in orgs if o.row["status"] == OrgStatus.APPROVED]
        partners = [o for o in approved if o.qualified]
        statuses: list[ProjectStatus] = []
        for status, count in self.plan.projects.items():
            statuses.extend([status] * count)
        categories = list(data.CATEGORY_WEIGHTS)
        weights = list(data.CATEGORY_WEIGHTS.values())
        filing_seq: dict[int, int] = defaultdict(int)
        projects: list[_ProjectPlan] = []
        titles: set[str] = set()
        demo_org_fundraising = 0
        for status in statuses:
            # The demo organization gets a few fundraising projects to show in its console.
            if status == ProjectStatus.FUNDRAISING and demo_org_fundraising < 3:
                owner = orgs[0]
                demo_org_fundraising += 1
            else:
                owner = self.rng.choice(approved)
            recipient = owner if owner.qualified else self.rng.choice(partners)
            while True:
                category = self.rng.choices(categories, weights)[0]
                province, place = self.rng.choice(data.PLACES)
                title_t, summary_t, plan_t = self.rng.choice(data.PROJECTS[category][1])
                title = title_t.format(place=place)
                if title not in titles:
                    titles.add(title)
                    break
            row, window = self.project_dates(status)
            if status not in (ProjectStatus.DRAFT, ProjectStatus.SUBMITTED,
                              ProjectStatus.REJECTED):
                filing_seq[recipient.id] += 1
                row["filing_number"] = (
                    f"{recipient.row['uscc']}{row['filing_valid_from'].year}"
                    f"{filing_seq[recipient.id]:03d}"
                )
            else:
                row["filing_valid_from"] = row["filing_valid_until"] = None
            row.update(
                organization_id=owner.id,
                recipient_org_id=recipient.id,
                title=title,
                summary=summary_t.format(place=place),
                description=self.description(category, place, recipient, owner),
                category=category,
                province=province,
                goal_fen=100_000_00,  # replaced by set_goals once donations are planned
                fundraising_plan=plan_t,
                created_by_id=owner.staff_id,
                featured=False,
                story=self.story(category, place, title),
            )
            popularity = min(self.rng.paretovariate(1.3), 25.0)
            projects.append(_ProjectPlan(row=row, org=owner, window=window,
                                         popularity=popularity))
        self.progress(len(projects), "projects")
        return projects

    def description(self, category: str, place: str, recipient: _OrgPlan,
                    owner: _OrgPlan) -> str:
        label = data.PROJECTS[category][0]
        text = (
            f"{place}地处偏远，{label}需求长期得不到满足。本项目由{owner.row['name']}发起,"
            "联合当地政府部门、学校和社区志愿者，摸底核实受助对象，按计划执行并定期公开进展。\n\n"
            "善款全部用于项目执行；每一笔支出都会在项目页的资金使用披露中公示。"
        )
        if recipient is not owner:
            text += f"\n\n本项目由具有公开募捐资格的{recipient.row['name']}开展公开募捐并接收善款。"
        return text

    def story(self, category: str, place: str, title: str) -> str:
        # Chosen by the title, not drawn from the seeded generator: adding stories changed no
        # other demo data.
        stories = data.STORIES.get(category, ())
        if not stories:
            return ""
        pick = int(hashlib.sha256(title.encode()).hexdigest(), 16) % len(stories)
        return stories[pick].format(place=place)

    def give_covers(self, projects: list[_ProjectPlan]) -> None:
        """A cover drawn for every project (demo/covers.py), stored as an upload would be."""
        from shanju.demo import covers

        covers.do_give_covers(
            session=self.session, upload_dir=self.upload_dir,
            projects=[(p.id, p.row["category"], p.row["title"]) for p in projects])

    def project_dates(
        self, status: ProjectStatus
    ) -> tuple[dict[str, Any], tuple[dt.date, dt.date] | None]:
        today, rng = self.today, self.rng
        row: dict[str, Any] = {"status": status, "status_before_pause": None,
                               "review_note": None, "filing_number": None}
        window: tuple[dt.date, dt.date] | None = None
        if status in RAISING:
            starts = today - dt.timedelta(days=rng.randint(5, 70))
            if status == ProjectStatus.FUNDRAISING:
                ends = today + dt.timedelta(days=rng.randint(10, 150))
                window = (starts, today)
            elif status in (ProjectStatus.PAUSED, ProjectStatus.TAKEN_DOWN):
                ends = today + dt.timedelta(days=rng.randint(20, 90))
                window = (starts, today - dt.timedelta(days=rng.randint(1, 4)))
            else:
                back = {ProjectStatus.ENDED: (1, 8), ProjectStatus.EXECUTING: (6, 18),
                        ProjectStatus.COMPLETED: (19, 26)}[status]
                starts = today - dt.timedelta(days=rng.randint(40, 120))
                ends = today - dt.timedelta(days=rng.randint(*back))
                window = (starts, ends)
            if status == ProjectStatus.PAUSED:
                row["status_before_pause"] = ProjectStatus.FUNDRAISING
                row["review_note"] = "平台核查受助人信息期间暂停募捐。"
            if status == ProjectStatus.TAKEN_DOWN:
                row["review_note"] = "经核查，项目受助信息与事实不符，依规下线并通知捐赠人。"
        elif status == ProjectStatus.APPROVED:
            starts = today + dt.timedelta(days=rng.randint(1, 14))
            ends = starts + dt.timedelta(days=rng.randint(60, 180))
        else:
            starts = today + dt.timedelta(days=rng.randint(7, 30))
            ends = starts + dt.timedelta(days=rng.randint(60, 180))
            if status == ProjectStatus.REJECTED:
                row["review_note"] = rng.choice((
                    "募捐方案缺少预算明细，请补充后重新提交。",
                    "受助对象的核实材料不完整。",
                    "项目执行地点与机构业务范围不符。",
                ))
        created = self.local_noon(starts) - dt.timedelta(days=rng.randint(10, 30))
        created = min(created, self.now - dt.timedelta(days=1))
        submitted = reviewed = None
        if status != ProjectStatus.DRAFT:
            submitted = created + dt.timedelta(hours=rng.randint(2, 72))
            submitted = min(submitted, self.now - dt.timedelta(hours=6))
        if status not in (ProjectStatus.DRAFT, ProjectStatus.SUBMITTED):
            assert submitted is not None  # noqa: S101 - set just above for these states
            reviewed = min(submitted + dt.timedelta(hours=rng.randint(4, 48)),
                           self.now - dt.timedelta(hours=1))
        row.update(
            starts_on=starts, ends_on=ends,
            filing_valid_from=starts - dt.timedelta(days=3),
            filing_valid_until=ends + dt.timedelta(days=30),
            created_at=created, submitted_at=submitted, reviewed_at=reviewed,
        )
        return row, window

    def plan_donations(self, projects: list[_ProjectPlan]) -> list[_DonationPlan]:
        rng, n = self.rng, self.plan.donations
        first_day = self.today - dt.timedelta(days=DAYS - 1)
        # (day, hour) buckets in China time, weighted by hour and by the giving day.
        buckets: list[tuple[int, int]] = []
        weights: list[float] = []
        for d in range(DAYS):
            day = first_day + dt.timedelta(days=d)
            ago = DAYS - 1 - d
            day_weight = 6.0 if ago == GIVING_DAY_AGO else 1.5 if ago in (
                GIVING_DAY_AGO + 1, GIVING_DAY_AGO - 1) else 1.0 + 0.01 * d
            for h in range(24):
                start = dt.datetime.combine(day, dt.time(h), CHINA_TZ)
                if start < self.now:
                    buckets.append((d, h))
                    weights.append(day_weight * HOUR_WEIGHTS[h])
        eligible: list[tuple[list[_ProjectPlan], list[float]]] = []
        for d in range(DAYS):
            day = first_day + dt.timedelta(days=d)
            open_ = [p for p in projects if p.window and p.window[0] <= day <= p.window[1]]
            if not open_:
                open_ = [p for p in projects if p.row["status"] == ProjectStatus.FUNDRAISING]
            cum: list[float] = []
            total = 0.0
            for p in open_:
                total += p.popularity
                cum.append(total)
            eligible.append((open_, cum))
        amounts = [a for a, _ in AMOUNTS]
        amount_weights = [w for _, w in AMOUNTS]
        chosen = rng.choices(buckets, weights, k=n)
        chosen.sort()
        plans: list[_DonationPlan] = []
        for i, (d, h) in enumerate(chosen):
            day = first_day + dt.timedelta(days=d)
            local = dt.datetime.combine(day, dt.time(h, rng.randint(0, 59), rng.randint(0, 59)),
                                        CHINA_TZ)
            at = min(local.astimezone(dt.UTC), self.now - dt.timedelta(seconds=n - i))
            open_, cum = eligible[d]
            project = rng.choices(open_, cum_weights=cum)[0]
            if rng.random() < 0.2:
                amount = rng.randint(1, 300) * 100
            else:
                amount = rng.choices(amounts, amount_weights)[0]
            # Every gift has a signed-in donor, as through the real flow; some donors show a
            # nickname instead of their name.
            donor_id, name, province = (self.donors[0] if i % 997 == 0
                                        else rng.choice(self.donors))
            if rng.random() < 0.3:
                name = rng.choice(data.NICKNAMES)
            plans.append(_DonationPlan(
                project=project, at=at, amount_fen=amount, donor_id=donor_id, name=name,
                province=province, anonymous=rng.random() < 0.1,
                message=rng.choice(data.MESSAGES) if rng.random() < 0.12 else "",
            ))
        # The demo donor's "my donations" page should have a few gifts on it.
        fundraising = [gift for gift in plans
                       if gift.project.row["status"] == ProjectStatus.FUNDRAISING]
        for gift in fundraising[-5:]:
            gift.donor_id, gift.name, gift.province = self.donors[0]
        # A few refunds, from gifts at least a day old to projects still raising money.
        candidates = [gift for gift in plans if gift.at < self.now - dt.timedelta(days=1)
                      and gift.project.row["status"] in (ProjectStatus.FUNDRAISING,
                                                         ProjectStatus.TAKEN_DOWN)]
        for gift in rng.sample(candidates, min(len(candidates), max(2, round(n * 0.003)))):
            gift.refunded_at = min(gift.at + dt.timedelta(hours=rng.randint(2, 20)),
                                   self.now - dt.timedelta(minutes=5))
        for gift in plans:
            gift.public_id = self.token("d_")
            gift.intent_id = self.token("pi_")
            if gift.refunded_at is None:
                gift.project.fund_fen += gift.amount_fen
                gift.project.donations += 1
        return plans

    def set_goals(self, projects: list[_ProjectPlan]) -> None:
        for p in projects:
            raised = p.fund_fen
            status = p.row["status"]
            if status == ProjectStatus.COMPLETED or status == ProjectStatus.EXECUTING:
                ratio = self.rng.uniform(0.95, 1.02)
            elif status == ProjectStatus.FUNDRAISING:
                ratio = self.rng.uniform(0.08, 1.05)
            elif status in RAISING:
                ratio = self.rng.uniform(0.3, 0.9)
            else:
                ratio = 0.0
            if ratio and raised:
                goal_yuan = max(1000, math.ceil(raised / ratio / 100 / 1000) * 1000)
            else:
                goal_yuan = self.rng.choice(GOALS_YUAN)
            p.row["goal_fen"] = goal_yuan * 100
        top = sorted((p for p in projects if p.row["status"] == ProjectStatus.FUNDRAISING),
                     key=lambda p: -p.popularity)
        for p in top[:6]:
            p.row["featured"] = True

    def insert_projects(self, projects: list[_ProjectPlan]) -> None:
        ids = self.insert_returning_ids(Project, [p.row for p in projects])
        for p, pid in zip(projects, ids, strict=True):
            p.id = pid
        counts: dict[str, int] = defaultdict(int)
        for p in projects:
            counts[p.row["status"].value] += 1
        self.report.projects = len(projects)
        self.report.projects_by_status = dict(counts)

    def insert_donations(self, plans: list[_DonationPlan]) -> None:
        for start in range(0, len(plans), LEDGER_BATCH):
            batch = plans[start:start + LEDGER_BATCH]
            intents, donations, specs = [], [], []
            for d in batch:
                paid_at = d.at + dt.timedelta(seconds=3)
                intents.append({
                    "id": d.intent_id, "provider": "sandbox", "amount_fen": d.amount_fen,
                    "currency": "CNY", "status": IntentStatus.SUCCEEDED,
                    "idempotency_scope": "demo", "idempotency_key": d.public_id,
                    "request_hash": REQUEST_HASH, "provider_txn_id": "sbx_" + d.intent_id[3:],
                    "refunded_fen": d.amount_fen if d.refunded_at else 0,
                    "created_at": d.at, "succeeded_at": paid_at,
                })
                donations.append({
                    "public_id": d.public_id, "project_id": d.project.id,
                    "recipient_org_id": d.project.row["recipient_org_id"],
                    "donor_id": d.donor_id, "donor_name": d.name, "anonymous": d.anonymous,
                    "message": d.message, "province": d.province, "amount_fen": d.amount_fen,
                    "status": DonationStatus.REFUNDED if d.refunded_at else DonationStatus.PAID,
                    "payment_intent_id": d.intent_id, "channel": "web", "created_at": d.at,
                    "paid_at": paid_at, "refunded_at": d.refunded_at,
                })
                specs.append(ledger.transfer(
                    "donation.paid",
                    source=ledger.donor_clearing("sandbox"),
                    destination=ledger.project_fund(d.project.id),
                    amount_fen=d.amount_fen,
                    dedupe_key=f"donation.paid:{d.public_id}", memo=d.public_id,
                    detail=ledger.LogDetail(
                        ref=f"donation:{d.public_id}",
                        donor=None if d.donor_id is None else f"user:{d.donor_id}",
                        public={"project": d.project.id,
                                "organization": d.project.row["recipient_org_id"]}),
                ))
            self.session.execute(insert(PaymentIntent), intents)
            self.session.execute(insert(Donation), donations)
            self.progress(len(batch), "donations")
            ledger.post_many(self.session, specs)
            self.progress(len(batch), "ledger")
        self.report.donations = len(plans)
        self.report.raised_fen = sum(d.amount_fen for d in plans if d.refunded_at is None)

    def post_refunds(self, plans: list[_DonationPlan]) -> None:
        refunded = [d for d in plans if d.refunded_at is not None]
        rows, specs = [], []
        for d in refunded:
            assert d.refunded_at is not None  # noqa: S101 - filtered just above
            refund_id = self.token("re_")
            rows.append({
                "id": refund_id, "intent_id": d.intent_id, "amount_fen": d.amount_fen,
                "status": RefundStatus.SUCCEEDED,
                "reason": self.rng.choice(("捐赠人申请退款", "重复支付", "项目下线，全额退回")),
                "requested_by_id": self.admin_id,
                "created_at": d.refunded_at - dt.timedelta(minutes=3),
                "completed_at": d.refunded_at,
            })
            detail = ledger.LogDetail(ref=f"refund:{refund_id}", public={
                "project": d.project.id, "donation": d.public_id})
            specs.append(ledger.transfer(
                "donation.refund_requested", source=ledger.project_fund(d.project.id),
                destination=ledger.REFUNDS, amount_fen=d.amount_fen,
                dedupe_key=f"refund.requested:{refund_id}", memo=d.public_id,
                actor_id=self.admin_id, no_overdraft_source=True, detail=detail,
            ))
            specs.append(ledger.transfer(
                "donation.refunded", source=ledger.REFUNDS,
                destination=ledger.donor_clearing("sandbox"), amount_fen=d.amount_fen,
                dedupe_key=f"refund.succeeded:{refund_id}", memo=d.public_id, detail=detail,
            ))
        if rows:
            self.session.execute(insert(Refund), rows)
            ledger.post_many(self.session, specs)
        self.report.refunds = len(rows)

    def create_updates_and_usages(self, projects: list[_ProjectPlan]) -> None:
        rng = self.rng
        updates: list[dict[str, Any]] = []
        usages: list[tuple[_ProjectPlan, dict[str, Any]]] = []
        for p in projects:
            status = p.row["status"]
            n_updates = {ProjectStatus.FUNDRAISING: rng.choice((0, 0, 1, 2)),
                         ProjectStatus.ENDED: 1, ProjectStatus.EXECUTING: rng.randint(1, 2),
                         ProjectStatus.COMPLETED: rng.randint(2, 3)}.get(status, 0)
            for title, body in rng.sample(data.UPDATE_TEXTS, n_updates):
                updates.append({
                    "project_id": p.id, "title": title, "body": body,
                    "author_id": p.org.staff_id, "created_at": self.days_ago(0, 20),
                })
            share = {ProjectStatus.EXECUTING: rng.uniform(0.3, 0.6),
                     ProjectStatus.COMPLETED: rng.uniform(0.9, 1.0),
                     ProjectStatus.ENDED: rng.choice((0.0, 0.15))}.get(status, 0.0)
            budget = int(p.fund_fen * share) // 100 * 100  # whole yuan, never above the fund
            parts = rng.randint(1, 3) if budget >= 300 else 1
            spent = 0
            for k in range(parts):
                amount = budget - spent if k == parts - 1 else budget // parts // 100 * 100
                if amount <= 0:
                    continue
                spent += amount
                ends = p.row["ends_on"]
                usages.append((p, {
                    "project_id": p.id, "amount_fen": amount,
                    "purpose": rng.choice(data.USAGE_PURPOSES),
                    "description": "采购合同、发票及签收单已作为附件上传。",
                    "spent_on": min(ends + dt.timedelta(days=k + 1), self.today),
                    "created_by_id": p.org.staff_id,
                    "created_at": self.now - dt.timedelta(hours=rng.randint(1, 72)),
                }))
        if updates:
            self.session.execute(insert(ProjectUpdate), updates)
        usage_ids = self.insert_returning_ids(FundUsage, [row for _, row in usages])
        specs = [
            ledger.transfer(
                "project.funds_used", source=ledger.project_fund(p.id),
                destination=ledger.organization(p.row["recipient_org_id"]),
                amount_fen=row["amount_fen"], dedupe_key=f"fund_usage:{uid}",
                actor_id=p.org.staff_id, no_overdraft_source=True,
                detail=ledger.LogDetail(ref=f"usage:{uid}", public={
                    "project": p.id, "organization": p.row["recipient_org_id"],
                    "purpose": row["purpose"], "spent_on": row["spent_on"].isoformat(),
                    "attachments": []}),
            )
            for (p, row), uid in zip(usages, usage_ids, strict=True)
        ]
        entries = ledger.post_many(self.session, specs)
        if entries:
            self.session.execute(
                update(FundUsage),
                [{"id": uid, "journal_entry_id": e.id}
                 for uid, e in zip(usage_ids, entries, strict=True)],
            )
        self.report.fund_usages = len(usage_ids)

    def create_complaints(self, projects: list[_ProjectPlan]) -> None:
        raising = [p for p in projects if p.row["status"] == ProjectStatus.FUNDRAISING]
        rows = []
        for k, (category, content) in enumerate(data.COMPLAINTS):
            p = raising[k % len(raising)]
            created = self.now - dt.timedelta(days=(12, 2, 6)[k])
            answered = k == 2
            rows.append({
                "organization_id": p.org.id, "project_id": p.id, "reporter_id": None,
                "reporter_contact": f"138{self.rng.randint(10_000_000, 99_999_999)}",
                "category": category, "content": content,
                "status": ComplaintStatus.ANSWERED if answered else ComplaintStatus.OPEN,
                "due_on": complaints.deadline_for(created.astimezone(CHINA_TZ).date()),
                "answer": "已联系机构核实，机构已补充说明并更新项目信息。" if answered else None,
                "answered_by_id": self.reviewer_id if answered else None,
                "answered_at": created + dt.timedelta(days=2) if answered else None,
                "created_at": created,
            })
        self.session.execute(insert(Complaint), rows)
