"""JSON API of donors' messages (under /api/v1): report one; staff review, hide and show."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import ratelimit
from shanju.core.deps import CurrentUser, DbSession, OrgStaff, Viewer
from shanju.core.masking import mask_name
from shanju.gifts.models import Gift
from shanju.moderation import service
from shanju.moderation.models import MessageReport
from shanju.moderation.schemas import (
    DecisionCreate,
    DecisionRead,
    MessageRead,
    ModerationQueue,
    ReportCreate,
    ReportRead,
)
from shanju.organizations import service as organizations

router = APIRouter(tags=["moderation"])

GiftId = Annotated[str, Path(max_length=40, description="The gift's public id (d_… or an "
                                                       "order id), as lists of gifts give it")]


def _report_read(report: MessageReport) -> ReportRead:
    return ReportRead(id=report.id, gift_id=report.gift_id, reason=report.reason,
                      created_at=report.created_at, resolution=report.resolution)


@router.post("/gift-messages/{gift_id}/reports", response_model=ReportRead, status_code=201,
             summary="Report a donor's message (anyone; once per reporter)",
             responses={200: {"description": "Reported before by the same reporter: that "
                                             "report"},
                        404: {"description": "No such message shown (message_not_found)"},
                        429: {"description": "Too many reports (rate_limited)"}})
def report_message(gift_id: GiftId, body: ReportCreate, request: Request, response: Response,
                   session: DbSession, viewer: Viewer) -> ReportRead:
    """Report a message shown on a project's page; its organization's staff review it."""
    ratelimit.enforce(request, "message_report", account=viewer.id if viewer else None)
    gift = service.reportable_gift(session, gift_id)
    report, created = service.do_report(
        session=session, gift=gift, reason=body.reason, reporter_user=viewer,
        reporter=service.reporter_key(user=viewer, address=ratelimit.client_address(request),
                                      secret=request.app.state.settings.secret_key))
    if not created:
        response.status_code = 200
    return _report_read(report)


def _read(item: service.QueueItem) -> MessageRead:
    g, view = item.gift, item.view
    return MessageRead(
        gift_id=g.public_id, project_id=g.project_id, project_title=item.project_title,
        donor=mask_name(g.donor_name, anonymous=g.anonymous), amount_fen=g.amount_fen,
        paid_at=g.paid_at, message=view.text, status=view.status,
        held_for=[*view.screening.terms, *view.screening.labels], reports=item.reports,
        reasons=item.reasons, hidden_reason=view.reason)


@router.get("/gift-messages", response_model=ModerationQueue,
            summary="The organization's review queue of donors' messages (its staff)")
def review_queue(session: DbSession, staff: OrgStaff) -> ModerationQueue:
    """Messages to the staff's organization's projects that were reported, are held by the
    word list, or were hidden (at most 100 of each)."""
    found = service.queue(session=session,
                          organization_id=organizations.staff_org_id(actor=staff))
    return ModerationQueue(reported=[_read(i) for i in found.reported],
                           held=[_read(i) for i in found.held],
                           hidden=[_read(i) for i in found.hidden])


def _decided(session: Session, gift_id: str, closed: int) -> DecisionRead:
    gift = service.get_gift(session, gift_id)
    view = service.message_view(session, gift_id=gift.public_id, text=gift.message)
    return DecisionRead(gift_id=gift.public_id, status=view.status, reports_closed=closed)


def _checked(session: Session, user: User, gift_id: str) -> Gift:
    gift = service.get_gift(session, gift_id)
    service.check_can_moderate(session=session, actor=user, gift=gift)
    return gift


@router.post("/gift-messages/{gift_id}/hide", response_model=DecisionRead,
             summary="Hide a donor's message everywhere (the gift stays)")
def hide_message(gift_id: GiftId, body: DecisionCreate, session: DbSession,
                 user: CurrentUser) -> DecisionRead:
    """Hide the message, with a reason (audited); its open reports are closed."""
    gift = _checked(session, user, gift_id)
    reason = service.check_reason(body.reason, required=True)
    closed = service.do_hide(session=session, actor=user, gift=gift, reason=reason)
    return _decided(session, gift.public_id, closed)


@router.post("/gift-messages/{gift_id}/show", response_model=DecisionRead,
             summary="Show a donor's message: release a held one, or unhide a hidden one")
def show_message(gift_id: GiftId, body: DecisionCreate, session: DbSession,
                 user: CurrentUser) -> DecisionRead:
    """Show the message from now on, whatever the word list says (audited)."""
    gift = _checked(session, user, gift_id)
    reason = service.check_reason(body.reason, required=False)
    closed = service.do_show(session=session, actor=user, gift=gift, reason=reason)
    return _decided(session, gift.public_id, closed)


@router.post("/gift-messages/{gift_id}/keep", response_model=DecisionRead,
             summary="Close a message's reports and keep it shown",
             responses={409: {"description": "No open reports (no_open_reports)"}})
def keep_message(gift_id: GiftId, session: DbSession, user: CurrentUser) -> DecisionRead:
    """Close the open reports of a message that stays as it is (audited)."""
    gift = _checked(session, user, gift_id)
    closed = service.do_keep(session=session, actor=user, gift=gift)
    return _decided(session, gift.public_id, closed)
