"""Discovery: searching, filtering and sorting public projects, and the organization directory.

It reads across domains (projects, organizations, gifts' totals, giving days' enrolments), so
it lives above them; none of them imports it. Text matching is ``core.search`` over the
indexes of revision 0013 (ADR 0032, docs/search.md).

``check_*`` turn what a client typed into a query or raise InvalidInput with a stable code
(``invalid_sort``, ``invalid_field``, ``invalid_province``, ``invalid_status``,
``invalid_campaign``, ``invalid_organization``, ``invalid_kind``, and ``core.search``'s
``query_too_long``, ``too_many_terms``, ``invalid_query``); ``search_*`` run a query.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from shanju.campaigns import service as campaigns
from shanju.campaigns.models import Campaign, Enrolment, EnrolmentStatus
from shanju.core import regions, search
from shanju.core.clock import today_cn
from shanju.core.errors import InvalidInput
from shanju.core.i18n import N_
from shanju.gifts import service as gifts
from shanju.organizations import service as organizations
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects import service as projects
from shanju.projects.models import Project, ProjectStatus

S = ProjectStatus

PROJECT_INDEX = search.TextIndex(
    fts_table="projects_fts", id_column=Project.id,
    columns=(Project.title, Project.summary, Project.description, Project.story))
ORGANIZATION_INDEX = search.TextIndex(
    fts_table="organizations_fts", id_column=Organization.id,
    columns=(Organization.name, Organization.short_name, Organization.description),
    nullable=frozenset({"short_name"}))

# The fields of work a list may be filtered by: the projects' categories.
FIELDS: tuple[str, ...] = projects.CATEGORIES
# The sorts of the project list, the first the default; labels for the pages.
SORTS: dict[str, str] = {
    "recommended": N_("Recommended"),
    "ending_soon": N_("Ending soon"),
    "nearly_there": N_("Nearly there"),
    "newest": N_("Newest"),
    "most_donors": N_("Most donors"),
}
DEFAULT_SORT = "recommended"
# The states a client may filter by (the public ones); the list shows LISTED_STATUSES unless
# asked.
FILTER_STATUSES: tuple[ProjectStatus, ...] = (S.FUNDRAISING, S.ENDED, S.EXECUTING, S.COMPLETED,
                                              S.PAUSED, S.TAKEN_DOWN)
# The directory's two parts: charities that raise funds here, and every other registered one.
ORG_KINDS: dict[str, str] = {
    "fundraising": N_("Charities raising funds"),
    "other": N_("Other registered organizations"),
}


@dataclass(frozen=True)
class ProjectQuery:
    """What a project list shows: the search terms, the filters and the order."""

    terms: tuple[str, ...] = ()
    field: str | None = None
    province: str | None = None
    organization_id: int | None = None
    campaign_id: int | None = None
    statuses: tuple[ProjectStatus, ...] = projects.LISTED_STATUSES
    sort: str = DEFAULT_SORT

    @property
    def text(self) -> str:
        """The terms as one search box's text."""
        return " ".join(self.terms)


def check_sort(value: str | None) -> str:
    """Return a sort of :data:`SORTS` (the default when none); InvalidInput ``invalid_sort``."""
    clean = (value or "").strip()
    if not clean:
        return DEFAULT_SORT
    if clean not in SORTS:
        raise InvalidInput("Sort by one of: %(allowed)s.", code="invalid_sort", field="sort",
                           params={"allowed": ", ".join(SORTS)},
                           details={"allowed": list(SORTS)})
    return clean


def check_field(value: str | None, *, name: str = "field") -> str | None:
    """Return a field of work (a project category) or None; InvalidInput ``invalid_field``."""
    clean = (value or "").strip()
    if not clean:
        return None
    if clean not in projects.CATEGORIES:
        raise InvalidInput("Choose a field from the list.", code="invalid_field", field=name,
                           details={"allowed": list(projects.CATEGORIES)})
    return clean


def check_province(value: str | None) -> str | None:
    """Return a province's stored name (short or full Chinese name, code or English name
    accepted) or None; InvalidInput ``invalid_province``."""
    clean = (value or "").strip()
    if not clean:
        return None
    found = regions.normalize_province(clean)
    if found is None:
        raise InvalidInput("Choose a province from the list.", code="invalid_province",
                           field="province")
    return found


def check_statuses(values: Sequence[str]) -> tuple[ProjectStatus, ...]:
    """Return the public states asked for (the listed ones when none); InvalidInput
    ``invalid_status`` for any other value."""
    allowed = {s.value: s for s in FILTER_STATUSES}
    chosen: list[ProjectStatus] = []
    for raw in values:
        for part in raw.split(","):
            clean = part.strip()
            if not clean:
                continue
            if clean not in allowed:
                raise InvalidInput("Choose a project state from the list.",
                                   code="invalid_status", field="status",
                                   details={"allowed": list(allowed)})
            if allowed[clean] not in chosen:
                chosen.append(allowed[clean])
    return tuple(chosen) or projects.LISTED_STATUSES


def check_campaign(*, session: Session, campaign_id: int | None) -> Campaign | None:
    """Return the public giving day to filter by; InvalidInput ``invalid_campaign`` for a
    giving day that does not exist or is not public."""
    if campaign_id is None:
        return None
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status not in campaigns.PUBLIC_STATUSES:
        raise InvalidInput("There is no such giving day.", code="invalid_campaign",
                           field="campaign_id")
    return campaign


def check_organization(*, session: Session, organization_id: int | None
                       ) -> Organization | None:
    """Return the approved organization to filter by; InvalidInput ``invalid_organization``."""
    if organization_id is None:
        return None
    org = session.get(Organization, organization_id)
    if org is None or org.status != OrgStatus.APPROVED:
        raise InvalidInput("There is no such organization.", code="invalid_organization",
                           field="organization_id")
    return org


def check_project_query(
    *, session: Session, q: str | None = None, field: str | None = None,
    province: str | None = None, organization_id: int | None = None,
    campaign_id: int | None = None, status: Sequence[str] = (), sort: str | None = None,
) -> ProjectQuery:
    """Turn a list's parameters into a :class:`ProjectQuery`; the first bad one raises."""
    return ProjectQuery(
        terms=search.parse_query(q),
        field=check_field(field),
        province=check_province(province),
        organization_id=(org.id if (org := check_organization(
            session=session, organization_id=organization_id)) else None),
        campaign_id=(c.id if (c := check_campaign(session=session, campaign_id=campaign_id))
                     else None),
        statuses=check_statuses(status),
        sort=check_sort(sort),
    )


def _org_name_matches(term: str, *, dialect: str) -> ColumnElement[bool]:
    # Projects are found by their publisher's name too ("壹基金" finds its projects). Names are
    # short and organizations few next to their projects' text: a scan, not an index.
    names = select(Organization.id).where(or_(
        search.contains(Organization.name, term, dialect=dialect),
        search.contains(Organization.short_name, term, dialect=dialect)))
    return Project.organization_id.in_(names.scalar_subquery())


def _project_conditions(query: ProjectQuery, *, dialect: str) -> list[ColumnElement[bool]]:
    statuses = [s for s in query.statuses if s in projects.PUBLIC_STATUSES]
    conditions: list[ColumnElement[bool]] = [Project.status.in_(statuses)]
    for term in query.terms:
        conditions.append(or_(search.matches(PROJECT_INDEX, term, dialect=dialect),
                              _org_name_matches(term, dialect=dialect)))
    if query.field:
        conditions.append(Project.category == query.field)
    if query.province:
        conditions.append(Project.province == query.province)
    if query.organization_id is not None:
        conditions.append(or_(Project.organization_id == query.organization_id,
                              Project.recipient_org_id == query.organization_id))
    if query.campaign_id is not None:
        conditions.append(exists().where(
            Enrolment.project_id == Project.id, Enrolment.campaign_id == query.campaign_id,
            Enrolment.status == EnrolmentStatus.APPROVED))
    return conditions


def _status_order() -> ColumnElement[int]:
    # Fundraising first, then the rest of the lifecycle in order.
    return case(
        (Project.status == S.FUNDRAISING, 0), (Project.status == S.PAUSED, 1),
        (Project.status == S.ENDED, 2), (Project.status == S.EXECUTING, 3),
        (Project.status == S.COMPLETED, 4), else_=5,
    )


_STATUS_RANK = {S.FUNDRAISING: 0, S.PAUSED: 1, S.ENDED: 2, S.EXECUTING: 3, S.COMPLETED: 4}


def _by_totals(session: Session, conditions: list[ColumnElement[bool]], sort: str, *,
               limit: int, offset: int) -> list[projects.ProjectListing]:
    # Orders by what projects raised, from the process's totals snapshot (no sum of every
    # gift per request): the matching projects' keys, ordered here, then the page's rows.
    snapshot = gifts.totals_snapshot(session=session)
    keys = list(session.execute(
        select(Project.id, Project.status, Project.goal_fen).where(*conditions)))

    def nearly_there(row: Any) -> tuple[int, ...]:
        pid, status, goal_fen = row
        raised = snapshot.of(pid).raised_fen
        open_goal = status == S.FUNDRAISING and raised < goal_fen
        share = raised * 10_000 // goal_fen if goal_fen > 0 else 0
        return (0 if open_goal else 1, _STATUS_RANK.get(status, 5), -share, -pid)

    def most_donors(row: Any) -> tuple[int, ...]:
        return (-snapshot.of(row[0]).donations, -row[0])

    keys.sort(key=nearly_there if sort == "nearly_there" else most_donors)
    page = [row[0] for row in keys[offset:offset + limit]]
    by_id = {p.id: p for p in session.scalars(select(Project).where(Project.id.in_(page)))}
    return projects.with_totals(session=session, projects=[by_id[pid] for pid in page],
                                totals={pid: snapshot.of(pid) for pid in page})


def search_projects(
    *, session: Session, query: ProjectQuery, limit: int = 20, offset: int = 0,
    today: dt.date | None = None,
) -> tuple[list[projects.ProjectListing], int]:
    """Return one page of the projects ``query`` finds, in its order, and how many it finds.

    Orders (ties: the newest project first):

    * ``recommended``: fundraising first (then the lifecycle in order); with a search, those
      whose title holds every term before those found by their other text or organization; then
      featured ones.
    * ``ending_soon``: fundraising projects whose end date is today or later, the nearest end
      first; then every other.
    * ``nearly_there``: fundraising projects not yet at their goal, the highest share of the
      goal first; then every other (reached goals among them).
    * ``newest``: the latest start of fundraising first (projects with none last).
    * ``most_donors``: the most paid gifts (person-times) first.
    """
    dialect = search.dialect_of(session)
    day = today or today_cn()
    conditions = _project_conditions(query, dialect=dialect)
    total = session.scalar(select(func.count()).select_from(Project).where(*conditions)) or 0
    stmt: Select[Any] = select(Project).where(*conditions)
    fundraising = Project.status == S.FUNDRAISING
    order: list[ColumnElement[Any]]
    if query.sort == "ending_soon":
        open_ending = and_(fundraising, Project.ends_on.is_not(None), Project.ends_on >= day)
        order = [case((open_ending, 0), else_=1), _status_order(),
                 Project.ends_on.is_(None), Project.ends_on.asc()]
    elif query.sort in ("nearly_there", "most_donors"):
        return _by_totals(session, conditions, query.sort, limit=limit, offset=offset), \
            int(total)
    elif query.sort == "newest":
        order = [Project.starts_on.is_(None), Project.starts_on.desc()]
    else:
        order = [_status_order()]
        if query.terms:
            in_title = search.all_in(Project.title, query.terms, dialect=dialect)
            order.append(case((in_title, 0), else_=1))
        order.append(Project.featured.desc())
    stmt = stmt.order_by(*order, Project.id.desc()).limit(limit).offset(offset)
    return projects.with_totals(session=session, projects=list(session.scalars(stmt))), \
        int(total)


def public_campaigns(*, session: Session) -> list[Campaign]:
    """The giving days a list may be filtered by (live first, then scheduled, then ended)."""
    rows, _total = campaigns.list_campaigns(session=session, statuses=campaigns.PUBLIC_STATUSES,
                                            limit=20)
    return rows


def matching_organizations(*, session: Session, terms: tuple[str, ...], limit: int = 3
                           ) -> tuple[list[Organization], int]:
    """The approved organizations whose name, short name or description holds every term (for
    a project search's "organizations" line), names that hold them all first."""
    if not terms:
        return [], 0
    query = OrgQuery(terms=terms, kind="all")
    conditions = _org_query(query, dialect=search.dialect_of(session))
    return _org_page(session, query, conditions, page=1, per_page=limit)


# --- the organization directory ---------------------------------------------------------------


@dataclass(frozen=True)
class OrgQuery:
    """What the directory shows: which part, the search terms and the filters."""

    terms: tuple[str, ...] = ()
    province: str | None = None
    field: str | None = None
    kind: str = "all"
    on: dt.date = dataclasses.field(default_factory=today_cn)

    @property
    def text(self) -> str:
        """The terms as one search box's text."""
        return " ".join(self.terms)


def check_kind(value: str | None, *, default: str) -> str:
    """Return ``fundraising``, ``other`` or ``all`` (``default`` when none); InvalidInput
    ``invalid_kind``."""
    clean = (value or "").strip()
    if not clean:
        return default
    if clean not in (*ORG_KINDS, "all"):
        raise InvalidInput("Choose which organizations to list: %(allowed)s.",
                           code="invalid_kind", field="kind",
                           params={"allowed": ", ".join((*ORG_KINDS, "all"))},
                           details={"allowed": [*ORG_KINDS, "all"]})
    return clean


def check_org_query(*, q: str | None = None, province: str | None = None,
                    field: str | None = None, kind: str | None = None,
                    default_kind: str = "all", on: dt.date | None = None) -> OrgQuery:
    """Turn the directory's parameters into an :class:`OrgQuery`; the first bad one raises."""
    return OrgQuery(terms=search.parse_query(q), province=check_province(province),
                    field=check_field(field), kind=check_kind(kind, default=default_kind),
                    on=on or today_cn())


def _listed_links(*, category: str | None = None) -> Subquery:
    """``(org_id, project_id)``: each listed project with its publisher, and with the
    organization receiving its funds when that is another one."""
    listed: list[ColumnElement[bool]] = [Project.status.in_(projects.LISTED_STATUSES)]
    if category:
        listed.append(Project.category == category)
    return union_all(
        select(Project.organization_id.label("org_id"), Project.id.label("project_id"))
        .where(*listed),
        select(Project.recipient_org_id.label("org_id"), Project.id.label("project_id"))
        .where(*listed, Project.recipient_org_id != Project.organization_id),
    ).subquery()


def _has_listed_project(*, category: str | None = None) -> ColumnElement[bool]:
    # Not correlated: both databases compute the set once (a hash or a temporary index), not
    # once per organization — the directory weighs thousands of organizations against it.
    links = _listed_links(category=category)
    return Organization.id.in_(select(links.c.org_id))


def raises_funds(on: dt.date) -> ColumnElement[bool]:
    """An organization raises funds here: it has a listed project (its own or one it receives
    the funds of) or holds a valid public-fundraising qualification on ``on``."""
    return or_(_has_listed_project(), organizations.qualified_on(on))


def _org_query(query: OrgQuery, *, dialect: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Organization.status == OrgStatus.APPROVED]
    if query.kind == "fundraising":
        conditions.append(raises_funds(query.on))
    elif query.kind == "other":
        conditions.append(~raises_funds(query.on))
    if query.terms:
        conditions.append(search.matches_all(ORGANIZATION_INDEX, query.terms, dialect=dialect))
    if query.province:
        conditions.append(Organization.province == query.province)
    if query.field:
        # An organization's fields are those of its listed projects.
        conditions.append(_has_listed_project(category=query.field))
    return conditions


@dataclass(frozen=True)
class OrgListing:
    """An organization in the directory: how many listed projects, whether it is qualified."""

    organization: Organization
    projects: int
    qualified: bool

    @property
    def raises_funds(self) -> bool:
        """It belongs among the charities raising funds (see :func:`raises_funds`)."""
        return self.projects > 0 or self.qualified


def _org_page(session: Session, query: OrgQuery, conditions: list[ColumnElement[bool]], *,
              page: int, per_page: int) -> tuple[list[Organization], int]:
    dialect = search.dialect_of(session)
    total = session.scalar(
        select(func.count()).select_from(Organization).where(*conditions)) or 0
    stmt = select(Organization).where(*conditions)
    order: list[ColumnElement[Any]] = []
    if query.terms:
        in_name = search.all_in(Organization.name, query.terms, dialect=dialect)
        order.append(case((in_name, 0), else_=1))
    if query.kind != "other":
        links = _listed_links()
        counts = (select(links.c.org_id, func.count().label("n"))
                  .group_by(links.c.org_id).subquery())
        stmt = stmt.outerjoin(counts, counts.c.org_id == Organization.id)
        order.append(func.coalesce(counts.c.n, 0).desc())
    rows = session.scalars(
        stmt.order_by(*order, Organization.id.asc())
        .offset((max(page, 1) - 1) * per_page).limit(per_page))
    return list(rows), int(total)


def search_organizations(*, session: Session, query: OrgQuery, page: int = 1,
                         per_page: int = 20) -> tuple[list[OrgListing], int]:
    """Return one page of approved organizations ``query`` finds and how many it finds.

    Those whose name holds every search term first, then (charities raising funds) those with
    the most listed projects, then by registration.
    """
    conditions = _org_query(query, dialect=search.dialect_of(session))
    orgs, total = _org_page(session, query, conditions, page=page, per_page=per_page)
    counts = listed_project_counts(session=session, organization_ids=[o.id for o in orgs])
    return [OrgListing(organization=o, projects=counts.get(o.id, 0),
                       qualified=o.is_qualified_on(query.on)) for o in orgs], total


def count_by_kind(*, session: Session, query: OrgQuery) -> dict[str, int]:
    """How many organizations each part of the directory holds for ``query``'s search and
    filters (the tabs' numbers), in one query."""
    dialect = search.dialect_of(session)
    base = _org_query(OrgQuery(terms=query.terms, province=query.province, field=query.field,
                               kind="all", on=query.on), dialect=dialect)
    funds = raises_funds(query.on)
    fundraising, total = session.execute(
        select(func.coalesce(func.sum(case((funds, 1), else_=0)), 0), func.count())
        .select_from(Organization).where(*base)).one()
    return {"fundraising": int(fundraising), "other": int(total) - int(fundraising),
            "all": int(total)}


def listed_project_counts(*, session: Session, organization_ids: Sequence[int]
                          ) -> dict[int, int]:
    """How many listed projects each organization publishes or receives the funds of."""
    ids = list(set(organization_ids))
    if not ids:
        return {}
    links = _listed_links()
    rows = session.execute(select(links.c.org_id, func.count())
                           .where(links.c.org_id.in_(ids)).group_by(links.c.org_id))
    return {int(org_id): int(n) for org_id, n in rows}
