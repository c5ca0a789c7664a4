"""Passwords, random tokens and their hashes, CSRF tokens, and secrets sealed for storage
(AES-256-GCM under a key derived from the installation's secret for one purpose)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its hash, in constant time."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    """Return a new URL-safe random token, optionally prefixed (``sj_...``)."""
    return prefix + secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Hash a high-entropy token for storage (no salt needed: tokens are random)."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def hmac_sha256(key: str, message: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.digest(key.encode(), message, "sha256").hex()  # one-shot: no HMAC object


def session_csrf_token(secret_key: str, session_token: str) -> str:
    """Return the CSRF token bound to a browser session: HMAC-SHA256 of its cookie's token.

    Only the server (the key) and that browser's pages (the session's token is HttpOnly) can
    know it; a new session — every sign-in — has a new one.
    """
    return hmac_sha256(secret_key, b"shanju-csrf\x00" + session_token.encode())


# --- secrets sealed for storage -------------------------------------------------------------

SEALED_VERSION = "v1"
_NONCE_BYTES = 12  # AES-GCM's standard nonce; random per seal (2^32 seals per key are safe)


class SealError(ValueError):
    """A sealed value cannot be opened: another key (the secret key was rotated), another
    context, or bytes changed since it was sealed."""


def derive_key(secret: str, purpose: str, *, length: int = 32) -> bytes:
    """Derive a key for one ``purpose`` from an installation secret (HKDF-SHA256).

    Keys for different purposes are independent: one never opens or verifies what another
    made. ``purpose`` is a fixed label naming the use and its version.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"shanju-hkdf-v1",
                info=purpose.encode())
    return hkdf.derive(secret.encode())


def seal(key: bytes, plaintext: str, *, context: str) -> str:
    """Encrypt ``plaintext`` for storage with AES-256-GCM: ``v1.<base64url(nonce‖ciphertext)>``.

    ``context`` is authenticated but not stored (AES-GCM's associated data): name the row the
    value belongs to, so that a sealed value copied to another row does not open there.
    """
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{SEALED_VERSION}." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(key: bytes, value: str, *, context: str) -> str:
    """Open a value made by :func:`seal` with the same key and context, or raise SealError."""
    version, _, body = value.partition(".")
    if version != SEALED_VERSION or not body:
        raise SealError("not a sealed value of a known version")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                   context.encode()).decode()
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise SealError("the sealed value does not open with this key and context") from exc
