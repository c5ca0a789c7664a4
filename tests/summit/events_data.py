"""Test data of the summit's events (helper: events): a two-day published summit with tracks,
speakers and sessions of each kind, built through the service (so it is audited and valid)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core.clock import CHINA_TZ, today_cn
from shanju.summit import service
from shanju.summit.models import SessionKind
from shanju.summit.schemas import (
    RoomIn,
    SessionIn,
    SessionSpeakerIn,
    SpeakerIn,
    SummitCreate,
    TrackIn,
)
from tests.factories import make_user


def summit_days(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The test summit's two days: a week after ``today`` (the clock's China date), so that
    every session is still ahead on whatever day the suite runs (a countdown ticks)."""
    first = (today or today_cn()) + dt.timedelta(days=7)
    return first, first + dt.timedelta(days=1)


def cn(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A China-time instant on ``day``."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA_TZ)


@dataclass
class World:
    organizer_id: int
    slug: str
    summit_id: int
    track_ids: list[int]
    speaker_ids: list[int]
    keynote_id: int  # day 1, 09:00–10:00, HLS stream, two speakers
    forum_id: int  # day 1, 10:30–12:00, player page
    roundtable_id: int  # day 2, 14:00–15:30, two breakout rooms
    day1: dt.date  # the summit's days (summit_days when it was built)
    day2: dt.date


def build_summit(session: Session, *, slug: str = "cics-2026", publish: bool = True,
                 organizer: User | None = None) -> World:
    """The summit, its tracks, speakers and three sessions; published unless asked."""
    day1, day2 = summit_days()
    user = organizer or make_user(session, role=Role.REVIEWER)
    summit = service.do_create_summit(session=session, actor=user, data=SummitCreate(
        slug=slug, title="中国互联网公益峰会 2026", title_en="China Internet Charity Summit 2026",
        tagline="从不会掉线", starts_on=day1, ends_on=day2))
    tracks = [
        service.do_create_track(session=session, actor=user, summit=summit,
                                data=TrackIn(name="数字公益", color="#1d4ed8", position=1)),
        service.do_create_track(session=session, actor=user, summit=summit,
                                data=TrackIn(name="乡村振兴", color="#15803d", position=2)),
    ]
    speakers = [
        service.do_create_speaker(session=session, actor=user, summit=summit, data=SpeakerIn(
            name="王小明", title="秘书长", affiliation="春苗基金会", bio="二十年公益经验。",
            position=1)),
        service.do_create_speaker(session=session, actor=user, summit=summit, data=SpeakerIn(
            name="李华", title="研究员", affiliation="公益研究院", position=2)),
    ]
    keynote = service.do_create_session(session=session, actor=user, summit=summit,
                                        data=SessionIn(
        kind=SessionKind.KEYNOTE, title="开幕主旨演讲", starts_at=cn(day1, 9),
        ends_at=cn(day1, 10), track_id=tracks[0].id,
        stream_url="https://live.example.test/keynote/index.m3u8"))
    forum = service.do_create_session(session=session, actor=user, summit=summit,
                                      data=SessionIn(
        kind=SessionKind.FORUM, title="数字公益分论坛", starts_at=cn(day1, 10, 30),
        ends_at=cn(day1, 12), track_id=tracks[0].id,
        player_url="https://player.example.test/embed/forum"))
    roundtable = service.do_create_session(session=session, actor=user, summit=summit,
                                           data=SessionIn(
        kind=SessionKind.ROUNDTABLE, title="乡村振兴圆桌", starts_at=cn(day2, 14),
        ends_at=cn(day2, 15, 30), track_id=tracks[1].id))
    service.do_set_session_speakers(session=session, actor=user, summit=summit,
                                    summit_session=keynote, entries=[
        SessionSpeakerIn(speaker_id=speakers[0].id, role="speaker"),
        SessionSpeakerIn(speaker_id=speakers[1].id, role="host")])
    service.do_set_session_speakers(session=session, actor=user, summit=summit,
                                    summit_session=roundtable, entries=[
        SessionSpeakerIn(speaker_id=speakers[1].id, role="panelist")])
    for name in ("A 组", "B 组"):
        service.do_create_room(session=session, actor=user, summit=summit,
                               summit_session=roundtable, data=RoomIn(
            name=name, topic="村级公益", video_url="https://meeting.example.test/" + name[0]))
    if publish:
        service.do_publish_summit(session=session, actor=user, summit=summit)
    return World(organizer_id=user.id, slug=summit.slug, summit_id=summit.id,
                 track_ids=[t.id for t in tracks], speaker_ids=[s.id for s in speakers],
                 keynote_id=keynote.id, forum_id=forum.id, roundtable_id=roundtable.id,
                 day1=day1, day2=day2)
