"""What one leaf of the transparency log says, as canonical bytes, and donor commitments.

A leaf is one money movement as compact UTF-8 JSON with sorted keys (no spaces), so the bytes
are the same whoever writes them and anyone can read them::

    {"donor":"<64 hex>","entry":42,"kind":"donation.paid",
     "legs":[["donor_clearing:sandbox",-5000],["project:7",5000]],
     "organization":3,"project":7,"ref":"donation:d_x1","time":"2026-09-07T01:02:03.456789Z","v":1}

- ``legs`` are the movement's postings: money entering (positive) or leaving (negative) each
  account; they sum to zero. Summing a journal entry's leaves' legs gives its postings exactly.
- ``entry`` is the journal entry (one entry may have many leaves: a giving-day batch has one
  leaf per gift); ``ref`` is the public reference a receipt looks the leaf up by.
- ``donor`` is a salted commitment, never a name or an id: ``SHA-256(DONOR_TAG || salt ||
  identity)``. The salt is derived from the platform's secret and the leaf's ``ref``, so the
  donor's receipt can show it and the identity (``user:<id>``) and anyone holding the receipt
  can open the commitment; without it, the identity cannot be recovered from the log.
- Amounts are integer fen; times are UTC, microseconds, ``Z``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEAF_VERSION = 1
DONOR_TAG = b"shanju/donor-commitment/v1\n"
_SALT_TAG = b"shanju/donor-salt/v1\n"

Scalar = str | int | bool | None
PublicValue = Scalar | Sequence[str]


@dataclass(frozen=True, slots=True)
class LogDetail:
    """What the log says about (a part of) a journal entry, beyond its legs.

    A journal entry without details gets one leaf with its legs. An entry with one detail
    whose ``legs`` is None gets one leaf with the entry's legs and this detail. An entry with
    several details gets one leaf per detail; each gives its own ``legs``, and they must sum,
    per account, to the entry's legs.
    """

    ref: str | None = None  # public reference, e.g. "donation:d_x1", "gift:<order id>"
    donor: str | None = None  # private identity to commit to, e.g. "user:12"; never published
    public: Mapping[str, PublicValue] | None = None  # project, organization, purpose, …
    legs: Sequence[tuple[str, int]] | None = None  # this part's legs (several-part entries)
    kind: str | None = None  # this part's kind when it differs from the entry's


def donor_salt(secret: str, ref: str) -> bytes:
    """The 16-byte salt of the donor commitment in the leaf with public reference ``ref``."""
    return hmac.new(secret.encode(), _SALT_TAG + ref.encode(), hashlib.sha256).digest()[:16]


def donor_commitment(salt: bytes, identity: str) -> str:
    """The commitment (hex) to ``identity`` with ``salt``: what the leaf's ``donor`` holds."""
    return hashlib.sha256(DONOR_TAG + salt + identity.encode()).hexdigest()


def format_time(moment: dt.datetime) -> str:
    """UTC time as the log writes it: ``2026-09-07T01:02:03.456789Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def encode(fields: Mapping[str, object]) -> bytes:
    """Canonical bytes of a leaf's fields (sorted keys, no spaces, UTF-8)."""
    return _dumps(fields).encode()


def build(
    *,
    kind: str,
    entry_id: int,
    time: str,
    legs: Sequence[tuple[str, int]],
    detail: LogDetail | None,
    secret: str,
) -> bytes:
    """The canonical bytes of one leaf."""
    fields: dict[str, object] = {
        "v": LEAF_VERSION,
        "kind": kind,
        "entry": entry_id,
        "time": time,
        "legs": [[code, amount] for code, amount in legs],
    }
    if detail is not None:
        if detail.public:
            for key, value in detail.public.items():
                if value is not None:
                    fields[key] = list(value) if isinstance(value, list | tuple) else value
        if detail.ref is not None:
            fields["ref"] = detail.ref
        if detail.donor is not None:
            if detail.ref is None:
                raise ValueError("a donor commitment needs the leaf's ref (its salt's source)")
            fields["donor"] = donor_commitment(donor_salt(secret, detail.ref), detail.donor)
    return encode(fields)


def decode(data: bytes) -> dict[str, object]:
    """Parse a leaf's bytes (raises ``ValueError`` if they are not a leaf object)."""
    value = json.loads(data.decode())
    if not isinstance(value, dict) or value.get("v") != LEAF_VERSION:
        raise ValueError("not a version-1 transparency leaf")
    return value
