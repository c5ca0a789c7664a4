"""What the live rooms store: chat, questions and upvotes, polls and votes, moderation.

Plain functions on a SQLAlchemy ``Session`` that never commit; the gateway runs them in a
write transaction in a worker thread and, after the commit, publishes what they return
(:class:`Outcome`) on the broker. Every event carries the *absolute* state of what changed
(a question with its upvote count after the change, a poll with every option's votes), so a
hub in any process can apply it whenever it arrives, in any order, more than once: counters
only grow (hubs keep the maximum) and statuses only move forward.

Broker messages (JSON objects on channel ``summit:<room>``):
``{"e": [events for everyone], "m": [events for moderators only], "v": [votes]}`` where
a vote is ``["q", question, user]`` or ``["p", poll, user, option]`` (so each hub knows what
each person voted, for ``voted`` in its welcome); on the summit's channel
``summit:summit<id>``: ``{"x": [{"k": "ban"|"unban", "user": u} | {"k": "mute"|"unmute",
"user": u, "session": s, "until": unix seconds|null}]}`` and presence (see ``hub.py``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.db import flush_unless_duplicate, parse_id
from shanju.core.errors import Conflict, InvalidInput, NotFound
from shanju.core.masking import mask_name
from shanju.summit.models import (
    ChatStatus,
    PollStatus,
    QuestionStatus,
    SanctionKind,
    SessionKind,
    Summit,
    SummitChatMessage,
    SummitLiveSeq,
    SummitPoll,
    SummitPollOption,
    SummitPollVote,
    SummitQuestion,
    SummitQuestionVote,
    SummitRoom,
    SummitSanction,
    SummitSession,
)

CHAT_HISTORY = 50
SHOWN_QUESTIONS = (QuestionStatus.APPROVED, QuestionStatus.ANSWERING, QuestionStatus.ANSWERED)
UPVOTABLE = (QuestionStatus.APPROVED, QuestionStatus.ANSWERING)
# Statuses only move forward; a hub never applies an older one over a newer one.
QUESTION_RANK = {"pending": 0, "approved": 1, "rejected": 1, "answering": 2, "answered": 3}
POLL_RANK = {"draft": 0, "open": 1, "closed": 2}


def summit_channel_key(summit_id: int) -> str:
    """The broker channel key (after ``summit:``) of a summit's bans, mutes and presence."""
    return f"summit{summit_id}"


@dataclass(frozen=True, slots=True)
class RoomRef:
    """A live room: its key, the session it belongs to and the summit."""

    key: str
    kind: str  # "stage" | "breakout"
    session_id: int
    summit_id: int
    room_id: int | None = None

    @property
    def is_stage(self) -> bool:
        return self.kind == "stage"


@dataclass
class Outcome:
    """What an action did: the fields of its ``ack`` and the broker messages to publish
    (``(channel key, message)``; the channel is ``summit:<key>``)."""

    ack: dict[str, Any] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def room(self, key: str, *, everyone: list[dict[str, Any]] | None = None,
             moderators: list[dict[str, Any]] | None = None,
             votes: list[list[Any]] | None = None) -> None:
        msg: dict[str, Any] = {}
        if everyone:
            msg["e"] = everyone
        if moderators:
            msg["m"] = moderators
        if votes:
            msg["v"] = votes
        self.messages.append((key, msg))


@dataclass
class RoomSnapshot:
    """A room's state as stored, loaded once by each process that opens the room."""

    ref: RoomRef
    title: str
    video_url: str | None
    capacity: int | None
    settings: dict[str, Any]
    chat: list[dict[str, Any]]
    held: list[dict[str, Any]]
    questions: list[dict[str, Any]]  # shown and pending (and not rejected)
    polls: list[dict[str, Any]]  # drafts too (moderators see them)
    rooms: list[dict[str, Any]]  # a roundtable stage's breakout rooms
    bans: set[int]
    mutes: dict[tuple[int, int], float | None]  # (session, user) -> until (Unix s) | None
    question_votes: dict[int, set[int]]  # user -> questions they upvoted
    poll_votes: dict[int, dict[int, int]]  # user -> poll -> option
    seq: int = 0  # the room's sequence number, read BEFORE the rest (see channel_seqs)


# --- serializing ---------------------------------------------------------------------------


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chat_dict(msg: SummitChatMessage, name: str) -> dict[str, Any]:
    return {"id": msg.id, "user": msg.user_id, "name": name, "body": msg.body,
            "at": iso(msg.created_at)}


def question_dict(q: SummitQuestion, name: str) -> dict[str, Any]:
    return {"id": q.id, "name": name, "body": q.body, "status": q.status.value,
            "upvotes": q.upvotes, "voted": None, "at": iso(q.created_at)}


def poll_dict(poll: SummitPoll, options: list[SummitPollOption]) -> dict[str, Any]:
    opts = [{"id": o.id, "label": o.label, "votes": o.votes}
            for o in sorted(options, key=lambda o: (o.position, o.id))]
    return {"id": poll.id, "question": poll.question, "status": poll.status.value,
            "total": sum(o["votes"] for o in opts), "voted": None, "options": opts}


def _names(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    return {uid: mask_name(name) for uid, name in rows}


def _name(session: Session, user_id: int) -> str:
    return _names(session, {user_id}).get(user_id, mask_name(None))


# --- rooms ---------------------------------------------------------------------------------


def resolve_room(session: Session, key: str) -> RoomRef | None:
    """The room a key names (``s<session>`` or ``r<breakout room>``), if it exists."""
    ident = parse_id(key[1:]) if len(key) >= 2 and key[0] in "sr" else None
    if ident is None:
        return None
    if key[0] == "s":
        summit_id = session.scalar(
            select(SummitSession.summit_id).where(SummitSession.id == ident))
        return None if summit_id is None else RoomRef(key, "stage", ident, summit_id)
    row = session.execute(
        select(SummitRoom.session_id, SummitSession.summit_id)
        .join(SummitSession, SummitSession.id == SummitRoom.session_id)
        .where(SummitRoom.id == ident)
    ).first()
    return None if row is None else RoomRef(key, "breakout", row[0], row[1], ident)


def session_room_keys(session: Session, session_id: int) -> list[str]:
    """The stage and breakout rooms of a session (they share its chat settings)."""
    ids = session.scalars(
        select(SummitRoom.id).where(SummitRoom.session_id == session_id).order_by(SummitRoom.id))
    return [f"s{session_id}", *(f"r{i}" for i in ids)]


def settings_dict(s: SummitSession) -> dict[str, Any]:
    return {"paused": s.chat_paused, "slow": s.slow_mode_seconds,
            "premoderated": s.chat_premoderated}


def snapshot(session: Session, key: str, *, now: dt.datetime | None = None) -> RoomSnapshot | None:
    """Everything a process needs to open room ``key``; None if there is no such room."""
    ref = resolve_room(session, key)
    if ref is None:
        return None
    # First: everything stored up to this number is in what follows (and perhaps more).
    seq = channel_seqs(session, [key]).get(key, 0)
    now = now or utcnow()
    s = session.get_one(SummitSession, ref.session_id)
    chat_rows = list(session.scalars(
        select(SummitChatMessage)
        .where(SummitChatMessage.room == key, SummitChatMessage.status == ChatStatus.VISIBLE)
        .order_by(SummitChatMessage.id.desc()).limit(CHAT_HISTORY)))[::-1]
    held_rows = list(session.scalars(
        select(SummitChatMessage)
        .where(SummitChatMessage.room == key, SummitChatMessage.status == ChatStatus.HELD)
        .order_by(SummitChatMessage.id).limit(200)))
    questions: list[SummitQuestion] = []
    polls: list[dict[str, Any]] = []
    rooms: list[dict[str, Any]] = []
    question_votes: dict[int, set[int]] = {}
    poll_votes: dict[int, dict[int, int]] = {}
    if ref.is_stage:
        questions = list(session.scalars(
            select(SummitQuestion)
            .where(SummitQuestion.session_id == s.id,
                   SummitQuestion.status != QuestionStatus.REJECTED)
            .order_by(SummitQuestion.id)))
        poll_rows = list(session.scalars(
            select(SummitPoll).where(SummitPoll.session_id == s.id).order_by(SummitPoll.id)))
        options: dict[int, list[SummitPollOption]] = {p.id: [] for p in poll_rows}
        if poll_rows:
            for o in session.scalars(
                    select(SummitPollOption).where(SummitPollOption.poll_id.in_(options))):
                options[o.poll_id].append(o)
            for pid, uid, oid in session.execute(
                    select(SummitPollVote.poll_id, SummitPollVote.user_id,
                           SummitPollVote.option_id)
                    .where(SummitPollVote.poll_id.in_(options))):
                poll_votes.setdefault(uid, {})[pid] = oid
        polls = [poll_dict(p, options[p.id]) for p in poll_rows]
        for qid, uid in session.execute(
                select(SummitQuestionVote.question_id, SummitQuestionVote.user_id)
                .join(SummitQuestion, SummitQuestion.id == SummitQuestionVote.question_id)
                .where(SummitQuestion.session_id == s.id)):
            question_votes.setdefault(uid, set()).add(qid)
        if s.kind == SessionKind.ROUNDTABLE:
            rooms = [
                {"key": f"r{r.id}", "name": r.name, "topic": r.topic, "count": 0,
                 "capacity": r.capacity, "video_url": r.video_url}
                for r in session.scalars(
                    select(SummitRoom).where(SummitRoom.session_id == s.id)
                    .order_by(SummitRoom.position, SummitRoom.id))
            ]
        title, video_url, capacity = s.title, s.stream_url or s.player_url, s.capacity
    else:
        room = session.get_one(SummitRoom, ref.room_id)
        title, video_url, capacity = room.name, room.video_url, room.capacity
    names = _names(session, {m.user_id for m in chat_rows + held_rows}
                   | {q.user_id for q in questions})
    bans, mutes = active_sanctions(session, ref.summit_id, now=now)
    return RoomSnapshot(
        ref=ref, title=title, video_url=video_url, capacity=capacity,
        settings=settings_dict(s),
        chat=[chat_dict(m, names.get(m.user_id, mask_name(None))) for m in chat_rows],
        held=[chat_dict(m, names.get(m.user_id, mask_name(None))) for m in held_rows],
        questions=[question_dict(q, names.get(q.user_id, mask_name(None))) for q in questions],
        polls=polls, rooms=rooms, bans=bans, mutes=mutes,
        question_votes=question_votes, poll_votes=poll_votes, seq=seq,
    )


def active_sanctions(
    session: Session, summit_id: int, *, now: dt.datetime | None = None
) -> tuple[set[int], dict[tuple[int, int], float | None]]:
    """The summit's banned people, and its mutes: (session, user) -> until (Unix s) | None."""
    now = now or utcnow()
    bans: set[int] = set()
    mutes: dict[tuple[int, int], float | None] = {}
    for sanction in session.scalars(
            select(SummitSanction).where(SummitSanction.summit_id == summit_id,
                                         SummitSanction.lifted_at.is_(None))):
        if sanction.until is not None and sanction.until <= now:
            continue
        if sanction.kind == SanctionKind.BAN:
            bans.add(sanction.user_id)
        elif sanction.session_id is not None:
            key = (sanction.session_id, sanction.user_id)
            until = None if sanction.until is None else sanction.until.timestamp()
            if key not in mutes:
                mutes[key] = until
            else:
                old = mutes[key]
                mutes[key] = None if old is None or until is None else max(old, until)
    return bans, mutes


# --- sequence numbers ----------------------------------------------------------------------


def channel_seqs(session: Session, keys: list[str]) -> dict[str, int]:
    """The stored sequence number of each channel key that has one (absent: 0).

    A reader that wants "everything up to number N" reads the number FIRST and the state
    after it: on PostgreSQL (read committed) each later statement sees every transaction
    committed before it began, so the state holds every change numbered up to N."""
    if not keys:
        return {}
    rows = session.execute(select(SummitLiveSeq.channel, SummitLiveSeq.seq)
                           .where(SummitLiveSeq.channel.in_(keys)))
    return {str(k): int(v) for k, v in rows}


def stamp(session: Session, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Give each channel's message the channel's next sequence number (``"s"``), raised in
    this transaction: published after the commit, a message's number says which stored
    change it is. Channels are locked in sorted order (no deadlock between two writers whose
    batches touch the same channels; see docs/locking.md)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = SummitLiveSeq.__table__
    assert isinstance(table, Table)  # noqa: S101 - for the type checker
    for key, msg in sorted(messages, key=lambda item: item[0]):
        stmt = (insert(table).values(channel=key, seq=1)
                .on_conflict_do_update(index_elements=["channel"],
                                       set_={"seq": table.c.seq + 1})
                .returning(table.c.seq))
        msg["s"] = int(session.execute(stmt).scalar_one())


def summit_snapshot(
    session: Session, summit_id: int
) -> tuple[int, set[int], dict[tuple[int, int], float | None]]:
    """The summit channel's sequence number (read first), its bans and its mutes."""
    key = summit_channel_key(summit_id)
    seq = channel_seqs(session, [key]).get(key, 0)
    bans, mutes = active_sanctions(session, summit_id)
    return seq, bans, mutes


# --- what attendees do ---------------------------------------------------------------------


def _has_keyword(body: str, keywords: str) -> bool:
    text = body.casefold()
    return any(k and k in text for k in (line.strip().casefold() for line in keywords.splitlines()))


def post_chat(session: Session, *, room: RoomRef, user_id: int, name: str, body: str,
              moderator: bool = False) -> Outcome:
    """A chat message: shown at once, or held for a moderator (pre-moderated session, or a
    moderation keyword in it). Moderators' own messages are never held."""
    s = session.get(SummitSession, room.session_id)
    if s is None:
        raise NotFound("This live room does not exist.", code="room_not_found")
    keywords = session.scalar(select(Summit.moderation_keywords)
                              .where(Summit.id == room.summit_id)) or ""
    held = not moderator and (s.chat_premoderated or _has_keyword(body, keywords))
    msg = SummitChatMessage(room=room.key, session_id=room.session_id, user_id=user_id,
                            body=body, status=ChatStatus.HELD if held else ChatStatus.VISIBLE,
                            created_at=utcnow())
    session.add(msg)
    session.flush()
    out = Outcome(ack={"id": msg.id, "status": msg.status.value})
    m = chat_dict(msg, name)
    if held:
        out.room(room.key, moderators=[{"k": "held", "m": m}])
    else:
        out.room(room.key, everyone=[{"k": "chat", "m": m}])
    return out


def _stage_only(room: RoomRef) -> None:
    if not room.is_stage:
        raise InvalidInput("Questions and polls are on the session's main stage.",
                           code="invalid", field="room")


def ask_question(session: Session, *, room: RoomRef, user_id: int, name: str,
                 body: str) -> Outcome:
    """A question, pending in the moderators' queue."""
    _stage_only(room)
    q = SummitQuestion(session_id=room.session_id, user_id=user_id, body=body,
                       status=QuestionStatus.PENDING, upvotes=0, created_at=utcnow())
    session.add(q)
    session.flush()
    out = Outcome(ack={"id": q.id, "status": q.status.value})
    out.room(room.key, moderators=[{"k": "pending", "q": question_dict(q, name)}])
    return out


def _question(session: Session, room: RoomRef, question_id: int) -> SummitQuestion:
    q = session.get(SummitQuestion, question_id)
    if q is None or q.session_id != room.session_id:
        raise NotFound("There is no such question in this session.", code="not_found")
    return q


def _question_event(session: Session, room: RoomRef, q: SummitQuestion, out: Outcome) -> None:
    qd = question_dict(q, _name(session, q.user_id))
    if q.status == QuestionStatus.PENDING:
        out.room(room.key, moderators=[{"k": "pending", "q": qd}])
    elif q.status == QuestionStatus.REJECTED:
        out.room(room.key, moderators=[{"k": "question", "q": qd}])
    else:
        out.room(room.key, everyone=[{"k": "question", "q": qd}])


def upvote(session: Session, *, room: RoomRef, user_id: int, question_id: int) -> Outcome:
    """One upvote per person per shown question; the counter moves in one UPDATE, so
    concurrent upvotes in several processes all count."""
    _stage_only(room)
    q = _question(session, room, question_id)
    if q.status not in UPVOTABLE:
        raise Conflict("Only approved questions take upvotes.", code="not_open")
    if not flush_unless_duplicate(
            session, SummitQuestionVote(question_id=q.id, user_id=user_id, created_at=utcnow())):
        raise Conflict("You have already upvoted this question.", code="already_voted")
    count = session.execute(
        update(SummitQuestion).where(SummitQuestion.id == q.id)
        .values(upvotes=SummitQuestion.upvotes + 1).returning(SummitQuestion.upvotes)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    session.expire(q, ["upvotes"])
    qd = question_dict(q, _name(session, q.user_id))
    qd["upvotes"] = count
    out = Outcome(ack={"question": q.id, "upvotes": count})
    out.room(room.key, everyone=[{"k": "question", "q": qd}], votes=[["q", q.id, user_id]])
    return out


def _poll(session: Session, room: RoomRef, poll_id: int) -> SummitPoll:
    poll = session.get(SummitPoll, poll_id)
    if poll is None or poll.session_id != room.session_id:
        raise NotFound("There is no such poll in this session.", code="not_found")
    return poll


def _options(session: Session, poll_id: int) -> list[SummitPollOption]:
    return list(session.scalars(
        select(SummitPollOption).where(SummitPollOption.poll_id == poll_id)
        .execution_options(populate_existing=True)))


def vote(session: Session, *, room: RoomRef, user_id: int, poll_id: int,
         option_id: int) -> Outcome:
    """One vote per person per open poll."""
    _stage_only(room)
    poll = _poll(session, room, poll_id)
    if poll.status != PollStatus.OPEN:
        raise Conflict("This poll is not open.", code="not_open")
    option = session.get(SummitPollOption, option_id)
    if option is None or option.poll_id != poll.id:
        raise InvalidInput("There is no such option in this poll.", code="invalid",
                           field="option")
    if not flush_unless_duplicate(
            session, SummitPollVote(poll_id=poll.id, user_id=user_id, option_id=option.id,
                                    created_at=utcnow())):
        raise Conflict("You have already voted in this poll.", code="already_voted")
    session.execute(
        update(SummitPollOption).where(SummitPollOption.id == option.id)
        .values(votes=SummitPollOption.votes + 1)
        .execution_options(synchronize_session=False))
    pd = poll_dict(poll, _options(session, poll.id))
    out = Outcome(ack={"poll": poll.id, "option": option.id})
    out.room(room.key, everyone=[{"k": "poll", "p": pd}],
             votes=[["p", poll.id, user_id, option.id]])
    return out


# --- what moderators do --------------------------------------------------------------------


def moderate(session: Session, *, room: RoomRef, actor_id: int, frame: dict[str, Any],
             now: dt.datetime | None = None) -> Outcome:
    """Carry out one moderator action (``frame`` as checked by ``protocol.parse``), audited
    in the same transaction."""
    now = now or utcnow()
    action = frame["action"]
    handler = _ACTIONS[action]
    return handler(session, room, actor_id, frame, now)


def _audit(session: Session, actor_id: int, action: str, kind: str, ident: int | str,
           **data: Any) -> None:
    audit.record(session, actor_id=actor_id, action=f"summit.{action}", object_type=kind,
                 object_id=ident, data=data)


def _message(session: Session, room: RoomRef, message_id: int) -> SummitChatMessage:
    msg = session.get(SummitChatMessage, message_id)
    if msg is None or msg.room != room.key:
        raise NotFound("There is no such message in this room.", code="not_found")
    return msg


def _wrong_status(what: str) -> Conflict:
    if what == "message":
        return Conflict("This message has already been decided.", code="wrong_status")
    if what == "question":
        return Conflict("This question cannot move to that status now.", code="wrong_status")
    return Conflict("This poll cannot move to that status now.", code="wrong_status")


_CHAT_VERBS = {"chat_approve": "approved", "chat_reject": "rejected", "chat_delete": "deleted"}
_SETTINGS_VERBS = {"slow": "slow_mode", "pause": "paused", "resume": "resumed"}


def _chat_decide(session: Session, room: RoomRef, actor_id: int, frame: dict[str, Any],
                 now: dt.datetime) -> Outcome:
    msg = _message(session, room, frame["message"])
    action = frame["action"]
    out = Outcome(ack={"message": msg.id})
    if action == "chat_delete":
        if msg.status != ChatStatus.VISIBLE:
            raise _wrong_status("message")
        new = ChatStatus.DELETED
        out.room(room.key, everyone=[{"k": "chat_removed", "id": msg.id}])
    else:
        if msg.status != ChatStatus.HELD:
            raise _wrong_status("message")
        if action == "chat_approve":
            new = ChatStatus.VISIBLE
            out.room(room.key, everyone=[
                {"k": "chat", "m": chat_dict(msg, _name(session, msg.user_id))}])
        else:
            new = ChatStatus.REJECTED
            out.room(room.key, moderators=[{"k": "chat_removed", "id": msg.id}])
    change = audit.changes(msg, status=new, moderated_by_id=actor_id, moderated_at=now)
    _audit(session, actor_id, f"chat.{_CHAT_VERBS[action]}", "summit_chat_message", msg.id,
           **change)
    out.ack["status"] = new.value
    session.flush()
    return out


def _question_decide(session: Session, room: RoomRef, actor_id: int, frame: dict[str, Any],
                     now: dt.datetime) -> Outcome:
    _stage_only(room)
    q = _question(session, room, frame["question"])
    action = frame["action"]
    out = Outcome(ack={"question": q.id})
    if action in ("q_approve", "q_reject"):
        if q.status != QuestionStatus.PENDING:
            raise _wrong_status("question")
        new = QuestionStatus.APPROVED if action == "q_approve" else QuestionStatus.REJECTED
        change = audit.changes(q, status=new, moderated_by_id=actor_id)
        verb = "approved" if new == QuestionStatus.APPROVED else "rejected"
    elif action == "q_answering":
        if q.status != QuestionStatus.APPROVED:
            raise _wrong_status("question")
        for other in session.scalars(select(SummitQuestion).where(
                SummitQuestion.session_id == q.session_id,
                SummitQuestion.status == QuestionStatus.ANSWERING)):
            other_change = audit.changes(other, status=QuestionStatus.ANSWERED, answered_at=now)
            _audit(session, actor_id, "question.answered", "summit_question", other.id,
                   **other_change)
            _question_event(session, room, other, out)
        new = QuestionStatus.ANSWERING
        change = audit.changes(q, status=new, moderated_by_id=actor_id)
        verb = "answering"
    else:  # q_answered
        if q.status not in UPVOTABLE:
            raise _wrong_status("question")
        new = QuestionStatus.ANSWERED
        change = audit.changes(q, status=new, answered_at=now)
        verb = "answered"
    _audit(session, actor_id, f"question.{verb}", "summit_question", q.id, **change)
    session.flush()
    session.refresh(q, ["upvotes"])
    _question_event(session, room, q, out)
    out.ack["status"] = new.value
    return out


def _target(session: Session, user_id: int, actor_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("There is no such person.", code="not_found")
    if user.id == actor_id:
        raise InvalidInput("Moderators cannot sanction themselves.", code="invalid",
                           field="user")
    return user


def _active_sanctions(session: Session, room: RoomRef, kind: SanctionKind,
                      user_id: int) -> list[SummitSanction]:
    query = select(SummitSanction).where(
        SummitSanction.summit_id == room.summit_id, SummitSanction.user_id == user_id,
        SummitSanction.kind == kind, SummitSanction.lifted_at.is_(None))
    if kind == SanctionKind.MUTE:
        query = query.where(SummitSanction.session_id == room.session_id)
    return list(session.scalars(query))


def _sanction(session: Session, room: RoomRef, actor_id: int, frame: dict[str, Any],
              now: dt.datetime) -> Outcome:
    action = frame["action"]
    user_id = frame["user"]
    out = Outcome(ack={"user": user_id})
    channel = summit_channel_key(room.summit_id)
    if action in ("mute", "ban"):
        _target(session, user_id, actor_id)
        kind = SanctionKind.MUTE if action == "mute" else SanctionKind.BAN
        until = now + dt.timedelta(minutes=frame["minutes"]) if action == "mute" else None
        sanction = SummitSanction(
            summit_id=room.summit_id, user_id=user_id, kind=kind,
            session_id=room.session_id if kind == SanctionKind.MUTE else None,
            until=until, reason=frame.get("reason", ""), created_by_id=actor_id,
            created_at=now)
        session.add(sanction)
        session.flush()
        _audit(session, actor_id, f"sanction.{'muted' if action == 'mute' else 'banned'}",
               "summit_sanction", sanction.id, user=user_id, session_id=sanction.session_id,
               until=None if until is None else until.isoformat(), reason=sanction.reason)
        control: dict[str, Any] = {"k": action, "user": user_id}
        if action == "mute":
            control.update(session=room.session_id,
                           until=None if until is None else until.timestamp())
            out.ack["until"] = iso(until) if until else None
    else:
        kind = SanctionKind.MUTE if action == "unmute" else SanctionKind.BAN
        lifted = _active_sanctions(session, room, kind, user_id)
        for sanction in lifted:
            sanction.lifted_at = now
            _audit(session, actor_id,
                   f"sanction.{'unmuted' if action == 'unmute' else 'unbanned'}",
                   "summit_sanction", sanction.id, user=user_id)
        session.flush()
        control = {"k": action, "user": user_id}
        if action == "unmute":
            control["session"] = room.session_id
        out.ack["lifted"] = len(lifted)
    out.messages.append((channel, {"x": [control]}))
    return out


def _settings(session: Session, room: RoomRef, actor_id: int, frame: dict[str, Any],
              now: dt.datetime) -> Outcome:
    del now
    s = session.get(SummitSession, room.session_id)
    if s is None:
        raise NotFound("This live room does not exist.", code="room_not_found")
    action = frame["action"]
    if action == "slow":
        change = audit.changes(s, slow_mode_seconds=frame["seconds"])
    else:
        change = audit.changes(s, chat_paused=action == "pause")
    _audit(session, actor_id, f"chat_settings.{_SETTINGS_VERBS[action]}", "summit_session",
           s.id, **change)
    session.flush()
    out = Outcome(ack={"settings": settings_dict(s)})
    event = {"k": "settings", **settings_dict(s)}
    for key in session_room_keys(session, s.id):
        out.room(key, everyone=[event])
    return out


def _poll_action(session: Session, room: RoomRef, actor_id: int, frame: dict[str, Any],
                 now: dt.datetime) -> Outcome:
    _stage_only(room)
    action = frame["action"]
    if action == "poll_create":
        poll = SummitPoll(session_id=room.session_id, question=frame["question"],
                          status=PollStatus.DRAFT, created_by_id=actor_id, created_at=now)
        session.add(poll)
        session.flush()
        options = [SummitPollOption(poll_id=poll.id, label=label, position=i, votes=0)
                   for i, label in enumerate(frame["options"])]
        session.add_all(options)
        session.flush()
        _audit(session, actor_id, "poll.created", "summit_poll", poll.id,
               question=poll.question, options=frame["options"])
    else:
        poll = _poll(session, room, frame["poll"])
        if action == "poll_open":
            if poll.status != PollStatus.DRAFT:
                raise _wrong_status("poll")
            change = audit.changes(poll, status=PollStatus.OPEN, opened_at=now)
            verb = "opened"
        else:
            if poll.status != PollStatus.OPEN:
                raise Conflict("This poll is not open.", code="not_open")
            change = audit.changes(poll, status=PollStatus.CLOSED, closed_at=now)
            verb = "closed"
        _audit(session, actor_id, f"poll.{verb}", "summit_poll", poll.id, **change)
        session.flush()
        options = _options(session, poll.id)
    pd = poll_dict(poll, options)
    out = Outcome(ack={"poll": poll.id, "status": poll.status.value})
    if poll.status == PollStatus.DRAFT:
        out.room(room.key, moderators=[{"k": "poll", "p": pd}])
    else:
        out.room(room.key, everyone=[{"k": "poll", "p": pd}])
    return out


_ACTIONS = {
    "chat_approve": _chat_decide, "chat_reject": _chat_decide, "chat_delete": _chat_decide,
    "q_approve": _question_decide, "q_reject": _question_decide,
    "q_answering": _question_decide, "q_answered": _question_decide,
    "mute": _sanction, "unmute": _sanction, "ban": _sanction, "unban": _sanction,
    "pause": _settings, "resume": _settings, "slow": _settings,
    "poll_create": _poll_action, "poll_open": _poll_action, "poll_close": _poll_action,
}
