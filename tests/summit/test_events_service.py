"""The summit's events service: validation with stable codes, organizers only, the timetable,
what's on now, speakers' sessions, the personal agenda and the audit of organizers' changes."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from shanju.accounts.models import Role, User
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import Conflict, DomainError, NotAuthenticated, NotFound, PermissionDenied
from shanju.organizations.models import OrgStatus
from shanju.summit import service
from shanju.summit.models import SessionKind, SessionStatus, Summit, SummitSession
from shanju.summit.schemas import (
    RoomIn,
    SessionIn,
    SessionSpeakerIn,
    SpeakerIn,
    SummitCreate,
    SummitUpdate,
    TrackIn,
)
from tests.factories import make_org, make_user
from tests.summit.events_data import build_summit, cn, summit_days

HOUR = dt.timedelta(hours=1)


def _naive(day: dt.date, hour: int) -> dt.datetime:
    """A naive time on ``day`` (the service reads it as China time)."""
    return dt.datetime.combine(day, dt.time(hour))


def _summit(session, slug="cics-2026") -> Summit:  # type: ignore[no-untyped-def]
    return session.scalars(select(Summit).where(Summit.slug == slug)).one()


def test_timetable_orders_days_and_sessions_in_china_time(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        day1, day2 = world.day1, world.day2
        summit = _summit(session)
        organizer = session.get(User, world.organizer_id)
        # A session at 00:30 China time on day 2 is 16:30 UTC on day 1: it belongs to day 2.
        early = service.do_create_session(session=session, actor=organizer, summit=summit,
                                          data=SessionIn(kind=SessionKind.FORUM, title="早场",
                                                         starts_at=cn(day2, 0, 30),
                                                         ends_at=cn(day2, 1, 30)))
        table = service.timetable(session=session, summit=summit)
        assert [d.date for d in table.days] == [day1, day2]
        assert [r.id for r in table.days[0].sessions] == [world.keynote_id, world.forum_id]
        assert [r.id for r in table.days[1].sessions] == [early.id, world.roundtable_id]
        assert [t.name for t in table.tracks] == ["数字公益", "乡村振兴"]
        assert [(b.speaker.name, b.role) for b in table.speakers[world.keynote_id]] == [
            ("王小明", "speaker"), ("李华", "host")]
        assert [r.name for r in table.rooms[world.roundtable_id]] == ["A 组", "B 组"]


def test_session_validation_codes(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        day1, day2 = world.day1, world.day2
        summit = _summit(session)
        organizer = session.get(User, world.organizer_id)

        def create(**fields: object) -> str:
            data = {"kind": SessionKind.FORUM, "title": "t", "starts_at": cn(day1, 9),
                    "ends_at": cn(day1, 10), **fields}
            with pytest.raises(DomainError) as exc:
                service.do_create_session(session=session, actor=organizer, summit=summit,
                                          data=SessionIn(**data))  # type: ignore[arg-type]
            return f"{exc.value.code}:{exc.value.field}"

        assert create(ends_at=cn(day1, 9)) == "ends_before_starts:ends_at"
        assert create(ends_at=cn(day1, 8)) == "ends_before_starts:ends_at"
        assert create(starts_at=cn(day1, 0) - dt.timedelta(minutes=1)) == (
            "outside_summit_days:starts_at")
        assert create(starts_at=cn(day2, 23), ends_at=cn(day2, 23) + dt.timedelta(hours=2)
                      ) == "outside_summit_days:starts_at"
        assert create(title="  ") == "required:title"
        assert create(title="长" * 161) == "too_long:title"
        assert create(stream_url="https://cdn.example.test/live.mp4") == (
            "stream_not_hls:stream_url")
        assert create(stream_url="javascript:alert(1)//.m3u8") == "invalid_url:stream_url"
        assert create(stream_url="ftp://cdn.example.test/x.m3u8") == "invalid_url:stream_url"
        assert create(player_url="http://player.example.test/embed") == (
            "https_required:player_url")
        assert create(player_url="data:text/html,hi") == "invalid_url:player_url"
        assert create(replay_url="http://vod.example.test/page") == "https_required:replay_url"
        assert create(track_id=999_999) == "track_not_found:None"
        assert create(kind=None) == "required:kind"
        # A naive time is China time; up to midnight after the last day is within the summit.
        ok = service.do_create_session(session=session, actor=organizer, summit=summit,
                                       data=SessionIn(kind=SessionKind.FORUM, title="夜场",
                                                      starts_at=_naive(day2, 23),
                                                      ends_at=_naive(day2, 23) + HOUR,
                                                      stream_url="http://cdn.example.test/"
                                                      "a/index.M3U8?token=1",
                                                      replay_url="https://vod.example.test/r"))
        assert ok.starts_at == cn(day2, 23).astimezone(dt.UTC)


def test_other_validation_codes(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        day1, day2 = world.day1, world.day2
        summit = _summit(session)
        organizer = session.get(User, world.organizer_id)
        forum = session.get(SummitSession, world.forum_id)
        assert forum is not None
        cases = [
            (lambda: service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
                slug="cics-2026", title="x", starts_on=day1, ends_on=day1)), "slug_taken"),
            (lambda: service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
                slug="Bad Slug", title="x", starts_on=day1, ends_on=day1)), "invalid_slug"),
            (lambda: service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
                slug="later", title="x", starts_on=day2, ends_on=day1)), "ends_before_starts"),
            (lambda: service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
                slug="long", title="x", starts_on=day1, ends_on=day1 + dt.timedelta(days=14))),
             "too_many_days"),
            (lambda: service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
                slug="far", title="x", starts_on=dt.date(9999, 12, 31),
                ends_on=dt.date(9999, 12, 31))), "invalid_date"),
            (lambda: service.do_update_summit(session=session, actor=organizer, summit=summit,
                                              data=SummitUpdate(ends_on=day1)),
             "sessions_outside_days"),
            (lambda: service.do_create_track(session=session, actor=organizer, summit=summit,
                                             data=TrackIn(name="x", color="red")),
             "invalid_color"),
            (lambda: service.do_create_speaker(session=session, actor=organizer, summit=summit,
                                               data=SpeakerIn(name="x",
                                                              photo_url="javascript:x")),
             "invalid_url"),
            (lambda: service.do_create_room(session=session, actor=organizer, summit=summit,
                                            summit_session=forum, data=RoomIn(name="x")),
             "not_a_roundtable"),
            (lambda: service.do_set_session_speakers(
                session=session, actor=organizer, summit=summit, summit_session=forum,
                entries=[SessionSpeakerIn(speaker_id=world.speaker_ids[0], role="boss")]),
             "invalid_role"),
            (lambda: service.do_set_session_speakers(
                session=session, actor=organizer, summit=summit, summit_session=forum,
                entries=[SessionSpeakerIn(speaker_id=world.speaker_ids[0]),
                         SessionSpeakerIn(speaker_id=world.speaker_ids[0])]),
             "duplicate_speaker"),
            (lambda: service.do_set_session_speakers(
                session=session, actor=organizer, summit=summit, summit_session=forum,
                entries=[SessionSpeakerIn(speaker_id=987_654)]), "speaker_not_found"),
        ]
        for call, code in cases:
            with pytest.raises(DomainError) as exc:
                call()
            assert exc.value.code == code
        # A photo may be a path on this site; a room's video link must be https.
        speaker = service.do_create_speaker(session=session, actor=organizer, summit=summit,
                                            data=SpeakerIn(name="赵", photo_url="/static/a.png"))
        assert speaker.photo_url == "/static/a.png"
        roundtable = session.get(SummitSession, world.roundtable_id)
        assert roundtable is not None
        with pytest.raises(DomainError) as exc:
            service.do_create_room(session=session, actor=organizer, summit=summit,
                                   summit_session=roundtable,
                                   data=RoomIn(name="C", video_url="http://m.example.test/"))
        assert exc.value.code == "https_required"
        # A roundtable with rooms stays a roundtable.
        with pytest.raises(Conflict) as conflict:
            service.do_update_session(session=session, actor=organizer, summit=summit,
                                      summit_session=roundtable,
                                      data=SessionIn(kind=SessionKind.FORUM))
        assert conflict.value.code == "session_has_rooms"


def test_only_organizers_change_a_summit(db: Database) -> None:
    with db.transaction() as session:
        host = make_org(session)
        staff = make_user(session, role=Role.ORG_STAFF, organization_id=host.id)
        other_staff = make_user(session, role=Role.ORG_STAFF,
                                organization_id=make_org(session).id)
        donor = make_user(session)
        world = build_summit(session, organizer=staff)
        day1 = world.day1
        summit = _summit(session)
        assert summit.host_organization_id == host.id  # staff host their own organization's
        for actor in (donor, other_staff):
            with pytest.raises(PermissionDenied) as exc:
                service.do_create_track(session=session, actor=actor, summit=summit,
                                        data=TrackIn(name="x"))
            assert exc.value.code == "organizer_only"
        with pytest.raises(NotAuthenticated):
            service.do_create_track(session=session, actor=None, summit=summit,
                                    data=TrackIn(name="x"))
        with pytest.raises(PermissionDenied) as exc:
            service.do_create_summit(session=session, actor=donor, data=SummitCreate(
                slug="mine", title="x", starts_on=day1, ends_on=day1))
        assert exc.value.code == "organizer_only"
        pending = make_org(session, status=OrgStatus.PENDING)
        newcomer = make_user(session, role=Role.ORG_STAFF, organization_id=pending.id)
        with pytest.raises(PermissionDenied) as exc:
            service.do_create_summit(session=session, actor=newcomer, data=SummitCreate(
                slug="mine", title="x", starts_on=day1, ends_on=day1))
        assert exc.value.code == "organization_not_approved"
        assert world.summit_id == summit.id


def test_drafts_are_hidden_and_publishing_needs_a_session(db: Database) -> None:
    day1, _ = summit_days()
    with db.transaction() as session:
        organizer = make_user(session, role=Role.REVIEWER)
        donor = make_user(session)
        draft = service.do_create_summit(session=session, actor=organizer, data=SummitCreate(
            slug="draft", title="草稿峰会", starts_on=day1, ends_on=day1))
        with pytest.raises(NotFound) as missing:
            service.get_summit(session=session, slug="draft", viewer=donor)
        assert missing.value.code == "summit_not_found"
        assert service.get_summit(session=session, slug="draft", viewer=organizer) is draft
        assert [s.slug for s in service.list_summits(session=session, viewer=None)] == []
        with pytest.raises(Conflict) as empty:
            service.do_publish_summit(session=session, actor=organizer, summit=draft)
        assert empty.value.code == "summit_empty"
        row = service.do_create_session(session=session, actor=organizer, summit=draft,
                                        data=SessionIn(kind=SessionKind.KEYNOTE, title="开幕",
                                                       starts_at=cn(day1, 9),
                                                       ends_at=cn(day1, 10)))
        with pytest.raises(Conflict) as unpublished:
            service.do_add_to_agenda(session=session, actor=donor, summit=draft,
                                     summit_session=row)
        assert unpublished.value.code == "summit_not_published"
        service.do_publish_summit(session=session, actor=organizer, summit=draft)
        assert [s.slug for s in service.list_summits(session=session, viewer=None)] == ["draft"]


def test_status_moves_forward_only_and_whats_on(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        day1 = world.day1
        summit = _summit(session)
        organizer = session.get(User, world.organizer_id)
        keynote = session.get(SummitSession, world.keynote_id)
        forum = session.get(SummitSession, world.forum_id)
        assert keynote is not None and forum is not None
        during_keynote = cn(day1, 9, 30)
        now = service.whats_on(session=session, summit=summit, now=during_keynote)
        assert [r.id for r in now.live] == [world.keynote_id]  # in its slot, not yet "live"
        assert [r.id for r in now.next] == [world.forum_id, world.roundtable_id]
        assert service.session_phase(keynote, cn(day1, 8)) == "before"
        assert service.session_phase(keynote, during_keynote) == "live"
        assert service.session_phase(keynote, cn(day1, 11)) == "after"

        # The keynote runs over: it is still on at 10:15 because the organizers say so.
        service.do_set_status(session=session, actor=organizer, summit=summit,
                              summit_session=keynote, status=SessionStatus.LIVE)
        now = service.whats_on(session=session, summit=summit, now=cn(day1, 10, 15))
        assert [r.id for r in now.live] == [world.keynote_id]
        assert service.session_phase(keynote, cn(day1, 10, 15)) == "live"
        service.do_set_status(session=session, actor=organizer, summit=summit,
                              summit_session=keynote, status=SessionStatus.ENDED)
        assert service.session_phase(keynote, during_keynote) == "after"
        with pytest.raises(Conflict) as back:
            service.do_set_status(session=session, actor=organizer, summit=summit,
                                  summit_session=keynote, status=SessionStatus.LIVE)
        assert back.value.code == "invalid_status_change"
        # Setting the same status again changes nothing (and audits nothing).
        service.do_set_status(session=session, actor=organizer, summit=summit,
                              summit_session=keynote, status=SessionStatus.ENDED)
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "summit.session.status_changed",
            AuditEntry.object_id == str(world.keynote_id)).order_by(AuditEntry.id)).all()
        assert [e.data["new"]["status"] for e in entries] == ["live", "ended"]
        assert all(e.actor_id == world.organizer_id for e in entries)


def test_organizer_changes_are_audited(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        summit = _summit(session)
        organizer = session.get(User, world.organizer_id)
        forum = session.get(SummitSession, world.forum_id)
        assert forum is not None
        service.do_update_session(session=session, actor=organizer, summit=summit,
                                  summit_session=forum,
                                  data=SessionIn(replay_url="https://vod.example.test/f.m3u8",
                                                 player_url=None))
        assert forum.player_url is None and forum.replay_url is not None
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        for action in ("summit.summit.created", "summit.track.created",
                       "summit.speaker.created", "summit.session.created",
                       "summit.session.speakers_set", "summit.room.created",
                       "summit.summit.published", "summit.session.updated"):
            assert action in actions
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.data["old"] == {
            "player_url": "https://player.example.test/embed/forum", "replay_url": None}
        # An update that changes nothing records nothing.
        count = len(actions)
        service.do_update_session(session=session, actor=organizer, summit=summit,
                                  summit_session=forum, data=SessionIn(title=forum.title))
        assert len(session.scalars(select(AuditEntry.id)).all()) == count


def test_speaker_sessions_and_agenda(db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        summit = _summit(session)
        donor = make_user(session)
        li = service.get_speaker(session=session, summit=summit, speaker_id=world.speaker_ids[1])
        assert [r.id for r in service.speaker_sessions(session=session, speaker=li)] == [
            world.keynote_id, world.roundtable_id]
        roundtable = service.get_session(session=session, summit=summit,
                                         session_id=world.roundtable_id)
        keynote = service.get_session(session=session, summit=summit,
                                      session_id=world.keynote_id)
        assert service.do_add_to_agenda(session=session, actor=donor, summit=summit,
                                        summit_session=roundtable)
        assert service.do_add_to_agenda(session=session, actor=donor, summit=summit,
                                        summit_session=keynote)
        assert not service.do_add_to_agenda(session=session, actor=donor, summit=summit,
                                            summit_session=keynote)  # already there
        assert [r.id for r in service.agenda(session=session, summit=summit, user=donor)] == [
            world.keynote_id, world.roundtable_id]
        assert service.do_remove_from_agenda(session=session, actor=donor, summit=summit,
                                             summit_session=keynote)
        assert not service.do_remove_from_agenda(session=session, actor=donor, summit=summit,
                                                 summit_session=keynote)
        assert service.agenda_ids(session=session, summit=summit, user=donor) == {
            world.roundtable_id}
        with pytest.raises(NotAuthenticated):
            service.do_add_to_agenda(session=session, actor=None, summit=summit,
                                     summit_session=keynote)
        other = build_summit(session, slug="other")
        with pytest.raises(NotFound) as exc:
            service.get_session(session=session, summit=summit, session_id=other.keynote_id)
        assert exc.value.code == "session_not_found"
