"""The live protocol's frame checks (summit/protocol.py): every refusal has its code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shanju.summit import protocol
from shanju.summit.protocol import FrameError, parse


def code_of(text: str | bytes) -> tuple[str, str | None]:
    with pytest.raises(FrameError) as info:
        parse(text)
    return info.value.code, info.value.field


def test_a_chat_frame_is_trimmed_and_keeps_its_ref() -> None:
    frame = parse('{"t":"chat","body":"  你好  ","ref":"c1"}')
    assert frame == {"t": "chat", "body": "你好", "ref": "c1"}


@pytest.mark.parametrize("text", ["not json", "[1,2]", '"chat"', "{}", '{"body":"x"}', "\xff"])
def test_not_an_object_with_a_type_is_malformed(text: str) -> None:
    assert code_of(text)[0] == "malformed"


def test_invalid_utf8_bytes_are_malformed() -> None:
    assert code_of(b'{"t":"chat","body":"\xff"}')[0] == "malformed"


def test_an_unknown_type() -> None:
    assert code_of('{"t":"shout","body":"x"}') == ("unknown_type", None)
    assert code_of('{"t":7}') == ("unknown_type", None)


def test_too_large_counts_bytes_not_characters() -> None:
    # 1,400 CJK characters are 4,200 bytes in UTF-8: over the limit.
    big = json.dumps({"t": "chat", "body": "好" * 1400}, ensure_ascii=False)
    assert len(big) < protocol.MAX_FRAME_BYTES < len(big.encode())
    assert code_of(big) == ("too_large", None)
    assert code_of(big.encode()) == ("too_large", None)
    assert parse(json.dumps({"t": "chat", "body": "好" * 500}, ensure_ascii=False))["body"]


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"t": "chat", "body": "   "}, "body"),
        ({"t": "chat", "body": "x" * 501}, "body"),
        ({"t": "chat"}, "body"),
        ({"t": "chat", "body": 5}, "body"),
        ({"t": "ask", "body": "x" * 301}, "body"),
        ({"t": "upvote", "question": "3"}, "question"),
        ({"t": "upvote", "question": True}, "question"),
        ({"t": "upvote", "question": 0}, "question"),
        ({"t": "upvote", "question": 2**31}, "question"),
        ({"t": "vote", "poll": 1}, "option"),
        ({"t": "join", "token": "x", "room": "x12"}, "room"),
        ({"t": "join", "token": "", "room": "s1"}, "token"),
        ({"t": "chat", "body": "x", "ref": "r" * 41}, "ref"),
        ({"t": "mod", "action": "explode"}, "action"),
        ({"t": "mod", "action": "mute", "user": 3, "minutes": 0}, "minutes"),
        ({"t": "mod", "action": "mute", "user": 3, "minutes": 1441}, "minutes"),
        ({"t": "mod", "action": "slow", "seconds": 301}, "seconds"),
        ({"t": "mod", "action": "poll_create", "question": "q", "options": ["a"]}, "options"),
        ({"t": "mod", "action": "poll_create", "question": "q", "options": ["a", ""]},
         "options"),
        ({"t": "mod", "action": "poll_create", "question": "", "options": ["a", "b"]},
         "question"),
        ({"t": "mod", "action": "chat_delete"}, "message"),
    ],
)
def test_field_checks_name_the_field(frame: dict[str, Any], field: str) -> None:
    assert code_of(json.dumps(frame)) == ("invalid", field)


def test_moderator_frames() -> None:
    frame = parse(json.dumps({"t": "mod", "action": "poll_create", "question": " 选哪个？ ",
                              "options": [" 甲 ", "乙"]}, ensure_ascii=False))
    assert frame["question"] == "选哪个？" and frame["options"] == ["甲", "乙"]
    assert parse('{"t":"mod","action":"ban","user":4}')["reason"] == ""
    assert parse('{"t":"mod","action":"pause"}') == {"t": "mod", "action": "pause", "ref": None}


def test_outbound_frames_are_compact_utf8() -> None:
    assert protocol.ack("c1", id=4, status="visible") == \
        '{"t":"ack","ref":"c1","id":4,"status":"visible"}'
    assert protocol.error("slow_mode", "等一下", ref="c2", retry_after=7) == \
        '{"t":"error","code":"slow_mode","message":"等一下","ref":"c2","retry_after":7}'
    assert protocol.batch([{"k": "count", "n": 3}]) == \
        '{"t":"batch","events":[{"k":"count","n":3}]}'
    err = FrameError("invalid", "body must be text", field="body", ref="x")
    assert json.loads(err.frame())["field"] == "body"
