"""Public identifiers for objects whose numbers should not be guessable (donations, payments)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijkmnopqrstuvwxyz"


def public_id(prefix: str, length: int = 20) -> str:
    """Return ``<prefix>_<random>``, e.g. ``d_7k2...`` for a donation."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
