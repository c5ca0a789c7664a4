"""Donor receipts: every leaf with one public reference, proved against a signed checkpoint.

A receipt (``shanju-receipt/v1``) is a self-contained JSON document anyone holding it can check
offline: the leaves' exact bytes, each leaf's inclusion proof against the tree of a signed
checkpoint that covers them, the checkpoint (a C2SP signed note) and the verifier key that
signed it::

    {"format": "shanju-receipt/v1", "origin": "...", "ref": "gift:abc",
     "leaves": [{"index": 12, "data": "<b64>", "leaf_hash": "<b64>", "proof": ["<b64>", ...]}],
     "tree_size": 40, "root": "<b64>", "checkpoint": "<signed note>",
     "verifier_key": "<name+hash+key>",
     "opening": {"identity": "user:12", "salt": "<hex>"} | null}

A receipt holds no personal data, so anyone with the reference may have it; the ``opening`` of
the donor commitment (which would tie the leaf to an account) is added only when the viewer is
the donor — decided by the commitment itself: the viewer's identity, committed to with the
ref's salt, must equal a leaf's ``donor``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shanju.core.config import get_settings
from shanju.core.errors import InvalidInput, NotFound, ServiceBusy
from shanju.transparency import checkpoints, leaves, service
from shanju.transparency.models import Checkpoint

FORMAT = "shanju-receipt/v1"
# What a ref looks like: "<kind>:<id>", e.g. "donation:d_x1", "gift:<order id>".
REF_PATTERN = re.compile(r"^[a-z_]{1,20}:[A-Za-z0-9_.\-]{1,96}$")
# The refs a donor's own gift has; a bare id typed into the lookup box is tried with these.
DONOR_REF_KINDS = ("donation", "gift")


@dataclass(frozen=True)
class ReceiptLeaf:
    """One leaf of a receipt and its inclusion proof."""

    index: int
    data: bytes
    leaf_hash: bytes
    proof: list[bytes]
    fields: dict[str, Any]


@dataclass(frozen=True)
class Opening:
    """What opens the donor commitment: the identity and the ref's salt."""

    identity: str
    salt: bytes


@dataclass(frozen=True)
class Receipt:
    """Every leaf with one ref, proved against one signed checkpoint."""

    ref: str
    origin: str
    leaves: list[ReceiptLeaf]
    checkpoint: Checkpoint
    verifier_key: str
    opening: Opening | None

    @property
    def tree_size(self) -> int:
        """The size of the tree the proofs are against (the checkpoint's)."""
        return int(self.checkpoint.size)

    @property
    def checkpoint_time(self) -> dt.datetime:
        """When the checkpoint was signed (UTC)."""
        return dt.datetime.fromtimestamp(self.checkpoint.timestamp_ms / 1000, tz=dt.UTC)

    def to_json(self) -> dict[str, Any]:
        """The receipt document (``shanju-receipt/v1``)."""
        return {
            "format": FORMAT,
            "origin": self.origin,
            "ref": self.ref,
            "leaves": [
                {"index": leaf.index, "data": _b64(leaf.data), "leaf_hash": _b64(leaf.leaf_hash),
                 "proof": [_b64(h) for h in leaf.proof]}
                for leaf in self.leaves
            ],
            "tree_size": self.tree_size,
            "root": _b64(bytes(self.checkpoint.root)),
            "checkpoint": self.checkpoint.note,
            "verifier_key": self.verifier_key,
            "opening": None if self.opening is None else {
                "identity": self.opening.identity, "salt": self.opening.salt.hex()},
        }


class LogBusy(ServiceBusy):
    """The database's write lock could not be had to sign a checkpoint; retry."""

    code = "log_busy"


class CheckpointNeeded(Exception):  # noqa: N818 - a signal to the caller, not an error
    """No signed checkpoint covers the receipt's leaves yet: sign one (in a write transaction)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a checkpoint of at least {size} leaves is needed")
        self.size = size


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_ref(ref: str) -> str:
    """Return ``ref`` if it can be a receipt's reference, else raise NotFound."""
    if not REF_PATTERN.match(ref):
        raise NotFound("There is no receipt with this code.", code="receipt_not_found")
    return ref


def log_secret() -> str:
    """The secret the log's donor salts are derived from: the one ``transparency.log`` uses
    when it writes the leaves (the process's settings: SHANJU_RECEIPT_SALT_KEY, or else the
    secret key)."""
    return get_settings().salt_key


def identity_of(user_id: int) -> str:
    """The identity a donor's commitments are made to."""
    return f"user:{user_id}"


def build_receipt(
    *,
    session: Session,
    ref: str,
    secret: str,
    verifier_key: str,
    viewer_id: int | None = None,
    signer: checkpoints.Signer | None = None,
) -> Receipt:
    """The receipt of ``ref``: its leaves, proofs against a covering checkpoint, and the opening
    when ``viewer_id`` is the donor.

    Reads only, unless ``signer`` is given: then a checkpoint covering the leaves is signed if
    none is (the caller's transaction must be a write transaction). Without ``signer`` and no
    covering checkpoint, raises :class:`CheckpointNeeded`. Unknown ref: NotFound
    ``receipt_not_found``.
    """
    check_ref(ref)
    found = service.leaves_by_ref(session, ref)
    if not found:
        raise NotFound("There is no receipt with this code.", code="receipt_not_found")
    needed = found[-1].index + 1
    # What a checkpoint's key_id holds: "<name>+<hex hash>" (the base64 key may hold "+").
    key_name_hash = "+".join(verifier_key.split("+", 2)[:2])
    checkpoint = checkpoints.latest(session)
    if checkpoint is None or checkpoint.size < needed or checkpoint.key_id != key_name_hash:
        if signer is None:
            raise CheckpointNeeded(needed)
        try:
            checkpoint = checkpoints.ensure_covering(session, signer, needed)
            if checkpoint.key_id != key_name_hash:  # signed by an earlier key: sign anew
                checkpoint = checkpoints.sign_now(session, signer)
        except TimeoutError as exc:
            raise LogBusy("The log is busy; please retry.") from exc
    size = int(checkpoint.size)
    items = [
        ReceiptLeaf(index=leaf.index, data=leaf.data, leaf_hash=leaf.leaf_hash,
                    proof=service.inclusion_proof(session, leaf.index, size),
                    fields=_fields(leaf.data))
        for leaf in found
    ]
    opening = None
    if viewer_id is not None:
        salt = leaves.donor_salt(secret, ref)
        identity = identity_of(viewer_id)
        mine = leaves.donor_commitment(salt, identity)
        if any(item.fields.get("donor") == mine for item in items):
            opening = Opening(identity=identity, salt=salt)
    origin = checkpoint.note.split("\n", 1)[0]
    return Receipt(ref=ref, origin=origin, leaves=items, checkpoint=checkpoint,
                   verifier_key=verifier_key, opening=opening)


def _fields(data: bytes) -> dict[str, Any]:
    try:
        return leaves.decode(data)
    except ValueError:
        return {}  # a damaged leaf: shown as unreadable; the verifier says why


def resolve_code(*, session: Session, code: str) -> str:
    """The ref a receipt code names: a ref, a leaf hash (hex or base64), or a bare donation or
    giving-day order id. Raises InvalidInput ``invalid_receipt_code`` for what cannot be one,
    NotFound ``receipt_not_found`` for a well-formed code that finds nothing."""
    code = code.strip()
    if not code or len(code) > 120:
        raise InvalidInput("Enter a receipt code: a donation number, an order number or a "
                           "leaf hash.", code="invalid_receipt_code", field="code")
    if REF_PATTERN.match(code):
        return code
    leaf_hash = _hash_of(code)
    if leaf_hash is not None:
        found = service.leaf_by_hash(session, leaf_hash)
        if found.ref is None:
            raise NotFound("This entry of the log has no receipt.", code="receipt_not_found")
        return found.ref
    if re.fullmatch(r"[A-Za-z0-9_.\-]{1,96}", code):
        for kind in DONOR_REF_KINDS:
            ref = f"{kind}:{code}"
            if service.leaves_by_ref(session, ref):
                return ref
        raise NotFound("There is no receipt with this code.", code="receipt_not_found")
    raise InvalidInput("Enter a receipt code: a donation number, an order number or a leaf hash.",
                       code="invalid_receipt_code", field="code")


def _hash_of(code: str) -> bytes | None:
    if re.fullmatch(r"[0-9a-fA-F]{64}", code):
        return bytes.fromhex(code)
    if len(code) == 44 and code.endswith("="):
        try:
            raw = base64.b64decode(code, validate=True)
        except binascii.Error:
            return None
        return raw if len(raw) == 32 else None
    return None


@dataclass(frozen=True)
class LeafSummary:
    """What one leaf says, for people: kind, amount, accounts, project, time."""

    index: int
    kind: str
    amount_fen: int | None
    source: str
    destination: str
    project_id: int | None
    time: dt.datetime | None
    has_donor: bool
    fields: Mapping[str, Any]


def summarize(items: Sequence[ReceiptLeaf]) -> list[LeafSummary]:
    """Plain facts of each leaf (no names: a leaf holds none)."""
    out = []
    for item in items:
        f = item.fields
        amount = f.get("amount")
        project = f.get("project")
        out.append(LeafSummary(
            index=item.index,
            kind=str(f.get("kind", "")),
            amount_fen=amount if type(amount) is int else None,
            source=str(f.get("from", "")),
            destination=str(f.get("to", "")),
            project_id=project if type(project) is int else None,
            time=_parse_time(f.get("time")),
            has_donor=isinstance(f.get("donor"), str),
            fields=f,
        ))
    return out


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
