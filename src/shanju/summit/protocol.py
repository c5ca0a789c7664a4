"""The live protocol's frames: validate what a client sends, build what the server sends.

See ``docs/summit/live-protocol.md``. :func:`parse` turns one inbound text frame into a
:class:`Frame` (a checked dict) or raises :class:`FrameError` with the protocol's error code;
``encode`` and the builders make the outbound JSON (compact, UTF-8 as is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shanju.core.db import MAX_ID

MAX_FRAME_BYTES = 4_096  # larger: error too_large
HARD_MAX_FRAME_BYTES = 64 * 1024  # larger: close 1009
MAX_REF = 40
CHAT_MAX = 500
QUESTION_MAX = 300
POLL_QUESTION_MAX = 200
POLL_OPTION_MAX = 100
REASON_MAX = 200
ROOM_RE = re.compile(r"^[sr][1-9][0-9]{0,9}$")

# Close codes.
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_BAD_TOKEN = 4001
CLOSE_BANNED = 4003
CLOSE_NOT_FOUND = 4004
CLOSE_FLOODING = 4008
CLOSE_TOO_SLOW = 4009
CLOSE_SESSION_ENDED = 4011  # signed out, session expired or account deactivated
CLOSE_ROLE_CHANGED = 4012  # a moderator who no longer organizes the summit
CLOSE_FULL = 4029

CLIENT_TYPES = frozenset({"join", "chat", "ask", "upvote", "vote", "hb", "mod"})
POSTING_TYPES = frozenset({"chat", "ask", "upvote", "vote", "mod"})

# action -> its fields and their kinds: "id", "minutes", "seconds", "reason", "question",
# "options"
MOD_ACTIONS: dict[str, tuple[str, ...]] = {
    "chat_approve": ("message",),
    "chat_reject": ("message",),
    "chat_delete": ("message",),
    "q_approve": ("question",),
    "q_reject": ("question",),
    "q_answering": ("question",),
    "q_answered": ("question",),
    "mute": ("user", "minutes"),
    "unmute": ("user",),
    "ban": ("user", "reason"),
    "unban": ("user",),
    "pause": (),
    "resume": (),
    "slow": ("seconds",),
    "poll_create": ("question", "options"),
    "poll_open": ("poll",),
    "poll_close": ("poll",),
}

Frame = dict[str, Any]


class FrameError(Exception):
    """A frame the server refuses: the protocol's error ``code`` (and ``field``)."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, ref: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.ref = ref
        self.retry_after = retry_after

    def frame(self) -> str:
        """The ``error`` frame that answers it."""
        return error(self.code, self.message, ref=self.ref, field=self.field,
                     retry_after=self.retry_after)


def _invalid(field: str, message: str, ref: str | None) -> FrameError:
    return FrameError("invalid", message, field=field, ref=ref)


def _id(data: Mapping[str, Any], name: str, ref: str | None) -> int:
    value = data.get(name)
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise _invalid(name, f"{name} must be an id", ref)
    return value


def _int(data: Mapping[str, Any], name: str, lo: int, hi: int, ref: str | None) -> int:
    value = data.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise _invalid(name, f"{name} must be a whole number from {lo} to {hi}", ref)
    return value


def _text(
    data: Mapping[str, Any], name: str, hi: int, ref: str | None, *, lo: int = 1
) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _invalid(name, f"{name} must be text", ref)
    value = value.strip()
    if not lo <= len(value) <= hi or "\x00" in value:
        raise _invalid(name, f"{name} must be {lo} to {hi} characters", ref)
    return value


def parse(text: str | bytes) -> Frame:
    """Check one inbound frame; return it normalized (trimmed text, ``ref`` kept).

    Raises :class:`FrameError`: ``too_large``, ``malformed``, ``unknown_type`` or ``invalid``
    (with ``field``).
    """
    if isinstance(text, bytes):
        if len(text) > MAX_FRAME_BYTES:
            raise FrameError("too_large", f"frames are at most {MAX_FRAME_BYTES} bytes")
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise FrameError("malformed", "frames are UTF-8 JSON") from exc
    elif len(text) > MAX_FRAME_BYTES or (
        len(text) * 3 > MAX_FRAME_BYTES and len(text.encode()) > MAX_FRAME_BYTES
    ):
        raise FrameError("too_large", f"frames are at most {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FrameError("malformed", "frames are JSON objects") from exc
    if not isinstance(data, dict) or "t" not in data:
        raise FrameError("malformed", "frames are JSON objects with a type t")
    ref = data.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF):
        raise FrameError("invalid", f"ref must be text of at most {MAX_REF} characters",
                         field="ref")
    kind = data["t"]
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {str(kind)[:20]!r}", ref=ref)
    frame: Frame = {"t": kind, "ref": ref}
    if kind == "join":
        token = data.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= 1000:
            raise _invalid("token", "token must be a live token", ref)
        room = data.get("room")
        if not isinstance(room, str) or not ROOM_RE.match(room):
            raise _invalid("room", "room must be a room key (s<id> or r<id>)", ref)
        frame["token"] = token
        frame["room"] = room
    elif kind == "chat":
        frame["body"] = _text(data, "body", CHAT_MAX, ref)
    elif kind == "ask":
        frame["body"] = _text(data, "body", QUESTION_MAX, ref)
    elif kind == "upvote":
        frame["question"] = _id(data, "question", ref)
    elif kind == "vote":
        frame["poll"] = _id(data, "poll", ref)
        frame["option"] = _id(data, "option", ref)
    elif kind == "mod":
        _parse_mod(data, frame, ref)
    return frame


def _parse_mod(data: Mapping[str, Any], frame: Frame, ref: str | None) -> None:
    action = data.get("action")
    if not isinstance(action, str) or action not in MOD_ACTIONS:
        raise _invalid("action", "unknown moderator action", ref)
    frame["action"] = action
    for name in MOD_ACTIONS[action]:
        if name in ("message", "user", "poll"):
            frame[name] = _id(data, name, ref)
        elif name == "question":
            if action == "poll_create":
                frame[name] = _text(data, name, POLL_QUESTION_MAX, ref)
            else:
                frame[name] = _id(data, name, ref)
        elif name == "minutes":
            frame[name] = _int(data, name, 1, 1440, ref)
        elif name == "seconds":
            frame[name] = _int(data, name, 0, 300, ref)
        elif name == "reason":
            frame[name] = _text(data, name, REASON_MAX, ref, lo=0) if "reason" in data else ""
        elif name == "options":
            options = data.get("options")
            if not isinstance(options, list) or not 2 <= len(options) <= 6:
                raise _invalid("options", "a poll has 2 to 6 options", ref)
            labels = []
            for label in options:
                if not isinstance(label, str) or not 1 <= len(label.strip()) <= POLL_OPTION_MAX:
                    raise _invalid("options", f"options are 1 to {POLL_OPTION_MAX} characters",
                                   ref)
                labels.append(label.strip())
            frame[name] = labels


# --- outbound ------------------------------------------------------------------------------


def encode(obj: Any) -> str:
    """Compact JSON with UTF-8 text as is (what goes on the wire and through the broker)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error(
    code: str, message: str, *, ref: str | None = None, field: str | None = None,
    retry_after: int | None = None,
) -> str:
    body: dict[str, Any] = {"t": "error", "code": code, "message": message}
    if ref is not None:
        body["ref"] = ref
    if field is not None:
        body["field"] = field
    if retry_after is not None:
        body["retry_after"] = retry_after
    return encode(body)


def ack(ref: str | None, **fields: Any) -> str:
    body: dict[str, Any] = {"t": "ack"}
    if ref is not None:
        body["ref"] = ref
    body.update(fields)
    return encode(body)


def batch(events: Iterable[Mapping[str, Any]], seq: int | None = None) -> str:
    """A room's events of one tick; ``seq``: the room's sequence number once they apply."""
    if seq is None:
        return encode({"t": "batch", "events": list(events)})
    return encode({"t": "batch", "seq": seq, "events": list(events)})


def welcome(room: str, you: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    return encode({"t": "welcome", "room": room, "you": you, "state": state})
