"""Live tokens: what a WebSocket client shows to join a summit's live rooms.

The session page issues one to a signed-in person with an approved registration (or to an
organizer, as moderator); the live gateway checks it without a database query, so thousands of
clients can (re)connect at once. A token is ``<base64url(JSON payload)>.<hex HMAC-SHA256>``
under the platform's secret key, with a purpose tag so no other signed value can pass for it.

The payload: ``u`` user id, ``s`` summit id, ``r`` role (``attendee`` | ``moderator``),
``n`` the name shown beside their messages (already masked for privacy), ``o`` their
organization id (delegates) or null, ``e`` expiry (Unix seconds).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Literal

from shanju.core.security import constant_time_equal, hmac_sha256

PURPOSE = b"shanju-summit-live-v1\n"
TOKEN_TTL_SECONDS = 12 * 3600
Role = Literal["attendee", "moderator"]


class BadToken(ValueError):
    """The token is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class LiveIdentity:
    user_id: int
    summit_id: int
    role: Role
    name: str
    organization_id: int | None
    expires: int

    @property
    def is_moderator(self) -> bool:
        return self.role == "moderator"


def issue(
    secret: str, *, user_id: int, summit_id: int, role: Role, name: str,
    organization_id: int | None = None, ttl: int = TOKEN_TTL_SECONDS, now: float | None = None,
) -> str:
    """A token for ``user_id`` at ``summit_id``, valid for ``ttl`` seconds."""
    payload = {
        "u": user_id, "s": summit_id, "r": role, "n": name, "o": organization_id,
        "e": int((time.time() if now is None else now) + ttl),
    }
    body = base64.urlsafe_b64encode(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    ).rstrip(b"=").decode()
    return f"{body}.{hmac_sha256(secret, PURPOSE + body.encode())}"


def verify(secret: str, token: str, *, now: float | None = None) -> LiveIdentity:
    """The identity a token carries; :class:`BadToken` if it is not one of ours or expired."""
    if not isinstance(token, str) or len(token) > 1000 or token.count(".") != 1:
        raise BadToken("malformed token")
    body, mac = token.split(".")
    if not constant_time_equal(mac, hmac_sha256(secret, PURPOSE + body.encode())):
        raise BadToken("bad signature")
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        identity = LiveIdentity(
            user_id=int(data["u"]), summit_id=int(data["s"]), role=data["r"],
            name=str(data["n"]), organization_id=None if data["o"] is None else int(data["o"]),
            expires=int(data["e"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BadToken("malformed payload") from exc
    if identity.role not in ("attendee", "moderator"):
        raise BadToken("unknown role")
    if identity.expires < (time.time() if now is None else now):
        raise BadToken("expired")
    return identity
