"""What one leaf of the transparency log says, as canonical bytes, and donor commitments.

A leaf is one money movement — ``amount`` fen from one account to another — as compact UTF-8
JSON with sorted keys (no spaces), so the bytes are the same whoever writes them and anyone can
read them::

    {"amount":5000,"donor":"<64 hex>","entry":42,"from":"donor_clearing:sandbox",
     "kind":"donation.paid","organization":3,"project":7,"ref":"donation:d_x1",
     "time":"2026-09-07T01:02:03.456789Z","to":"project:7","v":1}

- ``from``/``to`` are ledger account codes (``project:7``, ``pool:2``, ``organization:3``…);
  ``amount`` is positive. The transfers of a journal entry's leaves add up, per account,
  exactly to its postings.
- ``entry`` is the journal entry (one entry may have many leaves: a giving-day batch has a gift
  leaf and a match leaf per gift); ``ref`` is the public reference a receipt looks leaves up by.
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
from functools import lru_cache

LEAF_VERSION = 1
DONOR_TAG = b"shanju/donor-commitment/v1\n"
_SALT_TAG = b"shanju/donor-salt/v1\n"

Scalar = str | int | bool | None
PublicValue = Scalar | Sequence[str]


@dataclass(frozen=True, slots=True)
class Transfer:
    """``amount`` fen (positive) from account ``source`` to account ``destination``."""

    source: str
    destination: str
    amount: int


def decompose(legs: Sequence[tuple[str, int]]) -> list[Transfer]:
    """Split balanced legs into transfers, deterministically (greedy, in leg order).

    Two legs make one transfer; a many-legged entry (one source paying several projects)
    becomes one transfer per (source, destination) pair it needs.
    """
    debit_codes = [code for code, amount in legs if amount < 0]
    debit_left = [-amount for _code, amount in legs if amount < 0]
    credit_codes = [code for code, amount in legs if amount > 0]
    credit_left = [amount for _code, amount in legs if amount > 0]
    out: list[Transfer] = []
    i = j = 0
    while i < len(debit_codes) and j < len(credit_codes):
        take = min(debit_left[i], credit_left[j])
        out.append(Transfer(debit_codes[i], credit_codes[j], take))
        debit_left[i] -= take
        credit_left[j] -= take
        if debit_left[i] == 0:
            i += 1
        if credit_left[j] == 0:
            j += 1
    if i != len(debit_codes) or j != len(credit_codes):
        raise ValueError("the legs do not balance")
    return out


@dataclass(frozen=True, slots=True)
class LogDetail:
    """What the log says about (a part of) a journal entry, beyond its legs.

    A journal entry without details gets one leaf per transfer its legs decompose into (a
    two-leg entry is one transfer). An entry with one detail whose ``transfer`` is None must
    have two legs: one leaf, with this detail. An entry with several details gets one leaf per
    detail; each names its transfer, and they must add up, per account, to the entry's legs.
    """

    ref: str | None = None  # public reference, e.g. "donation:d_x1", "gift:<order id>"
    donor: str | None = None  # private identity to commit to, e.g. "user:12"; never published
    public: Mapping[str, PublicValue] | None = None  # project, organization, purpose, …
    transfer: Transfer | None = None  # this part's movement (required with several parts)
    kind: str | None = None  # this part's kind when it differs from the entry's


@lru_cache(maxsize=4)
def _salt_mac(secret: str) -> hmac.HMAC:
    # Keyed once per secret; each salt copies it (a batch derives thousands).
    return hmac.new(secret.encode(), _SALT_TAG, hashlib.sha256)


def donor_salt(secret: str, ref: str) -> bytes:
    """The 16-byte salt of the donor commitment in the leaf with public reference ``ref``:
    ``HMAC-SHA-256(secret, SALT_TAG || ref)[:16]``."""
    mac = _salt_mac(secret).copy()
    mac.update(ref.encode())
    return mac.digest()[:16]


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
    transfer: Transfer,
    detail: LogDetail | None,
    secret: str,
) -> bytes:
    """The canonical bytes of one leaf."""
    if type(transfer.amount) is not int or transfer.amount <= 0:
        raise ValueError("a leaf moves a positive integer amount of fen")
    fields: dict[str, object] = {
        "v": LEAF_VERSION,
        "kind": kind,
        "entry": entry_id,
        "time": time,
        "from": transfer.source,
        "to": transfer.destination,
        "amount": transfer.amount,
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


def json_text(value: object) -> str:
    """A value as the canonical encoding writes it inside a leaf (a poster that assembles a
    leaf's bytes from parts, as a giving-day batch does, writes its values with this)."""
    return _dumps(value)


def decode(data: bytes) -> dict[str, object]:
    """Parse a leaf's bytes (raises ``ValueError`` if they are not a leaf object)."""
    value = json.loads(data.decode())
    if not isinstance(value, dict) or value.get("v") != LEAF_VERSION:
        raise ValueError("not a version-1 transparency leaf")
    return value
