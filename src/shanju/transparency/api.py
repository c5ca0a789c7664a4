"""The transparency log's public API, mirroring RFC 6962 §4 for independent auditors.

Under ``/api/v1/transparency/``:

- ``checkpoint``: the latest signed tree head (signed on demand when the log has grown and
  the latest checkpoint is older than a second), never cached;
- ``public-key``: the Ed25519 key that signs checkpoints;
- ``entries?start&end``: leaf bytes, ``start`` inclusive, ``end`` exclusive, at most 1,000 per
  call (a longer range is cut, as is an ``end`` beyond the log);
- ``proof/inclusion?index&size``, ``proof/consistency?first&second``,
  ``proof/by-hash?hash&size``: proofs, which never change for given arguments — served with
  an ``ETag`` and ``Cache-Control: immutable``;
- ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``: C2SP tlog-tiles (hash tiles and
  entry bundles), static and cacheable for mirrors.

Handlers only parse, call :mod:`shanju.transparency.service` / :mod:`.checkpoints` and render;
see ``docs/transparency/checkpoints-api.md``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.deps import DbSession, get_database
from shanju.core.errors import InvalidInput, NotFound
from shanju.core.leader import Leadership
from shanju.transparency import checkpoints, service
from shanju.transparency.checkpoints import Checkpointer, Signer
from shanju.transparency.receipts import LogBusy
from shanju.transparency.schemas import (
    CheckpointRead,
    ConsistencyProofRead,
    EntriesRead,
    EntryRead,
    InclusionProofRead,
    PublicKeyRead,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["transparency"])

MAX_INDEX = 2**63 - 1  # leaf indexes and tree sizes are 64-bit in the database
IMMUTABLE = "public, max-age=31536000, immutable"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63 // TILE_HEIGHT  # tree levels up to 63 (2**63 leaves)

Index = Annotated[int, Query(le=MAX_INDEX, description="A leaf index (0-based).")]
Size = Annotated[int, Query(le=MAX_INDEX, description="A tree size (number of leaves).")]


def b64(data: bytes) -> str:
    """Standard base64 with padding, as every hash and key in this API."""
    return base64.b64encode(data).decode()


# --- the signer and the periodic checkpointer -------------------------------------------------

_signer_lock = threading.Lock()


def app_signer(app: FastAPI) -> Signer:
    """The application's checkpoint signer, loaded once from its settings' key file."""
    with _signer_lock:
        signer: Signer | None = getattr(app.state, "transparency_signer", None)
        if signer is None:
            settings: Settings = app.state.settings
            signer = checkpoints.load_signer(settings)
            app.state.transparency_signer = signer
        return signer


def get_signer(request: Request) -> Signer:
    """Dependency: the application's checkpoint signer."""
    return app_signer(request.app)


@asynccontextmanager
async def checkpointer_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, sign a checkpoint every ``transparency_checkpoint_seconds`` if the
    log grew (not at all if the setting is 0 or less). One checkpointer per process; of several
    processes only the leader's rounds run."""
    settings: Settings = app.state.settings
    interval = settings.transparency_checkpoint_seconds
    worker: Checkpointer | None = None
    if interval > 0:
        # A thread in each process; of several processes, the leader signs (core/leader.py).
        worker = Checkpointer(app.state.db, app_signer(app), interval,
                              leader=Leadership(app.state.db, "transparency-checkpointer"))
        worker.start()
        log.info("transparency.checkpointer.started", interval=interval)
    try:
        yield
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop)
            log.info("transparency.checkpointer.stopped")


# --- responses -----------------------------------------------------------------------------------


def _immutable_json(request: Request, payload: BaseModel) -> Response:
    """``payload`` as JSON that never changes: an ETag, long caching, 304 on a match."""
    body = payload.model_dump_json().encode()
    return _immutable(request, body, "application/json")


def _immutable(request: Request, body: bytes, media_type: str,
               cache_control: str = IMMUTABLE) -> Response:
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": cache_control}
    sent = request.headers.get("if-none-match", "")
    if sent and (sent.strip() == "*" or etag in [t.strip() for t in sent.split(",")]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _decode_hash(text: str) -> bytes:
    # A '+' in a query string that was not percent-encoded arrives as a space; URL-safe
    # base64 is accepted as well.
    cleaned = text.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidInput("The hash must be the base64 of 32 bytes (a SHA-256 leaf hash).",
                           code="invalid_hash", field="hash")
    return raw


# --- checkpoint and key --------------------------------------------------------------------------


@router.get("/transparency/checkpoint", response_model=CheckpointRead,
            summary="The latest signed checkpoint")
def checkpoint(database: Annotated[Database, Depends(get_database)],
               signer: Annotated[Signer, Depends(get_signer)]) -> Response:
    """The latest signed tree head: size, root, signing time and the C2SP signed note.

    Signed on demand when the log has grown since the latest checkpoint and that one is at
    least a second old, so the answer is never more than a second (or one background round)
    behind the log.
    """
    try:
        current = checkpoints.refresh(database, signer)
    except TimeoutError as exc:
        raise LogBusy("The log is busy; please retry.") from exc
    body = CheckpointRead(
        size=int(current.size), root=b64(bytes(current.root)),
        timestamp=int(current.timestamp_ms), checkpoint=current.note,
        public_key=b64(signer.public_key), verifier_key=signer.key_id, origin=signer.name,
    )
    return Response(body.model_dump_json(), media_type="application/json",
                    headers={"Cache-Control": "no-cache"})


@router.get("/transparency/public-key", response_model=PublicKeyRead,
            summary="The checkpoint signing key")
def public_key(signer: Annotated[Signer, Depends(get_signer)]) -> Response:
    """The Ed25519 key that signs checkpoints, as a signed-note verifier key and raw."""
    body = PublicKeyRead(verifier_key=signer.key_id, public_key=b64(signer.public_key),
                         origin=signer.name)
    return Response(body.model_dump_json(), media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


# --- entries and proofs -------------------------------------------------------------------------


@router.get("/transparency/entries", response_model=EntriesRead, summary="Log entries")
def entries(request: Request, session: DbSession, start: Index, end: Index) -> Response:
    """Leaves ``start`` (inclusive) to ``end`` (exclusive): their index and exact bytes.

    At most 1,000 per call; a longer range, or one reaching past the log, is cut (ask again
    from the last index + 1). A ``start`` at or beyond the log's size is refused.
    """
    if start < 0 or end <= start:
        raise InvalidInput("Ask for 0 <= start < end.", code="invalid_range", field="start")
    size = service.head(session).size
    if start >= size:
        raise InvalidInput("The log is not that large yet.", code="range_beyond_log",
                           field="start", details={"size": size})
    cut = min(end, size, start + service.MAX_ENTRIES)
    leaves = service.entries(session, start, cut)
    body = EntriesRead(entries=[EntryRead(index=x.index, data=b64(x.data)) for x in leaves])
    if end <= size and len(leaves) == cut - start:
        # Every asked-for leaf exists: the answer to this query never changes.
        return _immutable_json(request, body)
    return Response(body.model_dump_json(), media_type="application/json")


@router.get("/transparency/proof/inclusion", response_model=InclusionProofRead,
            summary="Inclusion proof by leaf index")
def inclusion(request: Request, session: DbSession, index: Index, size: Size) -> Response:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    proof = service.inclusion_proof(session, index, size)
    return _immutable_json(request, InclusionProofRead(
        index=index, size=size, proof=[b64(h) for h in proof]))


@router.get("/transparency/proof/consistency", response_model=ConsistencyProofRead,
            summary="Consistency proof between two tree sizes")
def consistency(request: Request, session: DbSession, first: Size, second: Size) -> Response:
    """Proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""
    proof = service.consistency_proof(session, first, second)
    return _immutable_json(request, ConsistencyProofRead(
        first=first, second=second, proof=[b64(h) for h in proof]))


@router.get("/transparency/proof/by-hash", response_model=InclusionProofRead,
            summary="Inclusion proof by leaf hash")
def by_hash(request: Request, session: DbSession,
            hash: Annotated[str, Query(max_length=100,  # noqa: A002 - the RFC 6962 name
                                       description="Base64 leaf hash SHA-256(0x00 ‖ data).")],
            size: Size) -> Response:
    """The index of the first leaf with this leaf hash and its audit path in the tree of
    ``size`` leaves (how a receipt's leaf is proved)."""
    leaf_hash = _decode_hash(hash)
    if size > service.head(session).size:
        raise InvalidInput("The log is not that large yet.", code="tree_size_too_large",
                           field="size")
    leaf = service.leaf_by_hash(session, leaf_hash)
    if leaf.index >= size:
        raise NotFound("This leaf is not in the tree of that size.", code="leaf_not_in_tree")
    proof = service.inclusion_proof(session, leaf.index, size)
    return _immutable_json(request, InclusionProofRead(
        index=leaf.index, size=size, proof=[b64(h) for h in proof]))


# --- tiles (C2SP tlog-tiles) --------------------------------------------------------------------

_TILE_INDEX = re.compile(r"((?:x[0-9]{3}/)*)([0-9]{3})(?:\.p/([0-9]{1,3}))?")
_TILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The tile's bytes."},
}


def _tile_index(text: str) -> tuple[int, int]:
    """``x001/x234/067[.p/W]`` → (1234067, W or 256); only the canonical form."""
    match = _TILE_INDEX.fullmatch(text)
    if match is None:
        raise NotFound("No such tile.", code="tile_not_found")
    number = int(match.group(1).replace("x", "").replace("/", "") + match.group(2))
    width = int(match.group(3)) if match.group(3) is not None else TILE_WIDTH
    canonical = tile_index_path(number) + (f".p/{width}" if width != TILE_WIDTH else "")
    if not 0 < width <= TILE_WIDTH or canonical != text:
        raise NotFound("No such tile.", code="tile_not_found")
    return number, width


def tile_index_path(number: int) -> str:
    """The tlog-tiles encoding of a tile number: 3-digit groups, all but the last 'x'-led."""
    digits = str(number)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def _tile_cache(width: int) -> str:
    # A full tile never changes; a partial one is replaced by wider ones as the log grows.
    return IMMUTABLE if width == TILE_WIDTH else "public, max-age=60"


@router.get("/transparency/tile/entries/{tile:path}", response_class=Response,
            responses=_TILE_RESPONSES, summary="Entry bundle (C2SP tlog-tiles)")
def entry_bundle(request: Request, session: DbSession, tile: str) -> Response:
    """Leaves ``N*256`` to ``N*256 + W``: each as a big-endian uint16 length and its bytes."""
    number, width = _tile_index(tile)
    start = number * TILE_WIDTH
    if start + width > service.head(session).size:
        raise NotFound("No such tile yet.", code="tile_not_found")
    leaves = service.entries(session, start, start + width)
    if len(leaves) != width:
        raise NotFound("No such tile yet.", code="tile_not_found")
    parts: list[bytes] = []
    for leaf in leaves:
        if len(leaf.data) > 0xFFFF:
            raise InvalidInput("An entry is too long for an entry bundle.",
                               code="entry_too_long")
        parts.append(len(leaf.data).to_bytes(2, "big") + leaf.data)
    return _immutable(request, b"".join(parts), "application/octet-stream",
                      _tile_cache(width))


@router.get("/transparency/tile/{level}/{tile:path}", response_class=Response,
            responses=_TILE_RESPONSES, summary="Hash tile (C2SP tlog-tiles)")
def hash_tile(request: Request, session: DbSession, level: str, tile: str) -> Response:
    """The hashes of the tree's level ``8·L`` nodes ``N*256`` to ``N*256 + W``, 32 bytes each."""
    if not re.fullmatch(r"0|[1-9][0-9]?", level) or int(level) > MAX_TILE_LEVEL:
        raise NotFound("No such tile.", code="tile_not_found")
    tree_level = int(level) * TILE_HEIGHT
    number, width = _tile_index(tile)
    first = number * TILE_WIDTH
    if (first + width) << tree_level > service.head(session).size:
        raise NotFound("No such tile yet.", code="tile_not_found")
    keys = [(tree_level, i) for i in range(first, first + width)]
    found = service.fetcher(session)(keys)
    if len(found) != width:
        raise NotFound("No such tile yet.", code="tile_not_found")
    body = b"".join(found[k] for k in keys)
    return _immutable(request, body, "application/octet-stream", _tile_cache(width))


# ==== receipts (helper D) ========================================================================
# Helper D appends the receipt route (GET /transparency/receipts/{ref}) below this line, on
# the same ``router``. Everything above belongs to the checkpoints/API part.

from fastapi.responses import JSONResponse  # noqa: E402

from shanju.core.deps import Viewer  # noqa: E402
from shanju.transparency import receipts  # noqa: E402


@router.get("/transparency/receipts/{ref}", summary="A donor receipt with its proofs",
            responses={404: {"description": "No leaf has this ref (`receipt_not_found`)."}})
def receipt(ref: str, request: Request, session: DbSession, viewer: Viewer,
            signer: Annotated[Signer, Depends(get_signer)]) -> Response:
    """Every log entry with the public reference ``ref`` (``donation:<id>``, ``gift:<order>``,
    ...), each with its inclusion proof against a signed checkpoint that covers them, the
    checkpoint and its verifier key (format ``shanju-receipt/v1``). ``opening`` (the identity
    and salt of the donor commitment) is filled in only for the donor; ``null`` otherwise."""
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
