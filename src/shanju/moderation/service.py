"""Donors' messages: what may be shown, staff's decisions, visitors' reports.

Every page and API that shows a gift's message asks this module first (docs/moderation.md
lists them; a test reads the templates and fails on one that prints a gift's message field
itself). A message is, for the public:

* **shown** — the word list finds nothing in it (:mod:`shanju.moderation.words`), or the
  organization released it (a ``shown`` decision);
* **held** — the word list finds something and nobody released it yet: shown to nobody but its
  donor (who is told it waits for review) and the organization's staff (who decide);
* **hidden** — the organization (or a platform reviewer) hid it, with a reason: shown to
  nobody, the donor told it was hidden. The gift itself stays everywhere, with its amount, its
  name as the donor chose and its receipt.

The word list is applied when a message is posted (its donor's thank-you page says it waits
for review) and again wherever it is read, so that a term added to the list later holds the
messages already posted as well. A decision of the organization wins over the list.

None of these functions commit.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.db import flush_unless_duplicate
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.security import derive_key
from shanju.core.text import check_text
from shanju.gifts.models import Gift, GiftStatus
from shanju.moderation import words
from shanju.moderation.models import (
    Decision,
    MessageDecision,
    MessageReport,
    ReportReason,
    Resolution,
)
from shanju.projects.models import Project

MAX_REASON = 200
# How many of an organization's newest messages the review queue screens for held ones. An
# older held message is not lost: it stays unshown until someone releases it.
HELD_SCAN = 2000
QUEUE_LIMIT = 100


class MessageStatus(enum.StrEnum):
    """What may be done with a gift's message (see the module's doc)."""

    NONE = "none"  # the gift has no message
    SHOWN = "shown"
    HELD = "held"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class MessageView:
    """A gift's message as a page or the API may show it."""

    status: MessageStatus
    text: str = ""  # the message itself (whatever its status: check before showing it)
    screening: words.Screening = field(default_factory=words.Screening)
    reason: str = ""  # why staff hid it (for its donor and staff)

    @property
    def public(self) -> str:
        """What everyone may see: the message when shown, else nothing."""
        return self.text if self.status == MessageStatus.SHOWN else ""

    @property
    def for_donor(self) -> str:
        """What its donor sees: their message unless it was hidden (a held one with a note)."""
        return self.text if self.status in (MessageStatus.SHOWN, MessageStatus.HELD) else ""


def status_of(text: str, decision: Decision | None, screening: words.Screening
              ) -> MessageStatus:
    """The status of a message given the organization's decision and the word list."""
    if not text.strip():
        return MessageStatus.NONE
    if decision == Decision.HIDDEN:
        return MessageStatus.HIDDEN
    if decision == Decision.SHOWN or not screening.held:
        return MessageStatus.SHOWN
    return MessageStatus.HELD


def _decisions(session: Session, gift_ids: Iterable[str]) -> dict[str, MessageDecision]:
    ids = sorted(set(gift_ids))
    if not ids:
        return {}
    return {d.gift_id: d for d in session.scalars(
        select(MessageDecision).where(MessageDecision.gift_id.in_(ids)))}


def views_of(session: Session, messages: Iterable[tuple[str, str]]) -> dict[str, MessageView]:
    """The view of each ``(gift id, message)``: one query for the decisions, then the list."""
    pairs = [(gift_id, text or "") for gift_id, text in messages]
    decided = _decisions(session, [g for g, text in pairs if text.strip()])
    views: dict[str, MessageView] = {}
    for gift_id, text in pairs:
        decision = decided.get(gift_id)
        screening = words.screen(text) if text.strip() else words.Screening()
        status = status_of(text, decision.decision if decision else None, screening)
        views[gift_id] = MessageView(
            status=status, text=text, screening=screening,
            reason=decision.reason if decision and status == MessageStatus.HIDDEN else "")
    return views


def message_view(session: Session, *, gift_id: str, text: str) -> MessageView:
    """The view of one gift's message."""
    return views_of(session, [(gift_id, text)])[gift_id]


def public_messages(session: Session, gifts: Iterable[Gift]) -> dict[str, str]:
    """``{gift id: message}`` of the gifts whose message everyone may see (the others have
    none here): what a public list of gifts shows."""
    views = views_of(session, [(g.public_id, g.message) for g in gifts if g.message])
    return {gift_id: v.public for gift_id, v in views.items() if v.public}


# --- who may moderate -----------------------------------------------------------------------


def get_gift(session: Session, gift_id: str) -> Gift:
    """A received gift that has a message, or NotFound ``message_not_found``."""
    gift = None
    if gift_id and len(gift_id) <= 40:
        gift = session.scalar(select(Gift).where(Gift.public_id == gift_id))
    if (gift is None or not gift.message.strip()
            or gift.status not in (GiftStatus.PAID, GiftStatus.REFUNDED)):
        raise NotFound("This message does not exist.", code="message_not_found")
    return gift


def can_moderate(actor: User | None, project: Project) -> bool:
    """Staff of the organization that publishes the project or receives its gifts, and
    platform reviewers, may hide and show its donors' messages."""
    if actor is None:
        return False
    if actor.is_reviewer:
        return True
    return (actor.role == Role.ORG_STAFF and actor.organization_id is not None
            and actor.organization_id in (project.organization_id, project.recipient_org_id))


def check_can_moderate(*, session: Session, actor: User, gift: Gift) -> Project:
    """The gift's project if ``actor`` may moderate its messages; PermissionDenied otherwise."""
    project = session.get_one(Project, gift.project_id)
    if not can_moderate(actor, project):
        raise PermissionDenied("Only the organization's staff may moderate this message.",
                               code="not_your_project")
    return project


def check_reason(value: str | None, *, required: bool) -> str:
    """A decision's or report's reason: one line, at most 200 characters (required to hide)."""
    text = check_text(value, field="reason", max_length=MAX_REASON,
                      code="reason_too_long",
                      message="The reason can have at most %(n)s characters.")
    if required and not text:
        raise InvalidInput("Say why the message is hidden.", code="reason_required",
                           field="reason")
    return text


# --- decisions ------------------------------------------------------------------------------


def _decide(session: Session, *, actor: User, gift: Gift, decision: Decision, reason: str,
            action: str, resolution: Resolution) -> int:
    row = session.scalar(select(MessageDecision).where(MessageDecision.gift_id == gift.public_id))
    old = {"decision": row.decision.value, "reason": row.reason} if row else {"decision": None}
    if row is None:
        row = MessageDecision(gift_id=gift.public_id, project_id=gift.project_id,
                              decision=decision, reason=reason, decided_by_id=actor.id,
                              decided_at=utcnow())
        if not flush_unless_duplicate(session, row):  # decided at the same moment elsewhere
            row = session.scalars(select(MessageDecision).where(
                MessageDecision.gift_id == gift.public_id)).one()
    row.decision, row.reason = decision, reason
    row.decided_by_id, row.decided_at = actor.id, utcnow()
    closed = _resolve_reports(session, actor=actor, gift_id=gift.public_id, resolution=resolution)
    audit.record(session, actor_id=actor.id, action=action, object_type="gift_message",
                 object_id=gift.public_id,
                 data={"old": old, "new": {"decision": decision.value, "reason": reason,
                                           "reports_closed": closed},
                       "project_id": gift.project_id})
    session.flush()
    return closed


def do_hide(*, session: Session, actor: User, gift: Gift, reason: str) -> int:
    """Hide a message everywhere (the gift stays); its open reports are closed as hidden
    (returns how many). ``reason`` is checked (:func:`check_reason`) and is audited."""
    return _decide(session, actor=actor, gift=gift, decision=Decision.HIDDEN, reason=reason,
                   action="moderation.message.hidden", resolution=Resolution.HIDDEN)


def do_show(*, session: Session, actor: User, gift: Gift, reason: str = "") -> int:
    """Show a message: release a held one or unhide a hidden one (whatever the word list
    says from then on); its open reports are closed as kept (returns how many)."""
    return _decide(session, actor=actor, gift=gift, decision=Decision.SHOWN, reason=reason,
                   action="moderation.message.shown", resolution=Resolution.KEPT)


def do_keep(*, session: Session, actor: User, gift: Gift) -> int:
    """Close a message's open reports without hiding it; return how many were closed."""
    closed = _resolve_reports(session, actor=actor, gift_id=gift.public_id,
                              resolution=Resolution.KEPT)
    if not closed:
        raise Conflict("This message has no open reports.", code="no_open_reports")
    audit.record(session, actor_id=actor.id, action="moderation.reports.kept",
                 object_type="gift_message", object_id=gift.public_id,
                 data={"new": {"reports_closed": closed}, "project_id": gift.project_id})
    session.flush()
    return closed


def _resolve_reports(session: Session, *, actor: User, gift_id: str,
                     resolution: Resolution) -> int:
    reports = list(session.scalars(select(MessageReport).where(
        MessageReport.gift_id == gift_id, MessageReport.resolved_at.is_(None))))
    now = utcnow()
    for report in reports:
        report.resolved_at, report.resolution, report.resolved_by_id = now, resolution, actor.id
    return len(reports)


# --- reports --------------------------------------------------------------------------------


def reporter_key(*, user: User | None, address: str, secret: str) -> str:
    """Who reports, for "one report per reporter": an account, else a keyed hash of the
    visitor's address (the address itself is not stored)."""
    if user is not None:
        return f"u{user.id}"
    key = derive_key(secret, "moderation.reporter-address.v1")
    return "a" + hmac.digest(key, address.encode(), "sha256").hex()[:32]


def check_report_reason(value: object) -> ReportReason:
    """A reason among :class:`ReportReason`, or InvalidInput ``report_reason_invalid``."""
    try:
        return ReportReason(str(value))
    except ValueError:
        raise InvalidInput("Choose why you report this message.", code="report_reason_invalid",
                           field="reason") from None


def reportable_gift(session: Session, gift_id: str) -> Gift:
    """A paid gift whose message everyone may see (what a visitor can report), or NotFound."""
    gift = get_gift(session, gift_id)
    if (gift.status != GiftStatus.PAID
            or message_view(session, gift_id=gift.public_id, text=gift.message).public == ""):
        raise NotFound("This message does not exist.", code="message_not_found")
    return gift


def do_report(*, session: Session, gift: Gift, reason: ReportReason, reporter: str,
              reporter_user: User | None) -> tuple[MessageReport, bool]:
    """Report a message; return ``(report, created)``. The same reporter reporting the same
    message again gets their first report back (``created`` False), whatever its reason."""
    found = session.scalar(select(MessageReport).where(
        MessageReport.gift_id == gift.public_id, MessageReport.reporter_key == reporter))
    if found is not None:
        return found, False
    report = MessageReport(gift_id=gift.public_id, project_id=gift.project_id,
                           reporter_key=reporter,
                           reporter_id=reporter_user.id if reporter_user else None,
                           reason=reason, created_at=utcnow())
    if not flush_unless_duplicate(session, report):  # the same reporter, at the same moment
        return session.scalars(select(MessageReport).where(
            MessageReport.gift_id == gift.public_id,
            MessageReport.reporter_key == reporter)).one(), False
    audit.record(session, actor_id=reporter_user.id if reporter_user else None,
                 action="moderation.report.filed", object_type="gift_message",
                 object_id=gift.public_id,
                 data={"new": {"reason": reason.value}, "project_id": gift.project_id})
    return report, True


# --- the organization's queue ---------------------------------------------------------------


@dataclass
class QueueItem:
    """A message in the organization's review queue."""

    gift: Gift
    project_title: str
    view: MessageView
    reports: int = 0  # open reports
    reasons: dict[str, int] = field(default_factory=dict)  # open reports by reason
    decided_at: dt.datetime | None = None


@dataclass
class Queue:
    """What the organization's staff review: reported, held and hidden messages."""

    reported: list[QueueItem]
    held: list[QueueItem]
    hidden: list[QueueItem]


def _org_projects(session: Session, organization_id: int) -> dict[int, str]:
    return {int(pid): str(title) for pid, title in session.execute(
        select(Project.id, Project.title).where(or_(
            Project.organization_id == organization_id,
            Project.recipient_org_id == organization_id)))}


def _gifts(session: Session, gift_ids: Iterable[str]) -> dict[str, Gift]:
    ids = sorted(set(gift_ids))
    if not ids:
        return {}
    return {g.public_id: g for g in session.scalars(select(Gift).where(Gift.public_id.in_(ids)))}


def queue(*, session: Session, organization_id: int) -> Queue:
    """The review queue of one organization's projects: messages with open reports (most
    reported first), held messages (newest first) and hidden ones (latest decision first)."""
    titles = _org_projects(session, organization_id)
    if not titles:
        return Queue([], [], [])
    project_ids = list(titles)
    open_reports = list(session.execute(
        select(MessageReport.gift_id, MessageReport.reason)
        .where(MessageReport.project_id.in_(project_ids), MessageReport.resolved_at.is_(None))))
    by_gift: dict[str, Counter[str]] = {}
    for gift_id, reason in open_reports:
        by_gift.setdefault(gift_id, Counter())[ReportReason(reason).value] += 1
    hidden_rows = list(session.scalars(
        select(MessageDecision)
        .where(MessageDecision.project_id.in_(project_ids),
               MessageDecision.decision == Decision.HIDDEN)
        .order_by(MessageDecision.decided_at.desc(), MessageDecision.id.desc())
        .limit(QUEUE_LIMIT)))
    recent = list(session.scalars(
        select(Gift).where(Gift.project_id.in_(project_ids), Gift.status == GiftStatus.PAID,
                           Gift.message != "")
        .order_by(Gift.paid_at.desc()).limit(HELD_SCAN)))
    gifts = _gifts(session, [*by_gift, *(d.gift_id for d in hidden_rows)])
    gifts.update({g.public_id: g for g in recent})
    views = views_of(session, [(g.public_id, g.message) for g in gifts.values()])

    def item(gift_id: str) -> QueueItem:
        gift = gifts[gift_id]
        reasons = dict(by_gift.get(gift_id, {}))
        return QueueItem(gift=gift, project_title=titles.get(gift.project_id, ""),
                         view=views[gift_id], reports=sum(reasons.values()), reasons=reasons)

    reported = sorted((item(g) for g in by_gift if g in gifts),
                      key=lambda i: (-i.reports, i.gift.public_id))
    held = [item(g.public_id) for g in recent
            if views[g.public_id].status == MessageStatus.HELD and g.public_id not in by_gift]
    hidden = []
    for row in hidden_rows:
        if row.gift_id in gifts:
            entry = item(row.gift_id)
            entry.decided_at = row.decided_at
            hidden.append(entry)
    return Queue(reported=reported[:QUEUE_LIMIT], held=held[:QUEUE_LIMIT], hidden=hidden)
