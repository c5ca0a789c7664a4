"""Disclosure (信息公开): a project's public ledger, its movements, and annual summaries.

Everything here is computed from the **domain tables** — donations, refunds, giving-day gifts,
quadratic shares, fund usages — and compared with the ledger balance of ``project:<id>``;
never from the transparency log, so that an auditor (``shanju verify``) can recompute the same
numbers from the log alone and compare two independent computations.

Per project P (account ``project:P``) the four flows mean exactly:

- **received** — donors' money that entered P: ordinary donations once paid (a refunded one
  was paid first) and every giving-day gift (``donor_clearing → P``);
- **matched** — sponsors' money that reached P: a gift's match once it stands in the project
  (matched at once, or held and then settled), less a match taken back when its gift was
  refunded, plus quadratic-funding shares (``pool|match_hold → P`` less ``P → pool``);
- **refunded** — money P gave back: refunds of donations requested (less those that failed and
  came back) and refunded giving-day gifts (``P → refunds|donor_clearing`` less
  ``refunds → P``);
- **disbursed** — fund usages disclosed (``P → organization``).

balance = received + matched − refunded − disbursed, which must equal the ledger balance.

Each movement has a time: when the money moved in the ledger (a settled match: when it
settled; a failed refund: when the money came back; a fund usage: when it was disclosed — its
``spent_on`` date is shown beside it). Months and years are China time.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session, aliased

from shanju.accounts.models import User
from shanju.campaigns.models import CampaignGift, GiftStatus, MatchStatus, QuadraticShare
from shanju.core import files
from shanju.core.clock import CHINA_TZ, today_cn
from shanju.core.db import UTCDateTime
from shanju.core.errors import NotFound
from shanju.core.masking import mask_name
from shanju.donations.models import Donation
from shanju.gifts import service as gifts
from shanju.gifts.models import RECEIVED as RECEIVED_STATUSES
from shanju.gifts.models import Gift, GiftKind
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, JournalEntry, LedgerAccount
from shanju.payments.models import Refund, RefundStatus
from shanju.projects import service as projects
from shanju.projects.models import FundUsage, Project

RECEIVED = "received"
MATCHED = "matched"
REFUNDED = "refunded"
DISBURSED = "disbursed"
CATEGORIES = (RECEIVED, MATCHED, REFUNDED, DISBURSED)
FIRST_YEAR = 2000  # annual summaries exist from this year to the current one

_UTC = UTCDateTime()


# --- the numbers -----------------------------------------------------------------------------


@dataclass
class Flows:
    """Fen received, matched, refunded and disbursed (each a net sum; see the module doc)."""

    received_fen: int = 0
    matched_fen: int = 0
    refunded_fen: int = 0
    disbursed_fen: int = 0

    @property
    def balance_fen(self) -> int:
        """received + matched − refunded − disbursed."""
        return self.received_fen + self.matched_fen - self.refunded_fen - self.disbursed_fen

    def add(self, category: str, fen: int) -> None:
        """Add ``fen`` to one flow."""
        setattr(self, f"{category}_fen", getattr(self, f"{category}_fen") + fen)

    def plus(self, other: Flows) -> Flows:
        """The sum of two sets of flows."""
        return Flows(self.received_fen + other.received_fen,
                     self.matched_fen + other.matched_fen,
                     self.refunded_fen + other.refunded_fen,
                     self.disbursed_fen + other.disbursed_fen)

    def as_dict(self) -> dict[str, int]:
        """The four flows and the balance, in fen."""
        return {"received_fen": self.received_fen, "matched_fen": self.matched_fen,
                "refunded_fen": self.refunded_fen, "disbursed_fen": self.disbursed_fen,
                "balance_fen": self.balance_fen}


def _month(session: Session, column: Any) -> ColumnElement[str]:
    """``YYYY-MM`` of a UTC timestamp column, in China time, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM")
    return func.strftime("%Y-%m", column, "+8 hours")


def _settle_entry() -> Any:
    """The journal entry that settled a held match (``campaign.match_settled:<gift id>``)."""
    return aliased(JournalEntry, name="settled")


def _settled_join(settled: Any) -> ColumnElement[bool]:
    key = literal("campaign.match_settled:", String) + cast(CampaignGift.id, String)
    return and_(CampaignGift.hold_until.is_not(None), settled.dedupe_key == key)


def _sources(session: Session, project_ids: Sequence[int] | None,
             by_month: bool) -> list[tuple[str, int, Select[Any]]]:
    """One grouped query per kind of movement: (category, sign, select(project, [month], fen))."""
    def grouped(project_col: Any, time_col: Any, amount: Any) -> Select[Any]:
        cols: list[Any] = [project_col.label("project_id")]
        groups: list[Any] = [project_col]
        if by_month:
            month = _month(session, time_col)
            cols.append(month.label("month"))
            groups.append(month)
        cols.append(func.sum(amount).label("fen"))
        stmt = select(*cols).group_by(*groups)
        if project_ids is not None:
            stmt = stmt.where(project_col.in_(list(project_ids)))
        return stmt

    settled = _settle_entry()
    refund_donation = aliased(Donation)
    sources: list[tuple[str, int, Select[Any]]] = [
        # Every gift of either kind once paid (a refunded one was paid first).
        (RECEIVED, 1, grouped(Gift.project_id, Gift.paid_at, Gift.amount_fen).where(
            Gift.status.in_(RECEIVED_STATUSES))),
        # A match that reached the project at once (never held); a refund may reverse it later.
        (MATCHED, 1, grouped(CampaignGift.project_id, CampaignGift.paid_at,
                             CampaignGift.matched_fen).where(
            CampaignGift.hold_until.is_(None), CampaignGift.matched_fen > 0,
            CampaignGift.match_status.in_([MatchStatus.MATCHED, MatchStatus.REVERSED]))),
        # A held match that settled (hold → project), at the time it settled.
        (MATCHED, 1, grouped(CampaignGift.project_id, settled.created_at,
                             CampaignGift.matched_fen)
         .join(settled, _settled_join(settled)).where(CampaignGift.matched_fen > 0)),
        # A refunded gift whose match was in the project gave the match back to the pool.
        (MATCHED, -1, grouped(CampaignGift.project_id, CampaignGift.refunded_at,
                              CampaignGift.matched_fen)
         .outerjoin(settled, _settled_join(settled)).where(
            CampaignGift.status == GiftStatus.REFUNDED,
            CampaignGift.match_status == MatchStatus.REVERSED, CampaignGift.matched_fen > 0,
            or_(CampaignGift.hold_until.is_(None), settled.id.is_not(None)))),
        (MATCHED, 1, grouped(QuadraticShare.project_id, QuadraticShare.created_at,
                             QuadraticShare.share_fen)),
        (REFUNDED, 1, grouped(refund_donation.project_id, Refund.created_at, Refund.amount_fen)
         .join(refund_donation, refund_donation.payment_intent_id == Refund.intent_id)),
        (REFUNDED, -1, grouped(refund_donation.project_id,
                               type_coerce(func.coalesce(Refund.completed_at, Refund.created_at),
                                           _UTC), Refund.amount_fen)
         .join(refund_donation, refund_donation.payment_intent_id == Refund.intent_id)
         .where(Refund.status == RefundStatus.FAILED)),
        (REFUNDED, 1, grouped(CampaignGift.project_id, CampaignGift.refunded_at,
                              CampaignGift.amount_fen)
         .where(CampaignGift.status == GiftStatus.REFUNDED)),
        (DISBURSED, 1, grouped(FundUsage.project_id, FundUsage.created_at,
                               FundUsage.amount_fen)),
    ]
    return sources


def flows_by_project(*, session: Session,
                     project_ids: Sequence[int] | None = None) -> dict[int, Flows]:
    """The four flows of each project with any (all projects when ``project_ids`` is None)."""
    result: dict[int, Flows] = {}
    for category, sign, stmt in _sources(session, project_ids, by_month=False):
        for project_id, fen in session.execute(stmt):
            result.setdefault(int(project_id), Flows()).add(category, sign * int(fen or 0))
    return result


def flows_by_month(*, session: Session,
                   project_ids: Sequence[int]) -> dict[tuple[int, str], Flows]:
    """The flows of each project per month (``YYYY-MM``, China time) with any movement."""
    result: dict[tuple[int, str], Flows] = {}
    for category, sign, stmt in _sources(session, project_ids, by_month=True):
        for project_id, month, fen in session.execute(stmt):
            key = (int(project_id), str(month))
            result.setdefault(key, Flows()).add(category, sign * int(fen or 0))
    return result


def ledger_balances(*, session: Session,
                    project_ids: Sequence[int] | None = None) -> dict[int, int]:
    """The ledger balance of ``project:<id>`` for each project that has the account."""
    stmt = select(LedgerAccount.code, LedgerAccount.balance_fen).where(
        LedgerAccount.kind == AccountKind.PROJECT_FUND)
    if project_ids is not None:
        stmt = stmt.where(LedgerAccount.code.in_([ledger.project_fund(p) for p in project_ids]))
    result: dict[int, int] = {}
    for code, balance in session.execute(stmt):
        ref = str(code).split(":", 1)[1]
        if ref.isdigit():
            result[int(ref)] = int(balance)
    return result


@dataclass(frozen=True)
class ProjectTotals:
    """One row of ``GET /api/v1/disclosure/totals``."""

    project_id: int
    flows: Flows
    ledger_balance_fen: int

    @property
    def balanced(self) -> bool:
        """Whether the flows' balance equals the ledger's."""
        return self.flows.balance_fen == self.ledger_balance_fen


def all_totals(*, session: Session) -> list[ProjectTotals]:
    """Every project with a fund account or any movement, by id."""
    flows = flows_by_project(session=session)
    balances = ledger_balances(session=session)
    return [ProjectTotals(pid, flows.get(pid, Flows()), balances.get(pid, 0))
            for pid in sorted(set(flows) | set(balances))]


# --- movements -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Movement:
    """One movement of a project's fund; ``amount_fen`` is signed (+ in, − out)."""

    time: dt.datetime
    kind: str  # donation, gift, match, match_reversed, quadratic, refund, refund_failed,
    #            gift_refund, disbursement
    category: str
    amount_fen: int
    ref: str
    project_id: int
    donor: str | None = None  # masked; None for an anonymous gift or a non-gift
    anonymous: bool = False
    usage_id: int | None = None

    @property
    def local_time(self) -> dt.datetime:
        """The time in China."""
        return self.time.astimezone(CHINA_TZ)

    @property
    def iso_time(self) -> str:
        """ISO 8601 in China time, to the second: ``2026-09-07T10:00:01+08:00``."""
        return self.local_time.isoformat(timespec="seconds")

    @property
    def is_gift(self) -> bool:
        """Whether a donor is behind it (their masked name may be shown)."""
        return self.kind in ("donation", "gift", "refund", "refund_failed", "gift_refund")


@dataclass(frozen=True)
class _Source:
    category: str
    sign: int
    # columns: kind, moved_at, project_id, fen, ref, donor, anonymous, usage_id
    stmt: Select[Any]
    time_col: Any
    ties: tuple[Any, ...]  # orders equal times, oldest first
    ties_newest_first: tuple[Any, ...]  # orders equal times, newest first


def _movement_sources(session: Session, project_ids: Sequence[int],
                      since: dt.datetime | None, until: dt.datetime | None) -> list[_Source]:
    del session
    settled = _settle_entry()
    rd = aliased(Donation)
    ids = list(project_ids)

    # ``sign``: the movement's effect on the project's fund (+ in, − out); ``kind`` a
    # Movement kind, or a column of them.
    def src(kind: Any, category: str, sign: int, time_col: Any, tie_col: Any,
            project_col: Any, fen: Any, ref: Any, donor_name: Any = None,
            anonymous: Any = None, usage_id: Any = None) -> tuple[Any, ...]:
        stmt = select(
            (literal(kind, String) if isinstance(kind, str) else kind).label("kind"),
            time_col.label("moved_at"), project_col.label("project_id"), fen.label("fen"),
            ref.label("ref"),
            (donor_name if donor_name is not None else literal(None, String)).label("donor"),
            (anonymous if anonymous is not None else literal(False)).label("anonymous"),
            (usage_id if usage_id is not None else literal(None)).label("usage_id"),
        ).where(project_col.in_(ids))
        if since is not None:
            stmt = stmt.where(time_col >= since)
        if until is not None:
            stmt = stmt.where(time_col < until)
        ties = tie_col if isinstance(tie_col, tuple) else (tie_col,)
        return category, sign, stmt, time_col, ties

    gift_ref = literal("gift:", String) + CampaignGift.order_id
    # A gift of either kind arriving (the ``gifts`` view): a donation or a giving-day gift.
    ordinary = Gift.kind == GiftKind.DONATION
    arrival_kind = case((ordinary, literal("donation", String)), else_=literal("gift", String))
    arrival_ref = case((ordinary, literal("donation:", String) + Gift.public_id),
                       else_=literal("gift:", String) + Gift.public_id)
    refund_time = type_coerce(func.coalesce(Refund.completed_at, Refund.created_at), _UTC)
    raw = [
        src(arrival_kind, RECEIVED, 1, Gift.paid_at, (Gift.kind, Gift.source_id),
            Gift.project_id, Gift.amount_fen, arrival_ref, Gift.donor_name, Gift.anonymous),
        src("match", MATCHED, 1, CampaignGift.paid_at, CampaignGift.id, CampaignGift.project_id,
            CampaignGift.matched_fen, gift_ref),
        src("match", MATCHED, 1, settled.created_at, CampaignGift.id, CampaignGift.project_id,
            CampaignGift.matched_fen, gift_ref),
        src("match_reversed", MATCHED, -1, CampaignGift.refunded_at, CampaignGift.id,
            CampaignGift.project_id, CampaignGift.matched_fen, gift_ref),
        src("quadratic", MATCHED, 1, QuadraticShare.created_at, QuadraticShare.id,
            QuadraticShare.project_id, QuadraticShare.share_fen,
            literal("pool:", String) + cast(QuadraticShare.pool_id, String)),
        src("refund", REFUNDED, -1, Refund.created_at, Refund.id, rd.project_id,
            Refund.amount_fen, literal("refund:", String) + Refund.id, rd.donor_name,
            rd.anonymous),
        src("refund_failed", REFUNDED, 1, refund_time, Refund.id, rd.project_id,
            Refund.amount_fen, literal("refund:", String) + Refund.id, rd.donor_name,
            rd.anonymous),
        src("gift_refund", REFUNDED, -1, CampaignGift.refunded_at, CampaignGift.id,
            CampaignGift.project_id, CampaignGift.amount_fen, gift_ref,
            CampaignGift.donor_name, CampaignGift.anonymous),
        src("disbursement", DISBURSED, -1, FundUsage.created_at, FundUsage.id,
            FundUsage.project_id, FundUsage.amount_fen,
            literal("usage:", String) + cast(FundUsage.id, String), usage_id=FundUsage.id),
    ]
    filters: list[Any] = [
        lambda s: s.where(Gift.status.in_(RECEIVED_STATUSES)),
        lambda s: s.where(
            CampaignGift.hold_until.is_(None), CampaignGift.matched_fen > 0,
            CampaignGift.match_status.in_([MatchStatus.MATCHED, MatchStatus.REVERSED])),
        lambda s: s.join(settled, _settled_join(settled)).where(CampaignGift.matched_fen > 0),
        lambda s: s.outerjoin(settled, _settled_join(settled)).where(
            CampaignGift.status == GiftStatus.REFUNDED,
            CampaignGift.match_status == MatchStatus.REVERSED, CampaignGift.matched_fen > 0,
            or_(CampaignGift.hold_until.is_(None), settled.id.is_not(None))),
        lambda s: s.where(QuadraticShare.share_fen > 0),
        lambda s: s.join(rd, rd.payment_intent_id == Refund.intent_id),
        lambda s: s.join(rd, rd.payment_intent_id == Refund.intent_id).where(
            Refund.status == RefundStatus.FAILED),
        lambda s: s.where(CampaignGift.status == GiftStatus.REFUNDED),
        lambda s: s,
    ]
    # Equal times keep the order the kinds are listed in (a donation before a giving-day gift),
    # oldest or newest first within a kind.
    return [_Source(category, sign, f(stmt), time_col, ties,
                    (ties[0], *(t.desc() for t in ties[1:])) if len(ties) > 1
                    else (ties[0].desc(),))
            for (category, sign, stmt, time_col, ties), f in zip(raw, filters, strict=True)]


def _to_movement(source: _Source, row: Any) -> Movement:
    anonymous = bool(row.anonymous)
    donor = None
    if row.donor is not None and not anonymous:
        donor = mask_name(row.donor)
    return Movement(time=row.moved_at, kind=str(row.kind), category=source.category,
                    amount_fen=source.sign * int(row.fen), ref=str(row.ref),
                    project_id=int(row.project_id), donor=donor, anonymous=anonymous,
                    usage_id=int(row.usage_id) if row.usage_id is not None else None)


def iter_movements(*, session: Session, project_ids: Sequence[int],
                   since: dt.datetime | None = None, until: dt.datetime | None = None,
                   batch: int = 1000) -> Iterator[Movement]:
    """Every movement of the projects' funds in time order, streamed from the database.

    Each kind is read by its own cursor in time order (server-side on PostgreSQL, ``batch``
    rows at a time) and the cursors are merged, so memory stays flat for any number of gifts.
    """
    streams = []
    for source in _movement_sources(session, project_ids, since, until):
        rows = session.execute(
            source.stmt.order_by(source.time_col, *source.ties),
            execution_options={"yield_per": batch},
        )
        streams.append(_movements_of(source, rows))
    yield from heapq.merge(*streams, key=lambda m: m.time)


def _movements_of(source: _Source, rows: Iterable[Any]) -> Iterator[Movement]:
    for row in rows:
        yield _to_movement(source, row)


def recent_movements(*, session: Session, project_id: int, limit: int = 50) -> list[Movement]:
    """The project's latest movements, newest first."""
    found: list[Movement] = []
    for source in _movement_sources(session, [project_id], None, None):
        rows = session.execute(
            source.stmt.order_by(source.time_col.desc(), *source.ties_newest_first)
            .limit(limit))
        found.extend(_to_movement(source, row) for row in rows)
    found.sort(key=lambda m: m.time, reverse=True)
    return found[:limit]


# --- a project's public ledger ---------------------------------------------------------------


@dataclass(frozen=True)
class MonthRow:
    """One month's flows (``YYYY-MM``, China time)."""

    month: str
    flows: Flows


@dataclass(frozen=True)
class Disbursement:
    """A fund usage as disclosed, with its attachments."""

    usage: FundUsage
    attachments: list[files.Attachment]

    @property
    def ref(self) -> str:
        """The usage's reference in the transparency log."""
        return f"usage:{self.usage.id}"


@dataclass(frozen=True)
class ProjectLedger:
    """Everything the project's disclosure page and API show."""

    project: Project
    flows: Flows
    ledger_balance_fen: int
    months: list[MonthRow]
    disbursements: list[Disbursement]
    recent: list[Movement]

    @property
    def balanced(self) -> bool:
        """Whether the flows' balance equals the ledger's (it must)."""
        return self.flows.balance_fen == self.ledger_balance_fen


def month_range(first: str, last: str) -> list[str]:
    """Every ``YYYY-MM`` from ``first`` to ``last`` inclusive."""
    year, month = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    out: list[str] = []
    while (year, month) <= end:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def project_ledger(*, session: Session, project: Project, recent: int = 50,
                   chart_months: int = 24) -> ProjectLedger:
    """The project's public ledger: flows, balance check, months, disbursements, recent."""
    by_month = flows_by_month(session=session, project_ids=[project.id])
    flows = Flows()
    for month_flows in by_month.values():
        flows = flows.plus(month_flows)
    months: list[MonthRow] = []
    if by_month:
        present = sorted(m for _, m in by_month)
        last = max(present[-1], today_cn().strftime("%Y-%m"))
        span = month_range(present[0], last)[-chart_months:]
        months = [MonthRow(m, by_month.get((project.id, m), Flows())) for m in span]
    usages = list(session.scalars(
        select(FundUsage).where(FundUsage.project_id == project.id)
        .order_by(FundUsage.spent_on.desc(), FundUsage.id.desc())))
    attached = files.attachments_of(session=session, owner_type="fund_usage",
                                    owner_ids=[u.id for u in usages])
    return ProjectLedger(
        project=project, flows=flows,
        ledger_balance_fen=ledger.balance(session, ledger.project_fund(project.id)),
        months=months,
        disbursements=[Disbursement(u, attached.get(u.id, [])) for u in usages],
        recent=recent_movements(session=session, project_id=project.id, limit=recent),
    )


def usage_attachments(*, session: Session,
                      project_ids: Sequence[int]) -> dict[int, list[files.Attachment]]:
    """Attachments of every fund usage of the projects, by usage id."""
    ids = list(session.scalars(select(FundUsage.id).where(FundUsage.project_id.in_(
        list(project_ids)))))
    return files.attachments_of(session=session, owner_type="fund_usage", owner_ids=ids)


def usage_details(*, session: Session, project_ids: Sequence[int]) -> dict[int, FundUsage]:
    """Fund usages of the projects, by id (purpose, description, date for exports)."""
    return {u.id: u for u in session.scalars(
        select(FundUsage).where(FundUsage.project_id.in_(list(project_ids))))}


# --- an organization's year ------------------------------------------------------------------


def year_bounds(year: int) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of ``year`` and of the next one, China time (as aware datetimes)."""
    return (dt.datetime(year, 1, 1, tzinfo=CHINA_TZ), dt.datetime(year + 1, 1, 1, tzinfo=CHINA_TZ))


def check_year(year: int) -> int:
    """Return ``year`` if an annual summary can exist for it, else NotFound ``year_not_found``."""
    if not FIRST_YEAR <= year <= today_cn().year:
        raise NotFound("There is no annual summary for %(year)s: years from %(first)s to "
                       "%(last)s have one.", code="year_not_found",
                       params={"year": year, "first": FIRST_YEAR, "last": today_cn().year})
    return year


@dataclass
class AnnualProject:
    """One project's year."""

    project_id: int
    title: str
    flows: Flows = field(default_factory=Flows)  # within the year
    balance_fen: int = 0  # at the end of the year
    gifts: int = 0  # gifts received in the year (person-times, 人次)
    donors: int = 0  # distinct donors among them


@dataclass
class AnnualSummary:
    """An organization's year: per project and in total."""

    organization_id: int
    year: int
    projects: list[AnnualProject]
    total: Flows
    balance_fen: int
    gifts: int
    donors: int
    months: list[MonthRow]
    purposes: list[tuple[str, int, int]]  # (purpose, fen, how many usages), largest first

    @property
    def empty(self) -> bool:
        """Whether nothing moved in the year."""
        return not self.gifts and not any(
            (self.total.received_fen, self.total.matched_fen, self.total.refunded_fen,
             self.total.disbursed_fen))


def _donor_key_rows(project_ids: list[int], start: dt.datetime, end: dt.datetime) -> Any:
    """(project_id, donor key) of every gift received in [start, end): an account, else the
    payer's hash, else the gift itself (one donor per gift)."""
    return select(Gift.project_id.label("project_id"), gifts.donor_key().label("donor")).where(
        Gift.project_id.in_(project_ids), Gift.status.in_(RECEIVED_STATUSES),
        Gift.paid_at >= start, Gift.paid_at < end).subquery()


def organization_project_ids(*, session: Session, organization_id: int) -> dict[int, str]:
    """Projects the organization publishes or receives funds for: ``{id: title}``."""
    return {int(pid): str(title) for pid, title in session.execute(
        select(Project.id, Project.title).where(or_(
            Project.organization_id == organization_id,
            Project.recipient_org_id == organization_id)).order_by(Project.id))}


def annual_summary(*, session: Session, organization_id: int, year: int,
                   top_purposes: int = 5) -> AnnualSummary:
    """The organization's year ``year`` (China time): per project and in total."""
    check_year(year)
    titles = organization_project_ids(session=session, organization_id=organization_id)
    ids = list(titles)
    start, end = year_bounds(year)
    year_prefix = f"{year:04d}-"
    per_project: dict[int, AnnualProject] = {}
    month_totals: dict[str, Flows] = defaultdict(Flows)
    for (pid, month), month_flows in (
            flows_by_month(session=session, project_ids=ids).items() if ids else []):
        if month > f"{year:04d}-12":
            continue
        row = per_project.setdefault(pid, AnnualProject(pid, titles[pid]))
        row.balance_fen += month_flows.balance_fen
        if month.startswith(year_prefix):
            row.flows = row.flows.plus(month_flows)
            month_totals[month] = month_totals[month].plus(month_flows)
    total_gifts = total_donors = 0
    if ids:
        keys = _donor_key_rows(ids, start, end)
        for pid, count, donors in session.execute(
                select(keys.c.project_id, func.count(), func.count(func.distinct(keys.c.donor)))
                .group_by(keys.c.project_id)):
            row = per_project.setdefault(int(pid), AnnualProject(int(pid), titles[int(pid)]))
            row.gifts, row.donors = int(count), int(donors)
        total_gifts, total_donors = (int(v or 0) for v in session.execute(
            select(func.count(), func.count(func.distinct(keys.c.donor)))).one())
    # A project whose money was all used or returned before the year has nothing to show.
    shown = [p for p in per_project.values()
             if p.balance_fen or p.gifts or any(p.flows.as_dict().values())]
    shown.sort(key=lambda p: (-p.flows.received_fen, p.project_id))
    total = Flows()
    for p in shown:
        total = total.plus(p.flows)
    purposes: list[tuple[str, int, int]] = []
    if ids:
        purposes = [(str(purpose), int(fen), int(n)) for purpose, fen, n in session.execute(
            select(FundUsage.purpose, func.sum(FundUsage.amount_fen), func.count())
            .where(FundUsage.project_id.in_(ids), FundUsage.created_at >= start,
                   FundUsage.created_at < end)
            .group_by(FundUsage.purpose)
            .order_by(func.sum(FundUsage.amount_fen).desc(), FundUsage.purpose)
            .limit(top_purposes))]
    months = [MonthRow(f"{year:04d}-{m:02d}", month_totals.get(f"{year:04d}-{m:02d}", Flows()))
              for m in range(1, 13)]
    return AnnualSummary(
        organization_id=organization_id, year=year, projects=shown, total=total,
        balance_fen=sum(p.balance_fen for p in shown), gifts=total_gifts, donors=total_donors,
        months=months, purposes=purposes)


def iter_annual_movements(*, session: Session, organization_id: int,
                          year: int) -> Iterator[Movement]:
    """Every movement of the organization's projects' funds in the year, in time order."""
    check_year(year)
    ids = list(organization_project_ids(session=session, organization_id=organization_id))
    if not ids:
        return iter(())
    start, end = year_bounds(year)
    return iter_movements(session=session, project_ids=ids, since=start, until=end)


def get_project_for_disclosure(*, session: Session, project_id: int,
                               viewer: User | None) -> Project:
    """The project if the viewer may see its page (NotFound ``project_not_found`` otherwise)."""
    return projects.get_visible_project(session=session, project_id=project_id, viewer=viewer)
