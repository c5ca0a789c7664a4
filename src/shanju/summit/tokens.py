"""Live tokens: what a WebSocket client shows to join a summit's live rooms.

The session page issues one to a person signed in with a browser session who has an approved
registration (or to an organizer, as moderator); the live gateway checks its signature without
a database query, so thousands of clients can (re)connect at once. A token is
``<base64url(JSON payload)>.<hex HMAC-SHA256>`` under the platform's secret key, with a purpose
tag so no other signed value can pass for it.

The payload: ``u`` user id, ``w`` the browser session (``web_sessions.id``) it was issued to,
``s`` summit id, ``r`` role (``attendee`` | ``moderator``), ``n`` the name shown beside their
messages (already masked for privacy), ``o`` their organization id (delegates) or null, ``e``
expiry (Unix seconds).

Tokens are short-lived (``summit_live_token_seconds``, 5 minutes by default): the gateway's
revocation sweep (``summit/live_auth.py``) checks every few seconds that the browser session
behind each connection still exists (not signed out, not expired, the account active) and
that a moderator is still an organizer, and sends a connection that passed a renewed token
(``{"t":"token"}``). A signed-out session's token thus stops working within seconds, and a
token copied out of a page dies within minutes. (``-v2``: the 12-hour tokens of before, which
named no session, are no longer accepted.)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

from shanju.core.clock import utcnow
from shanju.core.security import constant_time_equal, hmac_sha256

PURPOSE = b"shanju-summit-live-v2\n"
TOKEN_TTL_SECONDS = 5 * 60
Role = Literal["attendee", "moderator"]


class BadToken(ValueError):
    """The token is malformed, forged or expired."""


class TokenExpired(BadToken):
    """The token is ours but its time is up."""


def now() -> float:
    """Unix seconds by the platform's clock (``shanju.core.clock``)."""
    return utcnow().timestamp()


@dataclass(frozen=True, slots=True)
class LiveIdentity:
    user_id: int
    summit_id: int
    role: Role
    name: str
    organization_id: int | None
    expires: int
    session_id: int = 0  # the browser session (web_sessions.id) the token was issued to

    @property
    def is_moderator(self) -> bool:
        return self.role == "moderator"


def issue(
    secret: str, *, user_id: int, summit_id: int, role: Role, name: str, session_id: int,
    organization_id: int | None = None, ttl: int = TOKEN_TTL_SECONDS, at: float | None = None,
) -> str:
    """A token for ``user_id`` at ``summit_id`` and browser session ``session_id``, valid for
    ``ttl`` seconds."""
    payload = {
        "u": user_id, "w": session_id, "s": summit_id, "r": role, "n": name,
        "o": organization_id, "e": math.ceil((now() if at is None else at) + ttl),
    }
    body = base64.urlsafe_b64encode(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    ).rstrip(b"=").decode()
    return f"{body}.{hmac_sha256(secret, PURPOSE + body.encode())}"


def renew(
    secret: str, identity: LiveIdentity, *, ttl: int = TOKEN_TTL_SECONDS, at: float | None = None,
) -> tuple[str, LiveIdentity]:
    """A new token for the same person, session and role, valid for ``ttl`` seconds from now,
    and the identity it carries."""
    at = now() if at is None else at
    token = issue(secret, user_id=identity.user_id, summit_id=identity.summit_id,
                  role=identity.role, name=identity.name, session_id=identity.session_id,
                  organization_id=identity.organization_id, ttl=ttl, at=at)
    return token, dataclasses.replace(identity, expires=math.ceil(at + ttl))


def verify(secret: str, token: str, *, at: float | None = None) -> LiveIdentity:
    """The identity a token carries; :class:`BadToken` if it is not one of ours,
    :class:`TokenExpired` if its time is up."""
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
            expires=int(data["e"]), session_id=int(data["w"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BadToken("malformed payload") from exc
    if identity.role not in ("attendee", "moderator"):
        raise BadToken("unknown role")
    if identity.expires < (now() if at is None else at):
        raise TokenExpired("expired")
    return identity
