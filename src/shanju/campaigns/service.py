"""Giving-day campaigns: configuration (schedule, status, sponsors, pools, rule versions) and
enrolment (organizations apply with a project, reviewers decide, freeze a project's matching).

``check_*`` validates and raises a :class:`~shanju.core.errors.DomainError` with a stable code;
``do_*`` changes state and audits it in the caller's transaction (nothing here commits).

Money: a pool's commitment and top-ups move ``sponsor:<sid>`` → ``pool:<pid>`` through the
ledger while ``MatchPool.remaining_fen``/``committed_fen`` grow by the same amount. Everything
that changes a campaign's matching state (pools, rules, status, who is enrolled or frozen)
first takes the campaign lock (``locks.lock_campaigns``) and only then reads what it decides
on: see ``docs/locking.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import flows, locks
from shanju.campaigns.models import (
    Campaign,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    MatchPool,
    PoolKind,
    PoolRule,
    PoolStatus,
    Sponsor,
    SponsorKind,
)
from shanju.campaigns.rules import HHMM, RuleParams
from shanju.core import audit
from shanju.core.clock import today_cn, utcnow
from shanju.core.db import flush_unless_duplicate, get_or_404, is_digits
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.i18n import N_, Msg
from shanju.core.money import fen_to_yuan_str, read_yuan, yuan_to_fen
from shanju.ledger import service as ledger
from shanju.organizations import service as organizations
from shanju.projects.models import Project, ProjectStatus

CS = CampaignStatus
ES = EnrolmentStatus

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
HHMM_RE = re.compile(HHMM)
MAX_DAYS = 31
MAX_QUOTA = 100
MAX_HOLD_DAYS = 90
MAX_PRIORITY = 10_000
# A pool's commitment (or one top-up): up to ¥10,000,000,000 — far above any sponsor's pot.
MAX_POOL_FEN = 1_000_000_000_000
# Campaigns anyone may see; drafts are for reviewers only.
PUBLIC_STATUSES: tuple[CampaignStatus, ...] = (CS.SCHEDULED, CS.LIVE, CS.ENDED)
# Enrolments that count against an organization's quota.
QUOTA_STATUSES: tuple[EnrolmentStatus, ...] = (ES.APPLIED, ES.APPROVED)

# Status moves of a campaign: action → (allowed sources, target, audit verb).
CAMPAIGN_TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus, str]] = {
    "publish": (frozenset({CS.DRAFT}), CS.SCHEDULED, "published"),
    "unpublish": (frozenset({CS.SCHEDULED}), CS.DRAFT, "unpublished"),
    "start": (frozenset({CS.SCHEDULED}), CS.LIVE, "started"),
    "end": (frozenset({CS.LIVE}), CS.ENDED, "ended"),
}
CAMPAIGN_ACTIONS: tuple[str, ...] = tuple(CAMPAIGN_TRANSITIONS)


# Labels of values shown inside messages: the API shows the value, pages its translation.
STATUS_LABELS: dict[str, str] = {
    "draft": N_("Draft"), "scheduled": N_("Scheduled"), "live": N_("Live"),
    "ended": N_("Campaign ended"), "applied": N_("Applied"), "approved": N_("Approved"),
    "rejected": N_("Rejected"), "withdrawn": N_("Withdrawn"), "active": N_("Matching"),
    "paused": N_("Paused"), "closed": N_("Closed"),
}
FIELD_LABELS: dict[str, str] = {
    "days": N_("Number of days"), "org_quota": N_("Projects per organization"),
    "hold_days": N_("Public notice period (days)"), "priority": N_("Priority"),
}


def status_label(value: str) -> Msg:
    """Return a status for a message: its value in the API, its label on pages."""
    return Msg(STATUS_LABELS.get(value, value), plain=value)


def field_label(name: str) -> Msg:
    """Return a field's name for a message: as is in the API, its label on pages."""
    return Msg(FIELD_LABELS.get(name, name), plain=name)


# --- permissions -----------------------------------------------------------------------------


def check_reviewer(actor: User | None) -> User:
    """Return the actor if a platform reviewer or admin; PermissionDenied ``reviewer_only``."""
    if actor is None or not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
    return actor


# --- reading ---------------------------------------------------------------------------------


def get_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """Return a campaign or raise NotFound ``campaign_not_found``."""
    return get_or_404(session, Campaign, campaign_id,
                      message=N_("This campaign does not exist."), code="campaign_not_found")


def can_see(campaign: Campaign, viewer: User | None) -> bool:
    """Tell whether the viewer may see the campaign (drafts: reviewers only)."""
    return campaign.status in PUBLIC_STATUSES or (viewer is not None and viewer.is_reviewer)


def get_visible_campaign(*, session: Session, campaign_id: int, viewer: User | None) -> Campaign:
    """Return a campaign the viewer may see; a draft is NotFound for everyone but reviewers."""
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    if not can_see(campaign, viewer):
        raise NotFound("This campaign does not exist.", code="campaign_not_found")
    return campaign


def get_campaign_by_slug(*, session: Session, slug: str, viewer: User | None = None) -> Campaign:
    """Return the campaign with this slug that the viewer may see, or NotFound."""
    campaign = (session.scalar(select(Campaign).where(Campaign.slug == slug))
                if SLUG_RE.match(slug) else None)  # no campaign has an invalid slug
    if campaign is None or not can_see(campaign, viewer):
        raise NotFound("This campaign does not exist.", code="campaign_not_found")
    return campaign


def list_campaigns(
    *, session: Session, statuses: Sequence[CampaignStatus] | None = None, limit: int = 50,
    offset: int = 0,
) -> tuple[list[Campaign], int]:
    """List campaigns (live first, then scheduled, then the rest; newest first) and the total."""
    conditions = [Campaign.status.in_(statuses)] if statuses is not None else []
    total = session.scalar(select(func.count()).select_from(Campaign).where(*conditions)) or 0
    order = case({CS.LIVE.value: 0, CS.SCHEDULED.value: 1, CS.DRAFT.value: 2},
                 value=Campaign.status, else_=3)
    rows = session.scalars(
        select(Campaign).where(*conditions)
        .order_by(order, Campaign.starts_on.desc(), Campaign.id.desc())
        .limit(limit).offset(offset))
    return list(rows), int(total)


def campaign_days(campaign: Campaign) -> tuple[dt.date, dt.date]:
    """Return the first and last day (China time) of the campaign."""
    return campaign.starts_on, campaign.starts_on + dt.timedelta(days=campaign.days - 1)


def list_sponsors(*, session: Session, campaign_id: int) -> list[Sponsor]:
    """List a campaign's sponsors (the platform first, then by id)."""
    return list(session.scalars(
        select(Sponsor).where(Sponsor.campaign_id == campaign_id)
        .order_by((Sponsor.kind == SponsorKind.ENTERPRISE), Sponsor.id)))


def get_sponsor(*, session: Session, campaign: Campaign, sponsor_id: int) -> Sponsor:
    """Return a sponsor of this campaign or NotFound ``sponsor_not_found``."""
    sponsor = session.get(Sponsor, sponsor_id)
    if sponsor is None or sponsor.campaign_id != campaign.id:
        raise NotFound("This sponsor does not exist.", code="sponsor_not_found")
    return sponsor


def get_pool(*, session: Session, campaign: Campaign, pool_id: int) -> MatchPool:
    """Return a pool of this campaign or NotFound ``pool_not_found``."""
    pool = session.get(MatchPool, pool_id)
    if pool is None or pool.campaign_id != campaign.id:
        raise NotFound("This matching pool does not exist.", code="pool_not_found")
    return pool


@dataclass(frozen=True)
class PoolView:
    """A pool with its sponsor and the rule version in force."""

    pool: MatchPool
    sponsor: Sponsor
    rule: RuleParams
    versions: int

    @property
    def spent_fen(self) -> int:
        """Money matched (or held) so far: committed less what remains."""
        return self.pool.committed_fen - self.pool.remaining_fen

    @property
    def percent_left(self) -> int:
        """What remains of the commitment, 0–100 (for a bar)."""
        if self.pool.committed_fen <= 0:
            return 0
        return self.pool.remaining_fen * 100 // self.pool.committed_fen


def current_rule(*, session: Session, pool: MatchPool) -> RuleParams:
    """Return the parameters of the pool's rule version in force."""
    params = session.scalar(select(PoolRule.params).where(
        PoolRule.pool_id == pool.id, PoolRule.version == pool.rule_version))
    return RuleParams.model_validate(params or {})


def list_rules(*, session: Session, pool_id: int) -> list[PoolRule]:
    """List every rule version of a pool, oldest first."""
    return list(session.scalars(
        select(PoolRule).where(PoolRule.pool_id == pool_id).order_by(PoolRule.version)))


def list_pools(*, session: Session, campaign_id: int) -> list[PoolView]:
    """List a campaign's pools by priority, each with its sponsor and rule in force."""
    pools = list(session.scalars(
        select(MatchPool).where(MatchPool.campaign_id == campaign_id)
        .order_by(MatchPool.priority, MatchPool.id)))
    if not pools:
        return []
    sponsors = {s.id: s for s in session.scalars(
        select(Sponsor).where(Sponsor.id.in_({p.sponsor_id for p in pools})))}
    rules: dict[int, list[PoolRule]] = {}
    for rule in session.scalars(select(PoolRule).where(
            PoolRule.pool_id.in_([p.id for p in pools]))):
        rules.setdefault(rule.pool_id, []).append(rule)
    views = []
    for pool in pools:
        versions = {r.version: r for r in rules.get(pool.id, [])}
        in_force = versions.get(pool.rule_version)
        views.append(PoolView(
            pool=pool, sponsor=sponsors[pool.sponsor_id],
            rule=RuleParams.model_validate(in_force.params if in_force else {}),
            versions=len(versions)))
    return views


@dataclass(frozen=True)
class EnrolmentView:
    """An enrolment with its project's title and the organization's name."""

    enrolment: Enrolment
    project_title: str
    organization_name: str


def get_enrolment(*, session: Session, campaign: Campaign, enrolment_id: int) -> Enrolment:
    """Return an enrolment in this campaign or NotFound ``enrolment_not_found``."""
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None or enrolment.campaign_id != campaign.id:
        raise NotFound("This enrolment does not exist.", code="enrolment_not_found")
    return enrolment


def list_enrolments(
    *, session: Session, campaign_id: int | None = None, organization_id: int | None = None,
    statuses: Sequence[EnrolmentStatus] | None = None, ids: Sequence[int] | None = None,
    limit: int = 500, offset: int = 0,
) -> list[EnrolmentView]:
    """List enrolments (applied first, then approved, …; oldest first) with names."""
    from shanju.organizations.models import Organization

    conditions = []
    if campaign_id is not None:
        conditions.append(Enrolment.campaign_id == campaign_id)
    if organization_id is not None:
        # The organization that receives the funds, or the one that publishes the project.
        conditions.append(or_(Enrolment.organization_id == organization_id,
                              Project.organization_id == organization_id))
    if statuses is not None:
        conditions.append(Enrolment.status.in_(statuses))
    if ids is not None:
        conditions.append(Enrolment.id.in_(ids))
    rows = session.execute(
        select(Enrolment, Project.title, Organization.name)
        .join(Project, Project.id == Enrolment.project_id)
        .join(Organization, Organization.id == Enrolment.organization_id)
        .where(*conditions)
        .order_by(case({ES.APPLIED.value: 0, ES.APPROVED.value: 1, ES.REJECTED.value: 2},
                       value=Enrolment.status, else_=3), Enrolment.id)
        .limit(limit).offset(offset))
    return [EnrolmentView(enrolment=e, project_title=t, organization_name=n)
            for e, t, n in rows]


def enrolment_view(*, session: Session, enrolment: Enrolment) -> EnrolmentView:
    """Return one enrolment with its project's title and organization's name."""
    return list_enrolments(session=session, ids=[enrolment.id])[0]


def enrolment_counts(*, session: Session, campaign_id: int) -> dict[str, int]:
    """Count a campaign's enrolments per status (every status present, zero if none)."""
    counts = dict.fromkeys((s.value for s in EnrolmentStatus), 0)
    for status, n in session.execute(
            select(Enrolment.status, func.count()).where(Enrolment.campaign_id == campaign_id)
            .group_by(Enrolment.status)):
        counts[EnrolmentStatus(status).value] = int(n)
    return counts


def open_for_enrolment(*, session: Session) -> list[Campaign]:
    """List the campaigns organizations may apply to now (scheduled or live, not over)."""
    today = today_cn()
    rows = session.scalars(select(Campaign).where(
        Campaign.status.in_((CS.SCHEDULED, CS.LIVE))).order_by(Campaign.starts_on, Campaign.id))
    return [c for c in rows if campaign_days(c)[1] >= today]


def eligible_projects(*, session: Session, organization_id: int) -> list[Project]:
    """List the fundraising projects an organization may enrol (it publishes or receives)."""
    return [p for p in organizations_projects(session=session, organization_id=organization_id)
            if p.status == ProjectStatus.FUNDRAISING]


def organizations_projects(*, session: Session, organization_id: int) -> list[Project]:
    """List the projects an organization publishes or receives funds for, newest first."""
    from shanju.projects import service as projects

    return projects.list_organization_projects(session=session, organization_id=organization_id)


# --- campaigns: fields and validation ---------------------------------------------------------


@dataclass
class CampaignFields:
    """A campaign's editable fields (None: not given / unchanged)."""

    slug: str | None = None
    name: str | None = None
    name_en: str | None = None
    summary: str | None = None
    starts_on: dt.date | None = None
    days: int | None = None
    opens_at: str | None = None
    closes_at: str | None = None
    org_quota: int | None = None
    hold_days: int | None = None

    def given(self) -> dict[str, Any]:
        """Return the fields that were given."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


SCHEDULE_FIELDS = frozenset({"starts_on", "days", "opens_at", "closes_at"})
# What may still change once a campaign is live (the schedule is what matching runs on).
LIVE_EDITABLE = frozenset({"name", "name_en", "summary", "org_quota", "hold_days"})
ENDED_EDITABLE = frozenset({"name", "name_en", "summary"})


def _text(value: str, *, field: str, max_len: int, required: bool, label: str) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput("%(label)s is required.", code="required", field=field,
                           params={"label": Msg(label)})
    if len(value) > max_len:
        raise InvalidInput("%(label)s can be at most %(n)s characters.", code="too_long",
                           field=field, params={"label": Msg(label), "n": max_len})
    return value


def _int_in(value: int, *, field: str, low: int, high: int, code: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidInput("%(field)s must be a whole number from %(low)s to %(high)s.",
                           code=code, field=field,
                           params={"field": field_label(field), "low": low, "high": high})
    return value


def _hhmm(value: str, *, field: str) -> str:
    value = value.strip()
    if not HHMM_RE.match(value):
        raise InvalidInput("Enter the time as HH:MM, e.g. 10:00.", code="invalid_time",
                           field=field)
    return value


def _slug_taken() -> Conflict:
    return Conflict("Another campaign already uses this slug.", code="slug_taken",
                    field="slug")


def check_campaign_fields(
    fields_: CampaignFields, *, session: Session, campaign: Campaign | None = None,
) -> dict[str, Any]:
    """Validate new values for a campaign (all required ones for a new campaign); return the
    cleaned values that change something."""
    given = fields_.given()
    if campaign is None:
        for name in ("slug", "name", "starts_on"):
            if name not in given:
                label = {"slug": N_("Slug"), "name": N_("Name"), "starts_on": N_("First day")}
                raise InvalidInput("%(label)s is required.", code="required", field=name,
                                   params={"label": Msg(label[name])})
    else:
        changing = {k for k, v in given.items() if getattr(campaign, k) != v}
        if campaign.status is CS.ENDED and changing - ENDED_EDITABLE:
            raise Conflict("This campaign has ended: only its names and summary can change.",
                           code="campaign_ended",
                           field=sorted(changing - ENDED_EDITABLE)[0])
        if campaign.status is CS.LIVE and changing - LIVE_EDITABLE:
            raise Conflict("The schedule of a live campaign cannot change.",
                           code="schedule_locked", field=sorted(changing - LIVE_EDITABLE)[0])
    clean: dict[str, Any] = {}
    if "slug" in given:
        slug = given["slug"].strip().lower()
        if not SLUG_RE.match(slug):
            raise InvalidInput(
                "The slug may use lowercase letters, digits and hyphens (at most 40), e.g. "
                "99-giving-day.", code="invalid_slug", field="slug")
        taken = session.scalar(select(Campaign.id).where(Campaign.slug == slug))
        if taken is not None and (campaign is None or taken != campaign.id):
            raise _slug_taken()
        clean["slug"] = slug
    if "name" in given:
        clean["name"] = _text(given["name"], field="name", max_len=80, required=True,
                              label=N_("Name"))
    if "name_en" in given:
        clean["name_en"] = _text(given["name_en"], field="name_en", max_len=120,
                                 required=False, label=N_("English name"))
    if "summary" in given:
        clean["summary"] = _text(given["summary"], field="summary", max_len=2000,
                                 required=False, label=N_("Summary"))
    if "days" in given:
        clean["days"] = _int_in(given["days"], field="days", low=1, high=MAX_DAYS,
                                code="invalid_days")
    if "org_quota" in given:
        clean["org_quota"] = _int_in(given["org_quota"], field="org_quota", low=1,
                                     high=MAX_QUOTA, code="invalid_quota")
    if "hold_days" in given:
        clean["hold_days"] = _int_in(given["hold_days"], field="hold_days", low=0,
                                     high=MAX_HOLD_DAYS, code="invalid_hold_days")
    for name in ("opens_at", "closes_at"):
        if name in given:
            clean[name] = _hhmm(given[name], field=name)
    opens = clean.get("opens_at", campaign.opens_at if campaign else "10:00")
    closes = clean.get("closes_at", campaign.closes_at if campaign else "23:59")
    if closes <= opens:
        raise InvalidInput("The daily closing time must be after the opening time.",
                           code="closes_before_opens",
                           field="closes_at" if "closes_at" in clean else "opens_at")
    if "starts_on" in given:
        starts_on = given["starts_on"]
        if not isinstance(starts_on, dt.date) or isinstance(starts_on, dt.datetime):
            raise InvalidInput("Enter the first day as YYYY-MM-DD.", code="invalid_date",
                               field="starts_on")
        if not dt.date(2000, 1, 1) <= starts_on <= dt.date(2999, 12, 31):
            raise InvalidInput("Enter the first day as YYYY-MM-DD.", code="invalid_date",
                               field="starts_on")
        changed = campaign is None or starts_on != campaign.starts_on
        if changed and starts_on < today_cn():
            raise InvalidInput("A campaign cannot start in the past.", code="starts_in_past",
                               field="starts_on")
        clean["starts_on"] = starts_on
    if campaign is not None:
        clean = {k: v for k, v in clean.items() if getattr(campaign, k) != v}
    return clean


CAMPAIGN_FORM_FIELDS: tuple[str, ...] = (
    "slug", "name", "name_en", "summary", "starts_on", "days", "opens_at", "closes_at",
    "org_quota", "hold_days",
)
_INT_CODES = {"days": "invalid_days", "org_quota": "invalid_quota",
              "hold_days": "invalid_hold_days"}


def parse_campaign_form(values: dict[str, str]) -> CampaignFields:
    """Turn the campaign form's text into fields (empty text: not given)."""
    result = CampaignFields()
    for name in CAMPAIGN_FORM_FIELDS:
        raw = values.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        if name in ("name", "name_en", "summary"):
            setattr(result, name, raw)
        elif not raw:
            continue
        elif name == "starts_on":
            try:
                result.starts_on = dt.date.fromisoformat(raw)
            except ValueError:
                raise InvalidInput("Enter the first day as YYYY-MM-DD.", code="invalid_date",
                                   field="starts_on") from None
        elif name in _INT_CODES:
            if not is_digits(raw) or len(raw) > 6:
                raise InvalidInput("%(field)s must be a whole number.", code=_INT_CODES[name],
                                   field=name, params={"field": field_label(name)})
            setattr(result, name, int(raw))
        else:
            setattr(result, name, raw)
    return result


def campaign_form_values(campaign: Campaign) -> dict[str, str]:
    """Return the campaign form's values for a campaign."""
    return {
        "slug": campaign.slug, "name": campaign.name, "name_en": campaign.name_en,
        "summary": campaign.summary, "starts_on": campaign.starts_on.isoformat(),
        "days": str(campaign.days), "opens_at": campaign.opens_at,
        "closes_at": campaign.closes_at, "org_quota": str(campaign.org_quota),
        "hold_days": str(campaign.hold_days),
    }


def parse_int_field(text: str, *, field: str, code: str) -> int:
    """Parse a small whole number typed in a form (InvalidInput ``code`` otherwise)."""
    raw = text.strip()
    if not is_digits(raw) or len(raw) > 6:
        raise InvalidInput("%(field)s must be a whole number.", code=code, field=field,
                           params={"field": field_label(field)})
    return int(raw)


def do_create_campaign(*, session: Session, actor: User, fields: CampaignFields) -> Campaign:
    """Create a draft campaign (reviewers and admins)."""
    check_reviewer(actor)
    clean = check_campaign_fields(fields, session=session)
    campaign = Campaign(status=CS.DRAFT, created_by_id=actor.id, **clean)
    # Two reviewers creating the same slug at once: the unique key decides.
    if not flush_unless_duplicate(session, campaign):
        raise _slug_taken()
    audit.record(session, actor_id=actor.id, action="campaigns.campaign.created",
                 object_type="campaign", object_id=campaign.id,
                 data={"new": {k: v.isoformat() if isinstance(v, dt.date) else v
                                   for k, v in clean.items()}})
    return campaign


def do_update_campaign(*, session: Session, actor: User, campaign: Campaign,
                       fields: CampaignFields) -> Campaign:
    """Change a campaign's names, summary, schedule, quota or notice period."""
    check_reviewer(actor)
    locks.lock_campaigns(session, [campaign.id])
    session.refresh(campaign)
    clean = check_campaign_fields(fields, session=session, campaign=campaign)
    if not clean:
        return campaign
    try:
        with session.begin_nested():
            diff = audit.changes(campaign, **clean)
    except IntegrityError:  # another campaign took the new slug meanwhile
        session.refresh(campaign)
        raise _slug_taken() from None
    audit.record(session, actor_id=actor.id, action="campaigns.campaign.updated",
                 object_type="campaign", object_id=campaign.id, data=diff)
    return campaign


def allowed_campaign_actions(campaign: Campaign) -> list[str]:
    """Return the status moves possible from the campaign's status (for buttons)."""
    return [a for a, (sources, _, _) in CAMPAIGN_TRANSITIONS.items()
            if campaign.status in sources]


def funded_pools(*, session: Session, campaign_id: int) -> int:
    """Count the campaign's active pools that still have money."""
    return int(session.scalar(select(func.count()).select_from(MatchPool).where(
        MatchPool.campaign_id == campaign_id, MatchPool.status == PoolStatus.ACTIVE,
        MatchPool.remaining_fen > 0)) or 0)


def check_campaign_transition(*, session: Session, campaign: Campaign, action: str) -> None:
    """Raise unless ``action`` may move the campaign now, with the reason's code."""
    move = CAMPAIGN_TRANSITIONS.get(action)
    if move is None:
        raise NotFound("Unknown action.", code="unknown_action")
    sources, target, _ = move
    if campaign.status not in sources:
        raise Conflict("A campaign cannot go from %(source)s to %(target)s.",
                       code="illegal_transition",
                       params={"source": status_label(campaign.status.value),
                               "target": status_label(target.value)})
    last_day = campaign_days(campaign)[1]
    if action in ("publish", "start") and last_day < today_cn():
        raise Conflict("The campaign's days are over; change its schedule first.",
                       code="campaign_over")
    if action == "start":
        if funded_pools(session=session, campaign_id=campaign.id) == 0:
            raise Conflict("A campaign needs at least one active pool with money to go live.",
                           code="no_funded_pool")
        approved = session.scalar(select(func.count()).select_from(Enrolment).where(
            Enrolment.campaign_id == campaign.id, Enrolment.status == ES.APPROVED)) or 0
        if approved == 0:
            raise Conflict("A campaign needs at least one approved project to go live.",
                           code="no_enrolled_projects")


def do_campaign_transition(*, session: Session, actor: User, campaign: Campaign,
                           action: str) -> Campaign:
    """Publish, unpublish, start (go live) or end a campaign."""
    check_reviewer(actor)
    # The engine decides on the campaign's status under this lock: change it under it too.
    locks.lock_campaigns(session, [campaign.id])
    session.refresh(campaign)
    check_campaign_transition(session=session, campaign=campaign, action=action)
    _, target, verb = CAMPAIGN_TRANSITIONS[action]
    diff = audit.changes(campaign, status=target)
    session.flush()
    audit.record(session, actor_id=actor.id, action=f"campaigns.campaign.{verb}",
                 object_type="campaign", object_id=campaign.id, data=diff)
    return campaign


def _check_not_ended(campaign: Campaign) -> None:
    if campaign.status is CS.ENDED:
        raise Conflict("This campaign has ended.", code="campaign_ended")


# --- sponsors --------------------------------------------------------------------------------


def do_add_sponsor(*, session: Session, actor: User, campaign: Campaign, name: str,
                   kind: SponsorKind | str = SponsorKind.ENTERPRISE,
                   organization_id: int | None = None) -> Sponsor:
    """Add a sponsor (an enterprise or the platform) to a campaign."""
    check_reviewer(actor)
    _check_not_ended(campaign)
    clean_name = _text(name, field="name", max_len=80, required=True, label=N_("Sponsor"))
    try:
        sponsor_kind = SponsorKind(kind)
    except ValueError:
        raise InvalidInput("A sponsor is an enterprise or the platform.",
                           code="invalid_sponsor_kind", field="kind") from None
    if organization_id is not None:
        organizations.get_organization(session=session, org_id=organization_id)
    duplicate = session.scalar(select(Sponsor.id).where(
        Sponsor.campaign_id == campaign.id, Sponsor.name == clean_name))
    if duplicate is not None:
        raise Conflict("This campaign already has a sponsor with this name.",
                       code="sponsor_exists", field="name")
    sponsor = Sponsor(campaign_id=campaign.id, name=clean_name, kind=sponsor_kind,
                      organization_id=organization_id)
    session.add(sponsor)
    session.flush()
    audit.record(session, actor_id=actor.id, action="campaigns.sponsor.created",
                 object_type="campaign_sponsor", object_id=sponsor.id,
                 data={"campaign_id": campaign.id,
                       "new": {"name": clean_name, "kind": sponsor_kind.value}})
    return sponsor


# --- pools and their money -------------------------------------------------------------------


def check_pool_amount(amount_fen: object, *, field: str = "amount_fen") -> int:
    """Return a commitment or top-up in fen: a positive integer up to :data:`MAX_POOL_FEN`."""
    if type(amount_fen) is not int:
        raise InvalidInput("The amount must be a whole number of fen.",
                           code="amount_not_whole_fen", field=field)
    if amount_fen <= 0:
        raise InvalidInput("The amount must be greater than zero.", code="amount_not_positive",
                           field=field)
    if amount_fen > MAX_POOL_FEN:
        raise InvalidInput("The amount is larger than a pool can be.", code="amount_too_large",
                           field=field)
    return amount_fen


def check_rule_params(params: RuleParams | dict[str, Any]) -> RuleParams:
    """Validate a rule's parameters; InvalidInput ``invalid_rule`` naming the first bad one."""
    if isinstance(params, RuleParams):
        return params
    if not isinstance(params, dict):
        raise InvalidInput("The rule must be an object of parameters.", code="invalid_rule")
    try:
        return RuleParams.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        detail = str(first.get("msg", ""))
        if loc:
            detail = loc + ": " + detail
        raise InvalidInput("The rule is not valid: %(detail)s", code="invalid_rule",
                           field=loc or "rule", params={"detail": detail}) from None


def _lock_pool(session: Session, campaign: Campaign, pool: MatchPool) -> MatchPool:
    """Take the campaign lock, then the pool's row, and re-read it (docs/locking.md)."""
    locks.lock_campaigns(session, [campaign.id])
    session.refresh(campaign)
    locked = session.scalar(
        select(MatchPool).where(MatchPool.id == pool.id).with_for_update()
        .execution_options(populate_existing=True))
    if locked is None:  # pools are never deleted; a defensive answer all the same
        raise NotFound("This matching pool does not exist.", code="pool_not_found")
    return locked


def do_create_pool(
    *, session: Session, actor: User, campaign: Campaign, sponsor: Sponsor, name: str,
    budget_fen: int, params: RuleParams | dict[str, Any] | None = None,
    kind: PoolKind | str = PoolKind.MATCHING, priority: int = 100,
) -> MatchPool:
    """Create a sponsor's pool with its initial commitment (``pool.committed`` in the ledger)
    and rule version 1."""
    check_reviewer(actor)
    if sponsor.campaign_id != campaign.id:
        raise NotFound("This sponsor does not exist.", code="sponsor_not_found")
    clean_name = _text(name, field="name", max_len=80, required=True, label=N_("Pool name"))
    try:
        pool_kind = PoolKind(kind)
    except ValueError:
        raise InvalidInput("A pool matches gifts by rule or shares a quadratic round.",
                           code="invalid_pool_kind", field="kind") from None
    _int_in(priority, field="priority", low=0, high=MAX_PRIORITY, code="invalid_priority")
    budget = check_pool_amount(budget_fen, field="budget_fen")
    rule = check_rule_params(params or {})
    locks.lock_campaigns(session, [campaign.id])
    session.refresh(campaign)
    _check_not_ended(campaign)
    pool = MatchPool(campaign_id=campaign.id, sponsor_id=sponsor.id, name=clean_name,
                     kind=pool_kind, priority=priority, committed_fen=budget,
                     remaining_fen=budget, rule_version=1)
    session.add(pool)
    session.flush()
    session.add(PoolRule(pool_id=pool.id, version=1, params=rule.model_dump(mode="json"),
                         created_by_id=actor.id))
    ledger.post(session, ledger.transfer(
        "pool.committed", source=ledger.sponsor(sponsor.id),
        destination=ledger.match_pool(pool.id), amount_fen=budget,
        memo=f"{sponsor.name} → {clean_name}", dedupe_key=f"pool.committed:{pool.id}:1",
        actor_id=actor.id,
        detail=flows.pool_log_detail(pool),
    ))
    session.flush()
    audit.record(session, actor_id=actor.id, action="campaigns.pool.created",
                 object_type="match_pool", object_id=pool.id,
                 data={"campaign_id": campaign.id, "sponsor_id": sponsor.id,
                       "new": {"name": clean_name, "kind": pool_kind.value,
                               "priority": priority, "committed_fen": budget,
                               "rule_version": 1}})
    return pool


def do_top_up_pool(*, session: Session, actor: User, campaign: Campaign, pool: MatchPool,
                   amount_fen: int) -> MatchPool:
    """Add money to a pool (``pool.topped_up``): remaining and committed grow by the amount.

    Reviewers only, while the campaign has not ended; the money moves in
    ``campaigns.flows.top_up_pool`` (under the campaign lock, ledger and pool row together).
    """
    check_reviewer(actor)
    check_pool_amount(amount_fen)
    pool = _lock_pool(session, campaign, pool)
    _check_not_ended(campaign)
    return flows.top_up_pool(session=session, actor=actor, pool_id=pool.id,
                             amount_fen=amount_fen)


def do_update_pool(*, session: Session, actor: User, campaign: Campaign, pool: MatchPool,
                   name: str | None = None, priority: int | None = None) -> MatchPool:
    """Rename a pool or change its priority (lower matches first)."""
    check_reviewer(actor)
    new: dict[str, Any] = {}
    if name is not None:
        new["name"] = _text(name, field="name", max_len=80, required=True,
                            label=N_("Pool name"))
    if priority is not None:
        new["priority"] = _int_in(priority, field="priority", low=0, high=MAX_PRIORITY,
                                  code="invalid_priority")
    pool = _lock_pool(session, campaign, pool)
    diff = audit.changes(pool, **new)
    if diff["new"]:
        session.flush()
        audit.record(session, actor_id=actor.id, action="campaigns.pool.updated",
                     object_type="match_pool", object_id=pool.id, data=diff)
    return pool


def do_set_pool_status(*, session: Session, actor: User, campaign: Campaign, pool: MatchPool,
                       action: str) -> MatchPool:
    """Pause or resume a pool's matching (``action`` is ``pause`` or ``resume``)."""
    check_reviewer(actor)
    moves = {"pause": (PoolStatus.ACTIVE, PoolStatus.PAUSED, "paused"),
             "resume": (PoolStatus.PAUSED, PoolStatus.ACTIVE, "resumed")}
    if action not in moves:
        raise NotFound("Unknown action.", code="unknown_action")
    source, target, verb = moves[action]
    pool = _lock_pool(session, campaign, pool)
    if pool.status is not source:
        raise Conflict("A pool cannot go from %(source)s to %(target)s.",
                       code="illegal_transition",
                       params={"source": status_label(pool.status.value),
                               "target": status_label(target.value)})
    diff = audit.changes(pool, status=target)
    session.flush()
    audit.record(session, actor_id=actor.id, action=f"campaigns.pool.{verb}",
                 object_type="match_pool", object_id=pool.id, data=diff)
    return pool


def do_set_rule(*, session: Session, actor: User, campaign: Campaign, pool: MatchPool,
                params: RuleParams | dict[str, Any]) -> PoolRule:
    """Put a new rule version in force: adds version n+1 (old versions never change).

    ``campaigns.flows.add_rule_version`` writes the version and rebuilds the pool's cap
    counters from its standing matches, so a cap added now counts what was matched before.
    """
    check_reviewer(actor)
    rule = check_rule_params(params)
    pool = _lock_pool(session, campaign, pool)
    _check_not_ended(campaign)
    if pool.status is PoolStatus.CLOSED:
        raise Conflict("This pool is closed.", code="pool_closed")
    if current_rule(session=session, pool=pool) == rule:
        raise Conflict("The rule is the same as the version in force.", code="rule_unchanged")
    return flows.add_rule_version(session=session, actor=actor, pool_id=pool.id, params=rule)


# --- the rule form (pages) -------------------------------------------------------------------

RULE_FORM_FIELDS: tuple[str, ...] = (
    "mode", "ratio", "random", "floor", "min_gift", "max_per_gift", "donor_daily_cap",
    "project_daily_cap", "org_cap", "daily_pot", "windows", "seed",
)
_CAP_FIELDS = {
    "max_per_gift": "max_match_per_gift_fen", "donor_daily_cap": "per_donor_daily_cap_fen",
    "project_daily_cap": "per_project_daily_cap_fen", "org_cap": "per_org_cap_fen",
    "daily_pot": "daily_pot_fen",
}


def parse_yuan_field(text: str, *, field: str, allow_zero: bool = False) -> int | None:
    """Parse an amount in yuan typed in a form into fen (empty: None)."""
    value = read_yuan(text, field=field)
    if value is None:
        return None
    fen = yuan_to_fen(value, field=field)
    if fen < 0 or (fen == 0 and not allow_zero):
        raise InvalidInput("The amount must be greater than zero.", code="amount_not_positive",
                           field=field)
    if fen > MAX_POOL_FEN:
        raise InvalidInput("The amount is larger than a pool can be.", code="amount_too_large",
                           field=field)
    return fen


_RATIO_RE = re.compile(r"^\s*(\d{1,3})\s*[:/：]\s*(\d{1,3})\s*$")
_OPTION_RE = re.compile(r"^\s*(\d{1,7})\s*[×x*@]\s*(\d{1,3})\s*[:/：]\s*(\d{1,3})\s*$")


def _ratio(text: str, *, field: str) -> tuple[int, int]:
    """``"1:1"`` → (1, 1): the match is num/den of the gift (the sponsor's ":" side first)."""
    m = _RATIO_RE.match(text)
    if not m:
        raise InvalidInput("Enter a ratio like 1:1 or 1:2 (match = gift × first ÷ second).",
                           code="invalid_ratio", field=field)
    return int(m.group(1)), int(m.group(2))


def parse_rule_form(values: dict[str, str]) -> dict[str, Any]:
    """Turn the rule form (amounts in yuan) into rule parameters (amounts in fen).

    ``mode`` is ``ratio`` (``ratio`` like ``1:1``) or ``random`` (one option a line,
    ``weight×num:den``, e.g. ``60×1:1``, ``40×0:1``, with ``floor`` in yuan); caps in yuan, empty
    for none; ``windows`` like ``10:00-12:00, 20:00-22:00``.
    """
    params: dict[str, Any] = {}
    mode = values.get("mode", "ratio").strip() or "ratio"
    if mode not in ("ratio", "random"):
        raise InvalidInput("Choose a fixed or a random ratio.", code="invalid_rule",
                           field="mode")
    if mode == "ratio":
        num, den = _ratio(values.get("ratio", "").strip() or "1:1", field="ratio")
        params["ratio_num"], params["ratio_den"] = num, den
    else:
        options = []
        for line in re.split(r"[\n,;，；]+", values.get("random", "")):
            if not line.strip():
                continue
            m = _OPTION_RE.match(line)
            if not m:
                raise InvalidInput(
                    "Write each random option as weight×ratio, e.g. 60×1:1 (one a line).",
                    code="invalid_random_option", field="random")
            options.append({"weight": int(m.group(1)), "num": int(m.group(2)),
                            "den": int(m.group(3))})
        if not options:
            raise InvalidInput("A random ratio needs at least one option.",
                               code="invalid_random_option", field="random")
        params["random"] = options
        floor = parse_yuan_field(values.get("floor", ""), field="floor", allow_zero=True)
        if floor:
            params["floor_fen"] = floor
    min_gift = parse_yuan_field(values.get("min_gift", ""), field="min_gift")
    if min_gift is not None:
        params["min_gift_fen"] = min_gift
    for form_name, param in _CAP_FIELDS.items():
        value = parse_yuan_field(values.get(form_name, ""), field=form_name)
        if value is not None:
            params[param] = value
    windows = []
    for part in re.split(r"[\s,;，；]+", values.get("windows", "").strip()):
        if not part:
            continue
        start, sep, end = part.replace("–", "-").replace("~", "-").partition("-")
        if not sep or not HHMM_RE.match(start) or not HHMM_RE.match(end) or end <= start:
            raise InvalidInput(
                "Write time windows like 10:00-12:00, separated by commas; each must end "
                "after it starts.", code="invalid_window", field="windows")
        windows.append({"start": start, "end": end})
    if windows:
        params["windows"] = windows
    seed = values.get("seed", "").strip()
    if seed:
        if not is_digits(seed) or len(seed) > 18:
            raise InvalidInput("The seed is a whole number.", code="invalid_rule", field="seed")
        params["seed"] = int(seed)
    check_rule_params(params)
    return params


def rule_form_values(rule: RuleParams) -> dict[str, str]:
    """Return the rule form's values for a rule (amounts in yuan)."""
    def yuan(fen: int | None) -> str:
        if fen is None:
            return ""
        text = fen_to_yuan_str(fen)
        return text[:-3] if text.endswith(".00") else text

    values = {
        "mode": "random" if rule.random else "ratio",
        "ratio": f"{rule.ratio_num}:{rule.ratio_den}",
        "random": "\n".join(f"{o.weight}×{o.num}:{o.den}" for o in rule.random or ()),
        "floor": yuan(rule.floor_fen) if rule.floor_fen else "",
        "min_gift": yuan(rule.min_gift_fen) if rule.min_gift_fen > 1 else "",
        "windows": ", ".join(f"{w.start}-{w.end}" for w in rule.windows),
        "seed": str(rule.seed) if rule.seed else "",
    }
    for form_name, param in _CAP_FIELDS.items():
        values[form_name] = yuan(getattr(rule, param))
    return values


# --- enrolment -------------------------------------------------------------------------------


def _quota_used(session: Session, campaign_id: int, organization_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(Enrolment).where(
        Enrolment.campaign_id == campaign_id, Enrolment.organization_id == organization_id,
        Enrolment.status.in_(QUOTA_STATUSES))) or 0)


def quota_left(*, session: Session, campaign: Campaign, organization_id: int) -> int:
    """Return how many more projects the organization may enrol in the campaign."""
    return max(0, campaign.org_quota - _quota_used(session, campaign.id, organization_id))


def check_can_apply(*, actor: User, campaign: Campaign,
                    project: Project) -> int:
    """Raise unless the actor's organization may enrol the project; return the organization
    the enrolment counts for (the one that receives the funds)."""
    org_id = organizations.staff_org_id(actor=actor)
    if org_id not in (project.organization_id, project.recipient_org_id):
        raise PermissionDenied("Your organization neither publishes nor receives for this "
                               "project.", code="not_your_project", field="project_id")
    if campaign.status not in (CS.SCHEDULED, CS.LIVE) or campaign_days(campaign)[1] < today_cn():
        raise Conflict("This campaign does not take applications now.",
                       code="enrolment_closed")
    if project.status is not ProjectStatus.FUNDRAISING:
        raise Conflict("Only a project that is raising funds can take part.",
                       code="project_not_fundraising", field="project_id")
    return project.recipient_org_id


def do_apply(*, session: Session, actor: User, campaign: Campaign,
             project: Project) -> Enrolment:
    """Apply to enrol one of the organization's fundraising projects (quota per org)."""
    org_id = check_can_apply(actor=actor, campaign=campaign, project=project)
    # The campaign lock serializes applications, so two at once cannot both take the last
    # place of a quota.
    locks.lock_campaigns(session, [campaign.id])
    session.refresh(campaign)
    check_can_apply(actor=actor, campaign=campaign, project=project)
    existing = session.scalar(select(Enrolment).where(
        Enrolment.campaign_id == campaign.id, Enrolment.project_id == project.id))
    if existing is not None and existing.status is not ES.WITHDRAWN:
        raise Conflict("This project has already applied (%(status)s).",
                       code="already_enrolled", field="project_id",
                       params={"status": status_label(existing.status.value)})
    if _quota_used(session, campaign.id, org_id) >= campaign.org_quota:
        raise Conflict("Your organization has used its quota of %(quota)s projects in this "
                       "campaign.", code="org_quota_reached", field="project_id",
                       params={"quota": campaign.org_quota})
    if existing is not None:
        diff = audit.changes(existing, status=ES.APPLIED, applied_by_id=actor.id,
                             applied_at=utcnow(), decided_by_id=None, decided_at=None,
                             note="", organization_id=org_id)
        enrolment = existing
    else:
        enrolment = Enrolment(campaign_id=campaign.id, project_id=project.id,
                              organization_id=org_id, status=ES.APPLIED,
                              applied_by_id=actor.id)
        session.add(enrolment)
        diff = {"new": {"status": ES.APPLIED.value}}
    session.flush()
    audit.record(session, actor_id=actor.id, action="campaigns.enrolment.applied",
                 object_type="campaign_enrolment", object_id=enrolment.id,
                 data={"campaign_id": campaign.id, "project_id": project.id, **diff})
    return enrolment


def _lock_enrolment(session: Session, enrolment: Enrolment) -> Enrolment:
    locks.lock_campaigns(session, [enrolment.campaign_id])
    session.refresh(enrolment)
    return enrolment


def do_decide_enrolment(*, session: Session, actor: User, enrolment: Enrolment, approve: bool,
                        note: str = "") -> Enrolment:
    """Approve or reject an application (a rejection needs a note for the organization)."""
    check_reviewer(actor)
    clean_note = _text(note or "", field="note", max_len=200, required=not approve,
                       label=N_("Note"))
    enrolment = _lock_enrolment(session, enrolment)
    target = ES.APPROVED if approve else ES.REJECTED
    if enrolment.status is not ES.APPLIED:
        raise Conflict("An enrolment cannot go from %(source)s to %(target)s.",
                       code="illegal_transition",
                       params={"source": status_label(enrolment.status.value),
                               "target": status_label(target.value)})
    if approve:
        project = session.get(Project, enrolment.project_id)
        if project is None or project.status is not ProjectStatus.FUNDRAISING:
            raise Conflict("Only a project that is raising funds can take part.",
                           code="project_not_fundraising")
    diff = audit.changes(enrolment, status=target, note=clean_note, decided_by_id=actor.id,
                         decided_at=utcnow())
    session.flush()
    audit.record(session, actor_id=actor.id,
                 action=f"campaigns.enrolment.{'approved' if approve else 'rejected'}",
                 object_type="campaign_enrolment", object_id=enrolment.id, data=diff)
    return enrolment


def check_can_withdraw(*, actor: User, enrolment: Enrolment, project: Project) -> None:
    """Raise unless the actor's organization may withdraw this enrolment."""
    org_id = organizations.staff_org_id(actor=actor)
    if org_id not in (enrolment.organization_id, project.organization_id):
        raise PermissionDenied("Your organization neither publishes nor receives for this "
                               "project.", code="not_your_project")


def do_withdraw(*, session: Session, actor: User, enrolment: Enrolment) -> Enrolment:
    """Withdraw an application or an approved enrolment (the organization's own)."""
    project = session.get(Project, enrolment.project_id)
    if project is None:
        raise NotFound("This project does not exist.", code="project_not_found")
    check_can_withdraw(actor=actor, enrolment=enrolment, project=project)
    enrolment = _lock_enrolment(session, enrolment)
    if enrolment.status not in QUOTA_STATUSES:
        raise Conflict("An enrolment cannot go from %(source)s to %(target)s.",
                       code="illegal_transition",
                       params={"source": status_label(enrolment.status.value),
                               "target": status_label("withdrawn")})
    diff = audit.changes(enrolment, status=ES.WITHDRAWN)
    session.flush()
    audit.record(session, actor_id=actor.id, action="campaigns.enrolment.withdrawn",
                 object_type="campaign_enrolment", object_id=enrolment.id, data=diff)
    return enrolment


def do_set_frozen(*, session: Session, actor: User, enrolment: Enrolment, frozen: bool,
                  reason: str = "") -> Enrolment:
    """Freeze a project's matching in a campaign (with a reason) or unfreeze it.

    Gifts to a frozen project are still accepted; they are just not matched.
    """
    check_reviewer(actor)
    clean = _text(reason or "", field="reason", max_len=200, required=frozen,
                  label=N_("Reason"))
    enrolment = _lock_enrolment(session, enrolment)
    if frozen and enrolment.matching_frozen:
        raise Conflict("Matching of this project is already frozen.", code="already_frozen")
    if not frozen and not enrolment.matching_frozen:
        raise Conflict("Matching of this project is not frozen.", code="not_frozen")
    diff = audit.changes(enrolment, matching_frozen=frozen,
                         frozen_reason=clean if frozen else "")
    session.flush()
    audit.record(session, actor_id=actor.id,
                 action=f"campaigns.enrolment.{'frozen' if frozen else 'unfrozen'}",
                 object_type="campaign_enrolment", object_id=enrolment.id,
                 data={**diff, "reason": clean})
    return enrolment
