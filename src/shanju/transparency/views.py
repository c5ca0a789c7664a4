"""Transparency pages: "你的名字,我们记得 / Your name, we remember" (look a gift up, list my
gifts) and a receipt page that verifies its proofs in the browser."""

from __future__ import annotations

import base64
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import holds as campaign_gifts
from shanju.core.deps import DbSession, Viewer, get_database
from shanju.core.errors import DomainError, NotFound
from shanju.core.web import redirect, render, tr
from shanju.donations import service as donations
from shanju.donations.models import DonationStatus
from shanju.gifts import service as gifts
from shanju.gifts.models import GiftKind
from shanju.transparency import checkpoints, receipts

router = APIRouter()

MY_GIFTS_LIMIT = 50
# The log's reference kinds of gifts (``donation:d_…``, ``gift:o_…``).
_GIFT_KINDS = {"donation": GiftKind.DONATION, "gift": GiftKind.GIVING_DAY}


def receipt_path(ref: str) -> str:
    """The receipt page of ``ref``."""
    return "/transparency/receipts/" + quote(ref, safe=":")


def _my_gifts(session: Session, viewer: User) -> dict[str, Any]:
    rows, total = donations.list_donations(
        session=session, donor_id=viewer.id, limit=MY_GIFTS_LIMIT,
        statuses=(DonationStatus.PAID, DonationStatus.REFUNDED),
    )
    return {
        "my_donations": rows,
        "my_donations_total": total,
        "my_projects": donations.project_titles(session=session,
                                                project_ids=[d.project_id for d in rows]),
        "my_giving_day_gifts": campaign_gifts.donor_gifts(session=session, donor_id=viewer.id,
                                                          limit=MY_GIFTS_LIMIT),
    }


@router.get("/remember", response_class=HTMLResponse)
def remember(
    request: Request,
    session: DbSession,
    viewer: Viewer,
    code: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """"Your name, we remember": find a gift's receipt by its code; a donor's own gifts."""
    error: DomainError | None = None
    if code.strip():
        try:
            return redirect(receipt_path(receipts.resolve_code(session=session, code=code)))
        except DomainError as exc:
            error = exc
    ctx: dict[str, Any] = {"code": code, "form_error": error,
                           "form_message": tr(request, error.message) if error else ""}
    if viewer is not None:
        ctx.update(_my_gifts(session, viewer))
    return render(request, "transparency/remember.html", ctx,
                  status_code=error.status_code if error else 200)


def _signer(request: Request) -> checkpoints.Signer:
    # The app's signer, as the transparency API loads it once (app.state.transparency_signer).
    signer: checkpoints.Signer | None = getattr(request.app.state, "transparency_signer", None)
    return signer if signer is not None else checkpoints.load_signer(request.app.state.settings)


def _pending(session: Session, ref: str, viewer: User | None) -> bool:
    """True when ``ref`` is the viewer's own donation or gift whose entry is not written yet."""
    if viewer is None:
        return False
    kind, _, ident = ref.partition(":")
    gift_kind = _GIFT_KINDS.get(kind)
    if gift_kind is None:
        return False
    return gifts.is_own_received_gift(session=session, kind=gift_kind, public_id=ident,
                                      donor_id=viewer.id)


@router.get("/transparency/receipts/{ref}", response_class=HTMLResponse)
def receipt_page(ref: str, request: Request, session: DbSession, viewer: Viewer) -> Response:
    """A receipt: what the log says, where, the signed checkpoint, the proof, and the
    verification that runs in the browser."""
    signer = _signer(request)
    viewer_id = viewer.id if viewer else None
    try:
        try:
            found = receipts.build_receipt(session=session, ref=ref, secret=receipts.log_secret(),
                                           verifier_key=signer.key_id, viewer_id=viewer_id)
        except receipts.CheckpointNeeded:
            # The entries were just written; no checkpoint covers them yet: sign one.
            with get_database(request).transaction(write=True) as write:
                found = receipts.build_receipt(
                    session=write, ref=ref, secret=receipts.log_secret(),
                    verifier_key=signer.key_id, viewer_id=viewer_id, signer=signer)
    except NotFound:
        if receipts.REF_PATTERN.match(ref) and _pending(session, ref, viewer):
            return render(request, "transparency/pending.html",
                          {"ref": ref, "path": receipt_path(ref)})
        raise
    summaries = receipts.summarize(found.leaves)
    project_ids = {s.project_id for s in summaries if s.project_id is not None}
    project_ids |= {int(code.split(":", 1)[1]) for s in summaries
                    for code in (s.source, s.destination)
                    if code.startswith("project:") and code.split(":", 1)[1].isdigit()}
    return render(request, "transparency/receipt.html", {
        "receipt": found,
        "summaries": summaries,
        "projects": donations.project_titles(session=session, project_ids=project_ids),
        "api_path": "/api/v1/transparency/receipts/" + quote(ref, safe=":"),
        "download_name": "shanju-receipt-" + ref.replace(":", "-") + ".json",
        "b64": lambda data: base64.b64encode(bytes(data)).decode(),
    })
