"""The stored side of the live rooms (summit/live_service.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.summit import live_service as live
from shanju.summit.live_service import RoomRef
from shanju.summit.models import (
    ChatStatus,
    SanctionKind,
    SummitChatMessage,
    SummitPollOption,
    SummitQuestion,
    SummitQuestionVote,
    SummitSanction,
    SummitSession,
)
from tests.factories import make_user
from tests.summit.live_support import World, make_world


def ref(db: Database, key: str) -> RoomRef:
    with db.transaction(write=False) as s:
        room = live.resolve_room(s, key)
    assert room is not None
    return room


def run(db: Database, fn: Any, **kwargs: Any) -> live.Outcome:
    with db.transaction() as s:
        out: live.Outcome = fn(s, **kwargs)
    return out


def refused(db: Database, fn: Any, **kwargs: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        run(db, fn, **kwargs)
    return info.value


def mod(db: Database, w: World, room: RoomRef, **frame: Any) -> live.Outcome:
    return run(db, live.moderate, room=room, actor_id=w.moderator, frame={"t": "mod", **frame})


def test_rooms_resolve_from_their_keys(db: Database) -> None:
    w = make_world(db)
    stage, breakout = ref(db, w.stage), ref(db, w.breakout)
    assert (stage.kind, stage.session_id, stage.summit_id) == ("stage", w.session_id, w.summit_id)
    assert (breakout.kind, breakout.session_id, breakout.room_id) == \
        ("breakout", w.session_id, w.room_id)
    with db.transaction(write=False) as s:
        assert live.resolve_room(s, "s999") is None
        assert live.resolve_room(s, "r999") is None
        assert live.resolve_room(s, "x1") is None


def test_chat_is_shown_or_held_by_keyword(db: Database) -> None:
    w = make_world(db, keywords="赌博\nSPAM")
    room = ref(db, w.stage)
    shown = run(db, live.post_chat, room=room, user_id=w.attendee_a, name="张*", body="大家好")
    assert shown.ack["status"] == "visible"
    assert shown.messages == [(w.stage, {"e": [{"k": "chat", "m": {
        "id": shown.ack["id"], "user": w.attendee_a, "name": "张*", "body": "大家好",
        "at": shown.messages[0][1]["e"][0]["m"]["at"]}}]})]
    held = run(db, live.post_chat, room=room, user_id=w.attendee_a, name="张*",
               body="buy spam here")
    assert held.ack["status"] == "held"
    assert held.messages[0][1]["m"][0]["k"] == "held" and "e" not in held.messages[0][1]
    # A moderator's own message is never held.
    own = run(db, live.post_chat, room=room, user_id=w.moderator, name="王*", body="赌博 是违法的",
              moderator=True)
    assert own.ack["status"] == "visible"


def test_a_premoderated_session_holds_every_message(db: Database) -> None:
    w = make_world(db)
    with db.transaction() as s:
        s.get_one(SummitSession, w.session_id).chat_premoderated = True
    out = run(db, live.post_chat, room=ref(db, w.breakout), user_id=w.attendee_a, name="张*",
              body="你好")
    assert out.ack["status"] == "held"
    with db.transaction(write=False) as s:
        msg = s.get_one(SummitChatMessage, out.ack["id"])
        assert (msg.room, msg.status) == (w.breakout, ChatStatus.HELD)


def test_the_question_flow_and_upvotes(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    asked = run(db, live.ask_question, room=room, user_id=w.attendee_a, name="张*", body="怎么做？")
    qid = asked.ack["id"]
    assert asked.messages[0][1]["m"][0]["k"] == "pending"
    # Pending questions take no upvotes.
    assert refused(db, live.upvote, room=room, user_id=w.attendee_b, question_id=qid).code == \
        "not_open"
    approved = mod(db, w, room, action="q_approve", question=qid)
    assert approved.messages[0][1]["e"][0]["q"]["status"] == "approved"
    out = run(db, live.upvote, room=room, user_id=w.attendee_b, question_id=qid)
    assert out.ack == {"question": qid, "upvotes": 1}
    assert out.messages[0][1]["e"][0]["q"]["upvotes"] == 1
    assert out.messages[0][1]["v"] == [["q", qid, w.attendee_b]]
    assert refused(db, live.upvote, room=room, user_id=w.attendee_b, question_id=qid).code == \
        "already_voted"
    assert run(db, live.upvote, room=room, user_id=w.attendee_a, question_id=qid).ack[
        "upvotes"] == 2
    # Decided once only.
    assert refused(db, live.moderate, room=room, actor_id=w.moderator,
                   frame={"action": "q_reject", "question": qid}).code == "wrong_status"
    # A question of another session is not found from this room.
    other = ref(db, f"s{w.other_session_id}")
    assert refused(db, live.upvote, room=other, user_id=w.attendee_b, question_id=qid).code == \
        "not_found"
    with db.transaction(write=False) as s:
        assert s.get_one(SummitQuestion, qid).upvotes == 2
        assert s.scalar(select(func.count()).select_from(SummitQuestionVote)) == 2
        actions = s.scalars(select(AuditEntry.action)).all()
    assert "summit.question.approved" in actions


def test_one_question_is_answered_at_a_time(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    ids = []
    for body in ("一", "二"):
        qid = run(db, live.ask_question, room=room, user_id=w.attendee_a, name="张*",
                  body=body).ack["id"]
        mod(db, w, room, action="q_approve", question=qid)
        ids.append(qid)
    mod(db, w, room, action="q_answering", question=ids[0])
    out = mod(db, w, room, action="q_answering", question=ids[1])
    statuses = {e["q"]["id"]: e["q"]["status"] for _k, m in out.messages for e in m["e"]}
    assert statuses == {ids[0]: "answered", ids[1]: "answering"}
    mod(db, w, room, action="q_answered", question=ids[1])
    with db.transaction(write=False) as s:
        assert [s.get_one(SummitQuestion, i).status.value for i in ids] == ["answered"] * 2


def test_concurrent_upvotes_of_one_person_count_once(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    qid = run(db, live.ask_question, room=room, user_id=w.attendee_a, name="张*",
              body="并发？").ack["id"]
    mod(db, w, room, action="q_approve", question=qid)
    with db.transaction() as s:
        voters = [make_user(s).id for _ in range(4)]
    results: list[str] = []
    barrier = threading.Barrier(8)

    def vote(user_id: int) -> None:
        barrier.wait()
        try:
            run(db, live.upvote, room=room, user_id=user_id, question_id=qid)
            results.append("ok")
        except DomainError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=vote, args=(u,)) for u in voters + voters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["already_voted"] * 4 + ["ok"] * 4
    with db.transaction(write=False) as s:
        assert s.get_one(SummitQuestion, qid).upvotes == 4


def test_polls_open_vote_close(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.stage)
    created = mod(db, w, room, action="poll_create", question="选哪个？", options=["甲", "乙"])
    pid = created.ack["poll"]
    poll = created.messages[0][1]["m"][0]["p"]
    assert poll["status"] == "draft" and [o["label"] for o in poll["options"]] == ["甲", "乙"]
    option = poll["options"][1]["id"]
    assert refused(db, live.vote, room=room, user_id=w.attendee_a, poll_id=pid,
                   option_id=option).code == "not_open"
    assert mod(db, w, room, action="poll_open", poll=pid).messages[0][1]["e"][0]["p"][
        "status"] == "open"
    out = run(db, live.vote, room=room, user_id=w.attendee_a, poll_id=pid, option_id=option)
    p = out.messages[0][1]["e"][0]["p"]
    assert p["total"] == 1 and [o["votes"] for o in p["options"]] == [0, 1]
    assert refused(db, live.vote, room=room, user_id=w.attendee_a, poll_id=pid,
                   option_id=option).code == "already_voted"
    bad = refused(db, live.vote, room=room, user_id=w.attendee_b, poll_id=pid, option_id=999)
    assert (bad.code, bad.field) == ("invalid", "option")
    mod(db, w, room, action="poll_close", poll=pid)
    assert refused(db, live.vote, room=room, user_id=w.attendee_b, poll_id=pid,
                   option_id=option).code == "not_open"
    with db.transaction(write=False) as s:
        assert s.get_one(SummitPollOption, option).votes == 1
    # Breakout rooms have no polls.
    assert refused(db, live.moderate, room=ref(db, w.breakout), actor_id=w.moderator,
                   frame={"action": "poll_create", "question": "x", "options": ["a", "b"]}
                   ).code == "invalid"


def test_chat_moderation(db: Database) -> None:
    w = make_world(db, keywords="spam")
    room = ref(db, w.stage)
    held = run(db, live.post_chat, room=room, user_id=w.attendee_a, name="张*", body="spam!")
    hid = held.ack["id"]
    out = mod(db, w, room, action="chat_approve", message=hid)
    assert out.messages[0][1]["e"][0]["k"] == "chat" and out.ack["status"] == "visible"
    assert mod(db, w, room, action="chat_delete", message=hid).messages[0][1] == {
        "e": [{"k": "chat_removed", "id": hid}]}
    again = run(db, live.post_chat, room=room, user_id=w.attendee_a, name="张*", body="spam 2")
    rejected = mod(db, w, room, action="chat_reject", message=again.ack["id"])
    assert rejected.messages[0][1] == {"m": [{"k": "chat_removed", "id": again.ack["id"]}]}
    with db.transaction(write=False) as s:
        statuses = {m.id: m.status for m in s.scalars(select(SummitChatMessage))}
        assert statuses == {hid: ChatStatus.DELETED, again.ack["id"]: ChatStatus.REJECTED}
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action.like("summit.chat.%"))) == 3


def test_sanctions_and_settings(db: Database) -> None:
    w = make_world(db)
    room = ref(db, w.breakout)
    muted = mod(db, w, room, action="mute", user=w.attendee_a, minutes=10)
    (key, msg), = muted.messages
    assert key == f"summit{w.summit_id}"
    assert msg["x"][0]["k"] == "mute" and msg["x"][0]["session"] == w.session_id
    mod(db, w, room, action="ban", user=w.attendee_b, reason="广告")
    with db.transaction(write=False) as s:
        bans, mutes = live.active_sanctions(s, w.summit_id)
    assert bans == {w.attendee_b} and set(mutes) == {(w.session_id, w.attendee_a)}
    assert mod(db, w, room, action="unmute", user=w.attendee_a).ack["lifted"] == 1
    assert mod(db, w, room, action="unban", user=w.attendee_b).ack["lifted"] == 1
    with db.transaction(write=False) as s:
        assert live.active_sanctions(s, w.summit_id) == (set(), {})
        assert s.scalar(select(func.count()).select_from(SummitSanction).where(
            SummitSanction.kind == SanctionKind.BAN)) == 1
    self_ban = refused(db, live.moderate, room=room, actor_id=w.moderator,
                       frame={"action": "ban", "user": w.moderator, "reason": ""})
    assert self_ban.field == "user"
    # Settings go to the stage and every breakout room of the session.
    out = mod(db, w, room, action="slow", seconds=30)
    assert [k for k, _m in out.messages] == [w.stage, w.breakout]
    assert out.messages[0][1]["e"] == [{"k": "settings", "paused": False, "slow": 30,
                                        "premoderated": False}]
    mod(db, w, room, action="pause")
    with db.transaction(write=False) as s:
        sess = s.get_one(SummitSession, w.session_id)
        assert (sess.chat_paused, sess.slow_mode_seconds) == (True, 30)


def test_snapshot(db: Database) -> None:
    w = make_world(db, keywords="spam")
    room = ref(db, w.stage)
    for i in range(55):
        run(db, live.post_chat, room=room, user_id=w.attendee_a, name="张*", body=f"第{i}条")
    run(db, live.post_chat, room=room, user_id=w.attendee_b, name="李*", body="spam")
    q1 = run(db, live.ask_question, room=room, user_id=w.attendee_a, name="张*",
             body="一").ack["id"]
    q2 = run(db, live.ask_question, room=room, user_id=w.attendee_b, name="李*",
             body="二").ack["id"]
    mod(db, w, room, action="q_approve", question=q1)
    run(db, live.upvote, room=room, user_id=w.attendee_b, question_id=q1)
    pid = mod(db, w, room, action="poll_create", question="?", options=["a", "b"]).ack["poll"]
    mod(db, w, room, action="mute", user=w.attendee_b, minutes=5)
    with db.transaction(write=False) as s:
        snap = live.snapshot(s, w.stage)
        assert live.snapshot(s, "s9999") is None
    assert snap is not None
    assert len(snap.chat) == 50 and snap.chat[0]["body"] == "第5条" and snap.chat[-1]["body"] \
        == "第54条"
    assert snap.chat[0]["name"] == "张*"  # masked from the display name
    assert [m["body"] for m in snap.held] == ["spam"]
    assert {q["id"]: q["status"] for q in snap.questions} == {q1: "approved", q2: "pending"}
    assert snap.question_votes == {w.attendee_b: {q1}}
    assert [p["id"] for p in snap.polls] == [pid]
    assert [r["key"] for r in snap.rooms] == [w.breakout]
    assert set(snap.mutes) == {(w.session_id, w.attendee_b)} and snap.bans == set()
    with db.transaction(write=False) as s:
        breakout = live.snapshot(s, w.breakout)
    assert breakout is not None and breakout.rooms == [] and breakout.title == "第1组"
    assert breakout.capacity == 12 and breakout.video_url == "https://meeting.example/1"
