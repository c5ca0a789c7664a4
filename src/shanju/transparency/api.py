"""Transparency api: routes (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["transparency"])


# --- receipts (helper D) -----------------------------------------------------------------------
# Kept at the end of the file, separate from the log's API above.

from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from shanju.core.deps import DbSession, Viewer, get_database  # noqa: E402
from shanju.transparency import checkpoints as _checkpoints  # noqa: E402
from shanju.transparency import receipts  # noqa: E402


@router.get("/transparency/receipts/{ref}", summary="A donor receipt with its proofs",
            responses={404: {"description": "No leaf has this ref (`receipt_not_found`)."}})
def receipt(ref: str, request: Request, session: DbSession, viewer: Viewer) -> JSONResponse:
    """Every log entry with the public reference ``ref`` (``donation:<id>``, ``gift:<order>``,
    ...), each with its inclusion proof against a signed checkpoint that covers them, the
    checkpoint and its verifier key (format ``shanju-receipt/v1``). ``opening`` (the identity
    and salt of the donor commitment) is filled in only for the donor; ``null`` otherwise."""
    settings = request.app.state.settings
    signer = _checkpoints.load_signer(settings)
    viewer_id = viewer.id if viewer else None
    try:
        found = receipts.build_receipt(session=session, ref=ref, secret=receipts.log_secret(),
                                       verifier_key=signer.key_id, viewer_id=viewer_id)
    except receipts.CheckpointNeeded:
        # No checkpoint covers the entries yet (they were just written): sign one.
        with get_database(request).transaction(write=True) as write:
            found = receipts.build_receipt(session=write, ref=ref, secret=receipts.log_secret(),
                                           verifier_key=signer.key_id, viewer_id=viewer_id,
                                           signer=signer)
    return JSONResponse(found.to_json(), headers={"Cache-Control": "no-store"})
