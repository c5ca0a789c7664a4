"""The demo summit: two days, live now, 30+ speakers with portraits, 3,000 organizations."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import Database
from shanju.core.migrations import create_schema
from shanju.core.security import token_hash
from shanju.demo import summit as demo_summit
from shanju.demo import summit_data
from shanju.demo.seed import DEMO_ACCOUNTS, DEMO_PASSWORD, seed
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus
from shanju.summit import access
from shanju.summit.models import (
    ChatStatus,
    PollStatus,
    QuestionStatus,
    RegistrationKind,
    RegistrationStatus,
    SessionKind,
    SessionStatus,
    Summit,
    SummitAttendance,
    SummitChatMessage,
    SummitDelegation,
    SummitPoll,
    SummitPollOption,
    SummitPollVote,
    SummitQuestion,
    SummitQuestionVote,
    SummitRegistration,
    SummitRoom,
    SummitSession,
    SummitSessionSpeaker,
    SummitSpeaker,
    SummitStatus,
)
from shanju.summit.registration import ticket_token

STATIC = Path(demo_summit.__file__).resolve().parents[1] / "static"
# A fixed clock (15:40 China time) keeps the big seed quick: no giving day in the past.
NOW = dt.datetime(2025, 9, 20, 7, 40, tzinfo=dt.UTC)


def _count(session, model, *where) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_the_seeded_summit_has_everything_the_demo_promises(db: Database,
                                                            tmp_path: Path) -> None:
    with db.transaction() as session:
        report = seed(session, scale=0.02, now=NOW, summit_organizations=3000,
                      upload_dir=tmp_path)
    assert report.summit_slug == "cics-2025"

    with db.transaction(write=False) as session:
        summit = session.scalar(select(Summit).where(Summit.slug == "cics-2025"))
        assert summit is not None and summit.status == SummitStatus.PUBLISHED
        today = NOW.astimezone(CHINA_TZ).date()
        assert (summit.starts_on, summit.ends_on) == (today, today + dt.timedelta(days=1))

        # Speakers, each with a portrait that exists.
        speakers = list(session.scalars(select(SummitSpeaker)
                                        .where(SummitSpeaker.summit_id == summit.id)))
        assert len(speakers) >= 30
        for speaker in speakers:
            assert speaker.name and speaker.title and speaker.affiliation and speaker.bio
            assert speaker.photo_url and speaker.photo_url.startswith("/static/")
            assert (STATIC / speaker.photo_url.removeprefix("/static/")).is_file()

        # The timetable: keynotes, forums, roundtables with rooms, on both days; one live.
        sessions = list(session.scalars(select(SummitSession)
                                        .where(SummitSession.summit_id == summit.id)))
        kinds = [s.kind for s in sessions]
        assert kinds.count(SessionKind.KEYNOTE) == 2
        assert kinds.count(SessionKind.FORUM) >= 6
        days = {_aware(s.starts_at).astimezone(CHINA_TZ).date() for s in sessions}
        assert days == {summit.starts_on, summit.ends_on}
        for day in days:
            assert sum(1 for s in sessions if s.kind == SessionKind.FORUM
                       and _aware(s.starts_at).astimezone(CHINA_TZ).date() == day) >= 2
        roundtables = [s for s in sessions if s.kind == SessionKind.ROUNDTABLE]
        assert len(roundtables) >= 2
        for roundtable in roundtables:
            rooms = list(session.scalars(select(SummitRoom)
                                         .where(SummitRoom.session_id == roundtable.id)))
            assert 3 <= len(rooms) <= 4
            assert all(r.video_url and ".invalid/" in r.video_url for r in rooms)
        for s in sessions:
            assert _count(session, SummitSessionSpeaker,
                          SummitSessionSpeaker.session_id == s.id) >= 2
        live = [s for s in sessions if s.status == SessionStatus.LIVE]
        assert len(live) == 1 and live[0].kind == SessionKind.KEYNOTE
        # Video: a local stand-in page (the demo is offline), which exists.
        for url in [live[0].player_url, *(s.replay_url for s in sessions if s.replay_url)]:
            assert url and url.startswith("/static/")
            assert (STATIC / url.removeprefix("/static/").split("?")[0]).is_file()
        assert _aware(live[0].starts_at) <= NOW < _aware(live[0].ends_at)
        ended = [s for s in sessions if s.status == SessionStatus.ENDED]
        assert ended and all(s.replay_url and _aware(s.ends_at) <= NOW for s in ended)
        assert all(_aware(s.starts_at) > NOW for s in sessions
                   if s.status == SessionStatus.SCHEDULED)

        # 3,000 approved organizations with approved delegations; their credit codes hold.
        approved_orgs = _count(
            session, SummitDelegation,
            SummitDelegation.summit_id == summit.id,
            SummitDelegation.status == RegistrationStatus.APPROVED,
        )
        assert approved_orgs >= 3000
        assert _count(session, Organization) >= 3000
        for code in session.scalars(select(Organization.uscc)):
            uscc.validate(code)
        names = list(session.scalars(select(Organization.name)))
        assert len(set(names)) == len(names)
        unverified = session.scalars(
            select(Organization.status).join(
                SummitDelegation, SummitDelegation.organization_id == Organization.id)
            .where(SummitDelegation.status == RegistrationStatus.PENDING)
        ).all()
        assert unverified and set(unverified) == {OrgStatus.PENDING}
        approved_delegations_of_unverified = _count(
            session, SummitDelegation,
            SummitDelegation.status == RegistrationStatus.APPROVED,
            SummitDelegation.organization_id.in_(
                select(Organization.id).where(Organization.status != OrgStatus.APPROVED)),
        )
        assert approved_delegations_of_unverified == 0

        # Delegates: approved, with tickets, never more than their delegation's seats.
        regs = _count(session, SummitRegistration, SummitRegistration.summit_id == summit.id,
                      SummitRegistration.status == RegistrationStatus.APPROVED)
        assert regs >= 3000
        assert _count(session, SummitRegistration,
                      SummitRegistration.status == RegistrationStatus.APPROVED,
                      SummitRegistration.ticket_hash.is_(None)) == 0
        # ... and each ticket is the derived one, so its QR code checks in.
        some = session.scalars(
            select(SummitRegistration).where(
                SummitRegistration.status == RegistrationStatus.APPROVED
            ).order_by(SummitRegistration.id).limit(50)
        ).all()
        assert all(r.ticket_hash == token_hash(ticket_token(r)) for r in some)
        over = session.execute(
            select(SummitDelegation.id)
            .join(SummitRegistration, SummitRegistration.delegation_id == SummitDelegation.id)
            .group_by(SummitDelegation.id, SummitDelegation.seats)
            .having(func.count() > SummitDelegation.seats)
        ).all()
        assert over == []
        assert _count(session, SummitRegistration,
                      SummitRegistration.kind == RegistrationKind.AUDIENCE,
                      SummitRegistration.status == RegistrationStatus.APPROVED) >= 100
        assert _count(session, SummitRegistration,
                      SummitRegistration.status == RegistrationStatus.PENDING) >= 1

        # Attendance for the ended sessions; live interaction on the live keynote.
        for s in ended:
            assert _count(session, SummitAttendance, SummitAttendance.session_id == s.id) > 0
        keynote = live[0]
        assert _count(session, SummitChatMessage, SummitChatMessage.room == f"s{keynote.id}",
                      SummitChatMessage.status == ChatStatus.VISIBLE) >= 50
        assert _count(session, SummitChatMessage,
                      SummitChatMessage.status == ChatStatus.HELD) >= 1
        questions = list(session.scalars(select(SummitQuestion)
                                         .where(SummitQuestion.session_id == keynote.id)))
        approved_q = [q for q in questions if q.status == QuestionStatus.APPROVED]
        assert len(approved_q) >= 5 and any(q.upvotes > 0 for q in approved_q)
        assert sum(q.status == QuestionStatus.ANSWERING for q in questions) == 1
        assert any(q.status == QuestionStatus.PENDING for q in questions)
        for q in questions:
            assert q.upvotes == _count(session, SummitQuestionVote,
                                       SummitQuestionVote.question_id == q.id)
        poll = session.scalar(select(SummitPoll).where(SummitPoll.session_id == keynote.id,
                                                       SummitPoll.status == PollStatus.OPEN))
        assert poll is not None
        options = list(session.scalars(select(SummitPollOption)
                                       .where(SummitPollOption.poll_id == poll.id)))
        assert len(options) >= 2
        votes = _count(session, SummitPollVote, SummitPollVote.poll_id == poll.id)
        assert votes > 0 and sum(o.votes for o in options) == votes
        for option in options:
            assert option.votes == _count(session, SummitPollVote,
                                          SummitPollVote.option_id == option.id)

        # The host's staff account organizes (moderates) it; the demo donor may watch.
        host = accounts.authenticate(session=session, email=demo_summit.HOST_EMAIL,
                                     password=DEMO_PASSWORD)
        assert access.is_organizer(host, summit)
        donor = session.scalar(select(User).where(User.email == "donor@demo.shanju.org"))
        assert donor is not None and not access.is_organizer(donor, summit)
        assert access.approved_registration(session, summit_id=summit.id, user_id=donor.id)
        staff = session.scalar(select(User).where(User.email == "org@demo.shanju.org"))
        assert staff is not None
        assert access.approved_registration(session, summit_id=summit.id, user_id=staff.id)


def test_the_host_account_is_a_listed_demo_account() -> None:
    assert demo_summit.HOST_ACCOUNT in DEMO_ACCOUNTS
    assert demo_summit.HOST_ACCOUNT[1] == Role.ORG_STAFF


def test_seeding_twice_is_refused(db: Database, tmp_path: Path) -> None:
    with db.transaction() as session:
        seed(session, scale=0.02, now=NOW, summit_organizations=30, upload_dir=tmp_path)
    with db.transaction() as session:
        with pytest.raises(RuntimeError, match="already holds data"):
            seed(session, scale=0.02, now=NOW, summit_organizations=30, upload_dir=tmp_path)
        with pytest.raises(RuntimeError, match="already seeded"):
            demo_summit.seed_summit(session, now=NOW, organizations=30)
    with db.transaction(write=False) as session:
        assert _count(session, Summit) == 1


def test_a_summit_seeded_now_is_live_now(db: Database) -> None:
    now = utcnow()
    with db.transaction() as session:
        report = demo_summit.seed_summit(session, now=now, organizations=20)
    with db.transaction(write=False) as session:
        live = session.get(SummitSession, report.live_session_id)
        assert live is not None and live.status == SessionStatus.LIVE
        assert _aware(live.starts_at) <= utcnow() < _aware(live.ends_at)
        summit = session.get(Summit, report.summit_id)
        assert summit is not None
        local = now.astimezone(CHINA_TZ)
        if local.hour >= demo_summit.EARLY_HOURS:
            assert summit.starts_on == local.date()


@pytest.mark.parametrize("minutes", [0, 15, 4 * 60 + 59, 5 * 60, 7 * 60 + 3, 9 * 60,
                                     12 * 60 + 10, 15 * 60 + 40, 20 * 60, 22 * 60 + 30,
                                     23 * 60 + 55])
def test_the_timetable_fits_the_two_days_at_any_time_of_day(minutes: int) -> None:
    now = (dt.datetime(2026, 3, 14, tzinfo=CHINA_TZ)
           + dt.timedelta(minutes=minutes, seconds=17)).astimezone(dt.UTC)
    seeder = demo_summit._SummitSeeder(  # noqa: SLF001 - the timetable alone, no database
        None, random.Random(1), now, "", lambda _n: None)  # type: ignore[arg-type]
    planned = seeder.plan_timetable()
    first, second = demo_summit.summit_days(now)
    local = now.astimezone(CHINA_TZ)
    assert second == first + dt.timedelta(days=1)
    assert first == (local.date() if local.hour >= 5 else local.date() - dt.timedelta(days=1))
    by_status: dict[SessionStatus, int] = {}
    for p in planned:
        by_status[p.status] = by_status.get(p.status, 0) + 1
        assert first <= p.starts_at.astimezone(CHINA_TZ).date() <= second
        if p.status == SessionStatus.ENDED:
            assert p.ends_at <= now
        elif p.status == SessionStatus.LIVE:
            assert p.kind == SessionKind.KEYNOTE
            assert p.starts_at + dt.timedelta(minutes=29) <= now < p.ends_at
        else:
            assert p.starts_at > now
    assert by_status[SessionStatus.LIVE] == 1
    assert by_status[SessionStatus.ENDED] >= 3
    assert by_status[SessionStatus.SCHEDULED] >= 5
    # Both days have sessions, and parallel sessions never share a track at the same time.
    assert {p.starts_at.astimezone(CHINA_TZ).date() for p in planned} == {first, second}
    slots = {(p.starts_at, p.track) for p in planned if p.track}
    assert len(slots) == sum(1 for p in planned if p.track)


def test_the_committed_portraits_are_the_generated_ones() -> None:
    for i, (name, _title, _affiliation, _bio, style) in enumerate(summit_data.SPEAKERS):
        path = demo_summit.PHOTO_DIR / demo_summit.photo_file(i)
        assert path.read_text(encoding="utf-8") == demo_summit.speaker_svg(name, style), (
            "run `python -m shanju.demo.summit` to regenerate the portraits")
    assert len(list(demo_summit.PHOTO_DIR.glob("*.svg"))) == len(summit_data.SPEAKERS)


def test_the_session_specs_name_real_speakers_and_tracks() -> None:
    tracks = {name for name, _, _ in summit_data.TRACKS}
    slots = [*summit_data.BEFORE_LIVE, (summit_data.LIVE_KEYNOTE,), *summit_data.AFTER_LIVE,
             *summit_data.DAY_TWO]
    used: set[int] = set()
    for slot in slots:
        for spec in slot:
            assert spec[2] is None or spec[2] in tracks
            for index, role in spec[7]:
                assert 0 <= index < len(summit_data.SPEAKERS)
                assert role in ("speaker", "host", "panelist")
                used.add(index)
    assert used == set(range(len(summit_data.SPEAKERS))), "every speaker speaks"


def test_the_summit_seed_is_deterministic(tmp_path: Path) -> None:
    def snapshot(name: str) -> list[tuple[str, ...]]:
        database = Database(f"sqlite:///{tmp_path / name}")
        create_schema(database)
        with database.transaction() as session:
            demo_summit.seed_summit(session, now=NOW, organizations=40)
        with database.transaction(write=False) as session:
            orgs = session.execute(select(Organization.name, Organization.uscc)
                                   .order_by(Organization.id)).all()
            titles = session.execute(select(SummitSession.title, SummitSession.status)
                                     .order_by(SummitSession.id)).all()
        database.dispose()
        return [tuple(map(str, r)) for r in [*orgs, *titles]]

    assert snapshot("a.sqlite3") == snapshot("b.sqlite3")
