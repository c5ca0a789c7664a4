"""Passwords, random tokens and their hashes, and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

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
