"""The online summit (云峰会): events, sessions, registration, live interaction, attendance.

A summit has days (the dates its sessions fall on, in China time), tracks and sessions
(keynote, forum, roundtable). Roundtables have breakout rooms. Organizations register
delegations; people register (as a delegate of their organization's delegation, or as public
audience) and get an e-ticket. Live interaction (chat, Q&A, polls) is stored here; the live
rooms themselves are in-memory hubs (see ``hub.py``) fed through the broker.

Live room keys: ``s<session_id>`` is a session's main stage, ``r<room_id>`` a roundtable's
breakout room; the broker channel of a room is ``summit:<key>``.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class SummitStatus(enum.StrEnum):
    """A draft summit is seen only by its organizers."""

    DRAFT = "draft"
    PUBLISHED = "published"


class SessionKind(enum.StrEnum):
    KEYNOTE = "keynote"  # 主论坛 / 主旨演讲
    FORUM = "forum"  # 分论坛
    ROUNDTABLE = "roundtable"  # 圆桌 (with breakout rooms)


class SessionStatus(enum.StrEnum):
    """Set by the organizers (a session may start late or run over its timetable slot)."""

    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class Summit(Base):
    """One summit, e.g. 中国互联网公益峰会 2026 (云峰会)."""

    __tablename__ = "summits"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    title: Mapped[str] = mapped_column(String(120))
    title_en: Mapped[str | None] = mapped_column(String(120))
    tagline: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # The organization that hosts it (its staff are the summit's organizers), if any;
    # platform reviewers/admins organize every summit.
    host_organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    starts_on: Mapped[dt.date]
    ends_on: Mapped[dt.date]
    status: Mapped[SummitStatus] = mapped_column(
        enum_column(SummitStatus), default=SummitStatus.DRAFT
    )
    capacity: Mapped[int | None]  # approved registrations (people); None: no limit
    delegation_size: Mapped[int] = mapped_column(default=5)  # seats per organization
    registration_closes_at: Mapped[dt.datetime | None]
    # Chat pre-moderation: one keyword per line; a chat message containing one is held for
    # a moderator instead of being shown.
    moderation_keywords: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SummitTrack(Base):
    """A thread of sessions (e.g. 乡村振兴, 数字公益)."""

    __tablename__ = "summit_tracks"

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    name_en: Mapped[str | None] = mapped_column(String(60))
    color: Mapped[str] = mapped_column(String(7), default="#c0392b")  # #rrggbb
    position: Mapped[int] = mapped_column(default=0)


class SummitSpeaker(Base):
    """A speaker, host or panelist; the photo is a path under /files or a site URL."""

    __tablename__ = "summit_speakers"

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(120), default="")  # job title
    affiliation: Mapped[str] = mapped_column(String(120), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    photo_url: Mapped[str | None] = mapped_column(String(300))
    position: Mapped[int] = mapped_column(default=0)


class SummitSession(Base):
    """A keynote, forum or roundtable in the timetable; its live room key is ``s<id>``."""

    __tablename__ = "summit_sessions"
    __table_args__ = (Index("ix_summit_sessions_summit_start", "summit_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"))
    track_id: Mapped[int | None] = mapped_column(ForeignKey("summit_tracks.id"))
    kind: Mapped[SessionKind] = mapped_column(enum_column(SessionKind))
    title: Mapped[str] = mapped_column(String(160))
    title_en: Mapped[str | None] = mapped_column(String(160))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    status: Mapped[SessionStatus] = mapped_column(
        enum_column(SessionStatus), default=SessionStatus.SCHEDULED
    )
    capacity: Mapped[int | None]  # live attendees at once; None: no limit
    # The live stage: an HLS playlist (played with hls.js) or a provider's player page
    # (embedded in an iframe); afterwards the replay (either kind). Shanju never transcodes.
    stream_url: Mapped[str | None] = mapped_column(String(500))
    player_url: Mapped[str | None] = mapped_column(String(500))
    replay_url: Mapped[str | None] = mapped_column(String(500))
    # Chat moderation settings (the breakout rooms of a roundtable share them).
    chat_premoderated: Mapped[bool] = mapped_column(default=False)  # every message waits
    chat_paused: Mapped[bool] = mapped_column(default=False)
    slow_mode_seconds: Mapped[int] = mapped_column(default=0)  # 0: off
    position: Mapped[int] = mapped_column(default=0)


class SummitSessionSpeaker(Base):
    """Who speaks in a session, in order."""

    __tablename__ = "summit_session_speakers"

    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"), primary_key=True)
    speaker_id: Mapped[int] = mapped_column(ForeignKey("summit_speakers.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default="speaker")  # speaker|host|panelist
    position: Mapped[int] = mapped_column(default=0)


class SummitRoom(Base):
    """A roundtable's breakout room: a small chat (live key ``r<id>``) and a video-room link."""

    __tablename__ = "summit_rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    topic: Mapped[str] = mapped_column(String(200), default="")
    video_url: Mapped[str | None] = mapped_column(String(500))  # e.g. a Tencent Meeting link
    capacity: Mapped[int] = mapped_column(default=12)
    position: Mapped[int] = mapped_column(default=0)


class SummitAgendaItem(Base):
    """A session a person put on their own agenda ("我的日程")."""

    __tablename__ = "summit_agenda_items"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- registration --------------------------------------------------------------------------


class RegistrationStatus(enum.StrEnum):
    PENDING = "pending"  # an application waiting for the organizers
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class RegistrationKind(enum.StrEnum):
    DELEGATE = "delegate"  # a member of an organization's delegation
    AUDIENCE = "audience"  # a member of the public


class SummitDelegation(Base):
    """An organization's delegation. A verified (approved) organization's delegation is
    approved at once; an organization that is not verified applies and waits."""

    __tablename__ = "summit_delegations"
    __table_args__ = (UniqueConstraint("summit_id", "organization_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    status: Mapped[RegistrationStatus] = mapped_column(
        enum_column(RegistrationStatus), default=RegistrationStatus.PENDING, index=True
    )
    seats: Mapped[int] = mapped_column(default=1)  # ≤ summit.delegation_size
    note: Mapped[str] = mapped_column(Text, default="")  # the application's reason
    registered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SummitRegistration(Base):
    """One person's place at a summit, with the e-ticket.

    The ticket's QR code carries only an opaque random token; the database keeps its SHA-256
    (``ticket_hash``), so a leaked database does not leak tickets.
    """

    __tablename__ = "summit_registrations"
    __table_args__ = (UniqueConstraint("summit_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[RegistrationKind] = mapped_column(enum_column(RegistrationKind))
    delegation_id: Mapped[int | None] = mapped_column(
        ForeignKey("summit_delegations.id"), index=True
    )
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    status: Mapped[RegistrationStatus] = mapped_column(
        enum_column(RegistrationStatus), default=RegistrationStatus.PENDING
    )
    ticket_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    checked_in_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SummitAttendance(Base):
    """A person's time in a session's live rooms, accumulated from heartbeats."""

    __tablename__ = "summit_attendance"

    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), index=True
    )
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    seconds: Mapped[int] = mapped_column(default=0)


# --- live interaction ----------------------------------------------------------------------


class ChatStatus(enum.StrEnum):
    VISIBLE = "visible"
    HELD = "held"  # pre-moderation: waits for a moderator
    REJECTED = "rejected"  # a held message a moderator turned down
    DELETED = "deleted"  # removed by a moderator after it was shown


class SummitChatMessage(Base):
    __tablename__ = "summit_chat_messages"
    __table_args__ = (Index("ix_summit_chat_room_id", "room", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str] = mapped_column(String(20))  # live room key: s<id> | r<id>
    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(String(500))
    status: Mapped[ChatStatus] = mapped_column(enum_column(ChatStatus))
    moderated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    moderated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QuestionStatus(enum.StrEnum):
    PENDING = "pending"  # in the moderators' queue
    APPROVED = "approved"  # shown; attendees upvote it
    ANSWERING = "answering"  # "answering now" (one per session at a time)
    ANSWERED = "answered"
    REJECTED = "rejected"


class SummitQuestion(Base):
    __tablename__ = "summit_questions"
    __table_args__ = (Index("ix_summit_questions_session_status", "session_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(String(300))
    status: Mapped[QuestionStatus] = mapped_column(
        enum_column(QuestionStatus), default=QuestionStatus.PENDING
    )
    upvotes: Mapped[int] = mapped_column(default=0)  # = count of its SummitQuestionVote rows
    moderated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    answered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SummitQuestionVote(Base):
    __tablename__ = "summit_question_votes"

    question_id: Mapped[int] = mapped_column(ForeignKey("summit_questions.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PollStatus(enum.StrEnum):
    DRAFT = "draft"  # prepared by the organizers, not shown yet
    OPEN = "open"
    CLOSED = "closed"  # results still shown


class SummitPoll(Base):
    __tablename__ = "summit_polls"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("summit_sessions.id"), index=True)
    question: Mapped[str] = mapped_column(String(200))
    status: Mapped[PollStatus] = mapped_column(enum_column(PollStatus), default=PollStatus.DRAFT)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SummitPollOption(Base):
    __tablename__ = "summit_poll_options"

    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("summit_polls.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(default=0)
    votes: Mapped[int] = mapped_column(default=0)  # = count of its SummitPollVote rows


class SummitPollVote(Base):
    """One vote per person per poll."""

    __tablename__ = "summit_poll_votes"

    poll_id: Mapped[int] = mapped_column(ForeignKey("summit_polls.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    option_id: Mapped[int] = mapped_column(ForeignKey("summit_poll_options.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SanctionKind(enum.StrEnum):
    MUTE = "mute"  # may watch, may not post (in one session's rooms, until a time)
    BAN = "ban"  # may not post or join any live room of the summit


class SummitSanction(Base):
    __tablename__ = "summit_sanctions"
    __table_args__ = (Index("ix_summit_sanctions_summit_user", "summit_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    summit_id: Mapped[int] = mapped_column(ForeignKey("summits.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[SanctionKind] = mapped_column(enum_column(SanctionKind))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("summit_sessions.id"))  # mutes
    until: Mapped[dt.datetime | None]  # None: until lifted
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[dt.datetime | None]


class SummitLiveSeq(Base):
    """A live channel's sequence number: one more for every stored change published on it.

    ``channel`` is a room key (``s<session>``, ``r<room>``) or a summit's channel key
    (``summit<id>``). The live writer raises it in the transaction that stores the change
    (``live_service.stamp``), so every broker message carries the number its change got, and a
    process that finds the stored number ahead of what it applied knows it missed something
    and reloads the room from the database (see ``hub.py``).
    """

    __tablename__ = "summit_live_seqs"

    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
