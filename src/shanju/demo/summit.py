"""The demo's online summit: "中国互联网公益峰会 · 云峰会", two days, live right now.

:func:`seed_summit` creates, in the caller's transaction and with bulk inserts only:

- the host organization and its staff account (:data:`HOST_EMAIL`, listed among the demo
  accounts), who organizes and moderates the summit;
- a published summit whose days are today and tomorrow (China time), with four tracks,
  34 speakers (portraits in ``static/summit/speakers/``), two keynotes, forums and three
  roundtables with breakout rooms. The timetable is laid around the current time: the second
  keynote is live now, the sessions before it have ended (with a replay), the rest are
  scheduled. Between midnight and 05:00 China time the summit's days are yesterday and today
  instead, so that there is still a morning of ended sessions before the live one;
- 3,000 registered organizations across the provinces (approved, with valid credit codes),
  each with an approved delegation of 1–5 delegates (one user account each, one shared
  password hash) holding e-tickets; the base demo's approved organizations register too;
  pending applications from organizations not yet verified, a few rejected ones, public
  audience registrations (among them the demo donor), attendance for the ended sessions;
- on the live keynote: chat (some held by the keyword filter), approved questions with
  upvotes, one being answered, a moderation queue, an open poll with votes, a draft poll;
  answered questions, chat and a closed poll on ended sessions; chat in breakout rooms.

Video: there is no video in an offline demo. Live sessions and replays point their
``player_url``/``replay_url`` at ``/static/summit/demo-player.html`` (a local page that says
it is a demo stand-in, with a running clock); breakout rooms link to
``https://meeting.example.invalid/…`` (a reserved, never-resolving name).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core import audit
from shanju.core.clock import CHINA_TZ
from shanju.core.security import hash_password, token_hash
from shanju.demo import data
from shanju.demo import summit_data as sd
from shanju.demo.crowd import CROWD_DOMAIN
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.summit.models import (
    ChatStatus,
    PollStatus,
    QuestionStatus,
    RegistrationKind,
    RegistrationStatus,
    SanctionKind,
    SessionKind,
    SessionStatus,
    Summit,
    SummitAgendaItem,
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
    SummitSanction,
    SummitSession,
    SummitSessionSpeaker,
    SummitSpeaker,
    SummitStatus,
    SummitTrack,
)
from shanju.summit.registration import ticket_token

HOST_EMAIL = sd.HOST_EMAIL
HOST_ACCOUNT: tuple[str, Role, str] = (sd.HOST_EMAIL, Role.ORG_STAFF, sd.HOST_STAFF_NAME)
ORGANIZATIONS = 3000
PENDING_APPLICATIONS = 40
REJECTED_APPLICATIONS = 4
AUDIENCE = 600
DELEGATION_SIZE = 5
PHOTO_DIR = Path(__file__).resolve().parents[1] / "static" / "summit" / "speakers"
PHOTO_URL = "/static/summit/speakers/{file}"
PLAYER_URL = "/static/summit/demo-player.html"
ROOM_VIDEO_URL = "https://meeting.example.invalid/demo/{summit}/{session}-{room}"
BREAK = dt.timedelta(minutes=15)
DAY_STARTS = dt.time(9, 0)
LATEST_END = dt.time(23, 30)
LUNCH = (dt.time(11, 30), dt.time(13, 30))  # a slot starting in between waits till its end
STREETS = ("人民路", "解放路", "建设路", "中山路", "文化路")
EARLY_HOURS = 5  # before 05:00 China time the summit's first day is yesterday

ProgressCallback = Callable[[int], None]


def summit_slug(first_day: dt.date) -> str:
    """The demo summit's slug, e.g. ``cics-2026``."""
    return f"cics-{first_day.year}"


def summit_days(now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The summit's two days (China dates) for a seed at ``now``."""
    local = now.astimezone(CHINA_TZ)
    first = local.date() - dt.timedelta(days=1 if local.hour < EARLY_HOURS else 0)
    return first, first + dt.timedelta(days=1)


@dataclass
class SummitSeedReport:
    """What :func:`seed_summit` created."""

    summit_id: int = 0
    slug: str = ""
    speakers: int = 0
    sessions: int = 0
    rooms: int = 0
    organizations: int = 0  # newly created for the summit (the base demo's come on top)
    delegations: int = 0
    registrations: int = 0
    users: int = 0
    attendance: int = 0
    live_session_id: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def seed_summit(
    session: Session,
    *,
    now: dt.datetime,
    rng: random.Random | None = None,
    organizations: int = ORGANIZATIONS,
    password_hash: str | None = None,
    progress: ProgressCallback | None = None,
) -> SummitSeedReport:
    """Create the demo summit in the caller's transaction (see the module docstring).

    Refuses (``RuntimeError``) if the demo's host account already exists: the summit is
    seeded once, like the rest of the demo.
    """
    if session.scalar(select(User.id).where(User.email == HOST_EMAIL)) is not None:
        raise RuntimeError("the demo summit is already seeded")
    if password_hash is None:
        from shanju.demo.seed import DEMO_PASSWORD

        password_hash = hash_password(DEMO_PASSWORD)
    seeder = _SummitSeeder(session, rng or random.Random(2020), now,  # noqa: S311 - demo data
                           password_hash, progress or (lambda _n: None))
    return seeder.run(organizations)


# --- portraits -----------------------------------------------------------------------------

_BACKGROUNDS = ("#dbe7f3", "#e8e1f5", "#f6e3d6", "#dff0e6", "#f3ead0", "#dcedf0",
                "#f4dfe4", "#e4e7ec", "#e9f0d8", "#f1e4d3")
_CLOTHES = ("#2f4858", "#33658a", "#5b4e77", "#3d6b4f", "#7a4e2d", "#44475a", "#8a3b4a",
            "#1f5f6b")
_SKIN = ("#f1c9a5", "#e8b98f", "#d9a57a", "#f3d2b3", "#c98e64")
_HAIR = ("#2b2523", "#3b2f2a", "#1d1d1f", "#4a3426")


def photo_file(index: int) -> str:
    """The file name of speaker ``index``'s portrait."""
    return f"speaker-{index + 1:02d}.svg"


def speaker_svg(name: str, style: str) -> str:
    """A simple, deterministic portrait: a silhouette on a coloured ground, the surname in a
    badge. ``style`` ("f"/"m") picks the hair."""
    digest = hashlib.sha256(name.encode()).digest()
    bg = _BACKGROUNDS[digest[0] % len(_BACKGROUNDS)]
    clothes = _CLOTHES[digest[1] % len(_CLOTHES)]
    skin = _SKIN[digest[2] % len(_SKIN)]
    hair = _HAIR[digest[3] % len(_HAIR)]
    variant = digest[4] % 2
    if style == "f":
        hair_back = ('<path d="M62 84 C60 48 80 36 100 36 C120 36 140 48 138 84 L142 136 '
                     'C128 142 72 142 58 136 Z"/>' if variant == 0 else
                     '<circle cx="100" cy="40" r="15"/>')
        hair_front = ('<path d="M66 82 C66 54 82 44 100 44 C118 44 134 54 134 82 '
                      'C120 66 94 60 66 82 Z"/>')
    else:
        hair_back = ""
        hair_front = ('<path d="M65 80 C63 52 80 40 100 40 C122 40 137 52 135 80 '
                      'C126 64 108 58 88 62 C78 64 70 70 65 80 Z"/>' if variant == 0 else
                      '<path d="M66 78 C64 50 84 42 102 42 C122 42 136 54 134 76 '
                      'C118 58 86 56 66 78 Z"/>')
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" '
        f'height="200" role="img" aria-label="{name}">\n'
        f'<rect width="200" height="200" fill="{bg}"/>\n'
        f'<g fill="{hair}">{hair_back}</g>\n'
        f'<path d="M28 200 C28 156 60 134 100 134 C140 134 172 156 172 200 Z" fill="{clothes}"/>\n'
        '<path d="M84 134 L100 160 L116 134 Z" fill="#ffffff" opacity="0.85"/>\n'
        f'<rect x="88" y="108" width="24" height="30" rx="9" fill="{skin}"/>\n'
        f'<ellipse cx="100" cy="84" rx="33" ry="37" fill="{skin}"/>\n'
        f'<g fill="{hair}">{hair_front}</g>\n'
        f'<circle cx="150" cy="150" r="21" fill="{clothes}" stroke="#ffffff" stroke-width="3"/>\n'
        '<text x="150" y="158" text-anchor="middle" font-size="21" fill="#ffffff" '
        'font-family="PingFang SC, Noto Sans CJK SC, Microsoft YaHei, sans-serif">'
        f'{name[0]}</text>\n'
        '</svg>\n'
    )


def write_photos(directory: Path = PHOTO_DIR) -> list[Path]:
    """(Re)write every speaker's portrait; the files are committed, this regenerates them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, _title, _aff, _bio, style) in enumerate(sd.SPEAKERS):
        path = directory / photo_file(i)
        path.write_text(speaker_svg(name, style), encoding="utf-8")
        paths.append(path)
    return paths


# --- the seeder ----------------------------------------------------------------------------


@dataclass
class _Planned:
    code: str
    kind: SessionKind
    track: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: SessionStatus
    spec: sd.SessionSpec
    position: int = 0
    id: int = 0
    room_ids: list[int] = field(default_factory=list)


@dataclass
class _Person:
    user_id: int
    organization_id: int | None
    delegation_index: int | None = None


class _SummitSeeder:
    def __init__(self, session: Session, rng: random.Random, now: dt.datetime,
                 password_hash: str, progress: ProgressCallback) -> None:
        self.session = session
        self.rng = rng
        self.now = now.astimezone(dt.UTC)
        self.password_hash = password_hash
        self.progress = progress
        self.report = SummitSeedReport()
        self.first_day, self.second_day = summit_days(now)
        self.slug = summit_slug(self.first_day)

    def ids(self, model: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
        return [int(v) for v in self.session.scalars(stmt, list(rows))]

    def bulk(self, model: Any, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(model), list(rows))

    def person_name(self) -> str:
        surname = self.rng.choice(data.SURNAMES)
        return surname + "".join(self.rng.choices(data.GIVEN_CHARS, k=self.rng.choice((1, 2, 2))))

    def local(self, day: dt.date, time: dt.time) -> dt.datetime:
        return dt.datetime.combine(day, time, CHINA_TZ).astimezone(dt.UTC)

    def run(self, n_orgs: int) -> SummitSeedReport:
        host_org_id, host_user_id = self.create_host()
        summit_id = self.create_summit(host_org_id, host_user_id)
        speaker_ids = self.create_speakers(summit_id)
        planned = self.create_sessions(summit_id, speaker_ids)
        people = self.create_registrations(summit_id, n_orgs, host_user_id)
        self.create_attendance(planned, people)
        self.create_interaction(summit_id, planned, host_user_id)
        audit.record(
            self.session, actor_id=host_user_id, action="demo.summit.seeded",
            object_type="summit", object_id=str(summit_id),
            data={"new": {"slug": self.slug, "sessions": self.report.sessions,
                          "organizations": self.report.organizations,
                          "registrations": self.report.registrations}},
        )
        self.session.flush()
        return self.report

    # host, summit, speakers -------------------------------------------------------------

    def create_host(self) -> tuple[int, int]:
        user_id = self.ids(User, [{
            "email": sd.HOST_EMAIL, "display_name": sd.HOST_STAFF_NAME,
            "password_hash": self.password_hash, "role": Role.ORG_STAFF, "province": "北京",
            "is_active": True, "created_at": self.now - dt.timedelta(days=400),
        }])[0]
        created = self.now - dt.timedelta(days=800)
        code = uscc.make("51110000MA009901")
        org_id = self.ids(Organization, [{
            "name": sd.HOST_ORG_NAME, "short_name": "善联公益", "uscc": code,
            "uscc_warning": None, "org_type": OrgType.SOCIAL_GROUP,
            "registering_authority": data.PROVINCE_AUTHORITY["北京"], "province": "北京",
            "city": "北京", "address": "北京市海淀区中关村大街1号（演示地址）",
            "contact_name": sd.HOST_STAFF_NAME, "contact_phone": "010-8888-2020",
            "contact_email": sd.HOST_EMAIL, "website": None,
            "description": "互联网公益行业的联合性社会团体，每年主办中国互联网公益峰会。"
                           "（演示机构）",
            "fundraising_cert_no": None, "fundraising_valid_from": None,
            "fundraising_valid_until": None, "status": OrgStatus.APPROVED,
            "review_note": None, "created_by_id": user_id, "created_at": created,
            "reviewed_at": created + dt.timedelta(days=2),
        }])[0]
        self.session.execute(update(User), [{"id": user_id, "organization_id": org_id}])
        self.report.users += 1
        return org_id, user_id

    def create_summit(self, host_org_id: int, host_user_id: int) -> int:
        year = self.first_day.year
        summit_id = self.ids(Summit, [{
            "slug": self.slug,
            "title": sd.SUMMIT_TITLE.format(year=year),
            "title_en": sd.SUMMIT_TITLE_EN.format(year=year),
            "tagline": sd.SUMMIT_TAGLINE, "description": sd.SUMMIT_DESCRIPTION,
            "host_organization_id": host_org_id,
            "starts_on": self.first_day, "ends_on": self.second_day,
            "status": SummitStatus.PUBLISHED, "capacity": 20000,
            "delegation_size": DELEGATION_SIZE,
            "registration_closes_at": self.local(self.second_day, dt.time(12, 0)),
            "moderation_keywords": "\n".join(sd.MODERATION_KEYWORDS),
            "created_by_id": host_user_id, "created_at": self.now - dt.timedelta(days=45),
        }])[0]
        self.report.summit_id, self.report.slug = summit_id, self.slug
        track_ids = self.ids(SummitTrack, [
            {"summit_id": summit_id, "name": name, "name_en": name_en, "color": color,
             "position": i}
            for i, (name, name_en, color) in enumerate(sd.TRACKS)
        ])
        self.track_ids = {name: tid for (name, _, _), tid in zip(sd.TRACKS, track_ids,
                                                               strict=True)}
        return summit_id

    def create_speakers(self, summit_id: int) -> list[int]:
        rows = [
            {"summit_id": summit_id, "name": name, "title": title, "affiliation": affiliation,
             "bio": bio, "photo_url": PHOTO_URL.format(file=photo_file(i)), "position": i}
            for i, (name, title, affiliation, bio, _style) in enumerate(sd.SPEAKERS)
        ]
        self.report.speakers = len(rows)
        return self.ids(SummitSpeaker, rows)

    # the timetable ----------------------------------------------------------------------

    def plan_timetable(self) -> list[_Planned]:
        """Lay the slots around now: the live keynote began 30–35 minutes ago."""
        local_now = self.now.astimezone(CHINA_TZ)
        floored = local_now.replace(minute=local_now.minute - local_now.minute % 5, second=0,
                                    microsecond=0)
        live_start = floored - dt.timedelta(minutes=30)
        planned: list[_Planned] = []

        def add(slot: Sequence[sd.SessionSpec], start: dt.datetime,
                status: SessionStatus) -> dt.datetime:
            end = start
            for spec in slot:
                ends = start + dt.timedelta(minutes=spec[3])
                planned.append(_Planned(
                    code=spec[0], kind=SessionKind(spec[1]), track=spec[2],
                    starts_at=start.astimezone(dt.UTC), ends_at=ends.astimezone(dt.UTC),
                    status=status, spec=spec))
                end = max(end, ends)
            return end

        # Before the live keynote, backwards; all of it has ended.
        start = live_start
        for slot in reversed(sd.BEFORE_LIVE):
            minutes = max(spec[3] for spec in slot)
            start = start - BREAK - dt.timedelta(minutes=minutes)
            add(slot, start, SessionStatus.ENDED)
        live_end = add((sd.LIVE_KEYNOTE,), live_start, SessionStatus.LIVE)
        # After it: the rest of its day if it fits, then the next morning's programme.
        latest = dt.datetime.combine(live_start.date(), LATEST_END, CHINA_TZ)
        cursor = live_end + BREAK
        later: list[tuple[sd.SessionSpec, ...]] = list(sd.AFTER_LIVE)
        while later:
            minutes = max(spec[3] for spec in later[0])
            if cursor + dt.timedelta(minutes=minutes) > latest:
                break
            cursor = add(later.pop(0), cursor, SessionStatus.SCHEDULED) + BREAK
        morning = dt.datetime.combine(self.second_day, DAY_STARTS, CHINA_TZ)
        cursor = max(cursor, morning)
        for slot in [*later, *sd.DAY_TWO]:
            local_cursor = cursor.astimezone(CHINA_TZ)
            if LUNCH[0] <= local_cursor.time() < LUNCH[1]:
                cursor = dt.datetime.combine(local_cursor.date(), dt.time(13, 30), CHINA_TZ)
            cursor = add(slot, cursor, SessionStatus.SCHEDULED) + BREAK
        planned.sort(key=lambda p: (p.starts_at, p.code))
        for i, p in enumerate(planned):
            p.position = i
        return planned

    def create_sessions(self, summit_id: int, speaker_ids: list[int]) -> list[_Planned]:
        planned = self.plan_timetable()
        rows = []
        for p in planned:
            code, _kind, _track, _minutes, title, title_en, description, _sp, _rooms = p.spec
            player = replay = None
            if p.status == SessionStatus.LIVE:
                player = f"{PLAYER_URL}?" + urllib.parse.urlencode({"title": title})
            elif p.status == SessionStatus.ENDED:
                replay = f"{PLAYER_URL}?" + urllib.parse.urlencode(
                    {"title": title, "replay": "1"})
            rows.append({
                "summit_id": summit_id,
                "track_id": self.track_ids[p.track] if p.track else None,
                "kind": p.kind, "title": title, "title_en": title_en,
                "description": description, "starts_at": p.starts_at, "ends_at": p.ends_at,
                "status": p.status, "capacity": None, "stream_url": None,
                "player_url": player, "replay_url": replay,
                "chat_premoderated": False, "chat_paused": False, "slow_mode_seconds": 0,
                "position": p.position,
            })
        for p, sid in zip(planned, self.ids(SummitSession, rows), strict=True):
            p.id = sid
        speakers, rooms, room_of = [], [], []
        for p in planned:
            for k, (index, role) in enumerate(p.spec[7]):
                speakers.append({"session_id": p.id, "speaker_id": speaker_ids[index],
                                 "role": role, "position": k})
            for k, (name, topic) in enumerate(p.spec[8]):
                rooms.append({
                    "session_id": p.id, "name": name, "topic": topic,
                    "video_url": ROOM_VIDEO_URL.format(summit=self.slug, session=p.code,
                                                       room=k + 1),
                    "capacity": 12, "position": k,
                })
                room_of.append(p)
        self.bulk(SummitSessionSpeaker, speakers)
        for p, rid in zip(room_of, self.ids(SummitRoom, rooms), strict=True):
            p.room_ids.append(rid)
        self.report.sessions = len(planned)
        self.report.rooms = len(rooms)
        self.report.by_kind = {k.value: sum(1 for p in planned if p.kind == k)
                               for k in SessionKind}
        self.report.live_session_id = next(p.id for p in planned
                                           if p.status == SessionStatus.LIVE)
        return planned

    # organizations, delegations, people -------------------------------------------------

    def org_rows(self, count: int, *, offset: int, pending: bool) -> list[dict[str, Any]]:
        rng = self.rng
        provinces = [p[0] for p in data.PROVINCES]
        weights = [p[3] for p in data.PROVINCES]
        type_digit = {"social_group": "1", "social_service": "2", "foundation": "3"}
        rows: list[dict[str, Any]] = []
        for i in range(offset, offset + count):
            province = rng.choices(provinces, weights)[0]
            city = rng.choice(sd.PROVINCE_CITIES[province])
            while True:
                kind, pattern = rng.choice(sd.ORG_PATTERNS)
                name = pattern.format(p=province, c=city, k=rng.choice(sd.ORG_THEMES),
                                      f=rng.choice(sd.ORG_FIELDS))
                if name not in self.org_names:
                    self.org_names.add(name)
                    break
            division = data.PROVINCE_CODES[province][:2] + "0100"
            code = uscc.make(f"5{type_digit[kind]}{division}MJ{i:06d}")
            created = self.now - dt.timedelta(days=rng.randint(3, 40) if pending
                                              else rng.randint(60, 3000))
            qualified = not pending and rng.random() < 0.08
            valid_from = (self.now - dt.timedelta(days=rng.randint(100, 1200))).date()
            rows.append({
                "name": name, "short_name": None, "uscc": code, "uscc_warning": None,
                "org_type": OrgType(kind),
                "registering_authority": data.PROVINCE_AUTHORITY[province],
                "province": province, "city": city,
                "address": f"{city}市{rng.choice(STREETS)}{rng.randint(1, 400)}号",
                "contact_name": None,
                "contact_phone": f"0{rng.randint(10, 999)}-{rng.randint(1000000, 9999999)}",
                "contact_email": f"contact-s{i:04d}@demo.shanju.org", "website": None,
                "description": f"{name}在{data.PROVINCE_AUTHORITY[province]}登记，"
                               "扎根本地开展公益服务，项目与财务信息定期公开。",
                "fundraising_cert_no": code if qualified else None,
                "fundraising_valid_from": valid_from if qualified else None,
                "fundraising_valid_until": (valid_from + dt.timedelta(days=5 * 365)
                                            if qualified else None),
                "status": OrgStatus.PENDING if pending else OrgStatus.APPROVED,
                "review_note": None, "created_by_id": None, "created_at": created,
                "reviewed_at": None if pending else created + dt.timedelta(days=3),
            })
        return rows

    def create_registrations(self, summit_id: int, n_orgs: int,
                             host_user_id: int) -> list[_Person]:
        rng = self.rng
        self.org_names = set(self.session.scalars(select(Organization.name)))
        opened = self.now - dt.timedelta(days=30)
        n_pending = min(PENDING_APPLICATIONS, max(2, n_orgs // 50))
        n_rejected = min(REJECTED_APPLICATIONS, max(1, n_orgs // 500))
        approved_rows = self.org_rows(n_orgs, offset=0, pending=False)
        waiting_rows = self.org_rows(n_pending + n_rejected, offset=n_orgs, pending=True)
        org_ids = self.ids(Organization, approved_rows + waiting_rows)
        self.report.organizations = len(org_ids)
        # In units of the organizations asked for (the waiting ones ride along): the progress
        # bar of the seed counts those.
        self.progress(n_orgs // 2)

        # Who goes: (organization id, province, people, delegation status, note).
        delegations: list[tuple[int, str, int, RegistrationStatus, str]] = []
        for oid, row in zip(org_ids[:n_orgs], approved_rows, strict=True):
            size = rng.choices((1, 2, 3, 4, 5), (30, 30, 20, 12, 8))[0]
            delegations.append((oid, row["province"], size, RegistrationStatus.APPROVED, ""))
        for k, (oid, row) in enumerate(zip(org_ids[n_orgs:], waiting_rows, strict=True)):
            status = RegistrationStatus.REJECTED if k < n_rejected else RegistrationStatus.PENDING
            delegations.append((oid, row["province"], rng.randint(1, 3), status,
                                rng.choice(sd.DELEGATION_NOTES)))
        # The base demo's approved organizations send their staff member (org@… among them;
        # not the giving-day crowd's simulated staff).
        base = [(int(uid), int(oid), str(province)) for uid, oid, province in self.session.execute(
            select(User.id, Organization.id, Organization.province)
            .join(Organization, Organization.id == User.organization_id)
            .where(Organization.status == OrgStatus.APPROVED, User.role == Role.ORG_STAFF,
                   User.email != sd.HOST_EMAIL, User.email.not_like(f"%@{CROWD_DOMAIN}"))
            .order_by(User.id)
        )]

        users: list[dict[str, Any]] = []
        owner: list[int] = []  # per new user: index into delegations
        for d, (oid, province, size, _status, _note) in enumerate(delegations):
            for k in range(size):
                users.append({
                    "email": f"cics{d:04d}-{k + 1}@demo.shanju.org",
                    "display_name": self.person_name(), "password_hash": self.password_hash,
                    "role": Role.ORG_STAFF, "organization_id": oid, "province": province,
                    "is_active": True, "created_at": opened - dt.timedelta(days=rng.randint(
                        1, 600)),
                })
                owner.append(d)
        audience_rows = [{
            "email": f"audience{j:04d}@demo.shanju.org", "display_name": self.person_name(),
            "password_hash": self.password_hash, "role": Role.DONOR, "organization_id": None,
            "province": rng.choice(list(sd.PROVINCE_CITIES)), "is_active": True,
            "created_at": opened - dt.timedelta(days=rng.randint(1, 600)),
        } for j in range(1, AUDIENCE)]
        user_ids = self.ids(User, users + audience_rows)
        delegate_ids, audience_ids = user_ids[:len(users)], user_ids[len(users):]
        self.report.users += len(user_ids)

        first_member: dict[int, int] = {}
        for uid, d in zip(delegate_ids, owner, strict=True):
            first_member.setdefault(d, uid)
        delegation_rows = []
        created_at: list[dt.datetime] = []
        for d, (oid, _province, size, status, note) in enumerate(delegations):
            at = opened + dt.timedelta(seconds=rng.randint(0, 29 * 86400))
            created_at.append(at)
            decided = status in (RegistrationStatus.APPROVED, RegistrationStatus.REJECTED)
            delegation_rows.append({
                "summit_id": summit_id, "organization_id": oid, "status": status,
                "seats": size, "note": note, "registered_by_id": first_member[d],
                "decided_by_id": host_user_id if status == RegistrationStatus.REJECTED else None,
                "decided_at": (at + dt.timedelta(days=1) if status == RegistrationStatus.REJECTED
                               else at if decided else None),
                "decision_note": ("机构尚未完成平台认证，请认证后重新申请。"
                                  if status == RegistrationStatus.REJECTED else None),
                "created_at": at,
            })
        base_offset = len(delegation_rows)
        for k, (uid, oid, _province) in enumerate(base):
            at = opened + dt.timedelta(days=2, minutes=k)
            created_at.append(at)
            delegation_rows.append({
                "summit_id": summit_id, "organization_id": oid,
                "status": RegistrationStatus.APPROVED, "seats": 1, "note": "",
                "registered_by_id": uid, "decided_by_id": None, "decided_at": at,
                "decision_note": None, "created_at": at,
            })
        delegation_ids = self.ids(SummitDelegation, delegation_rows)
        self.report.delegations = len(delegation_ids)

        registrations: list[dict[str, Any]] = []
        people: list[_Person] = []

        def register(uid: int, kind: RegistrationKind, status: RegistrationStatus,
                     at: dt.datetime, delegation: int | None, oid: int | None) -> None:
            approved = status == RegistrationStatus.APPROVED
            registrations.append({
                "summit_id": summit_id, "user_id": uid, "kind": kind,
                "delegation_id": None if delegation is None else delegation_ids[delegation],
                "organization_id": oid, "status": status,
                "ticket_hash": None,  # derived below, once the row has its id
                "checked_in_at": None,
                "decided_by_id": host_user_id if status == RegistrationStatus.REJECTED
                else None,
                "decided_at": at if status != RegistrationStatus.PENDING else None,
                "created_at": at,
            })
            if approved:
                people.append(_Person(uid, oid, delegation))

        for uid, d in zip(delegate_ids, owner, strict=True):
            oid, _province, _size, status, _note = delegations[d]
            register(uid, RegistrationKind.DELEGATE, status, created_at[d], d, oid)
        for k, (uid, oid, _province) in enumerate(base):
            register(uid, RegistrationKind.DELEGATE, RegistrationStatus.APPROVED,
                     created_at[base_offset + k], base_offset + k, oid)
        demo_donor = self.session.scalar(
            select(User.id).where(User.email == "donor@demo.shanju.org"))
        listeners = ([demo_donor] if demo_donor is not None else []) + audience_ids
        for j, uid in enumerate(listeners):
            status = (RegistrationStatus.CANCELLED if j % 97 == 50
                      else RegistrationStatus.APPROVED)
            at = opened + dt.timedelta(seconds=rng.randint(0, 29 * 86400))
            register(uid, RegistrationKind.AUDIENCE, status, at, None, None)
        registration_ids = self.ids(SummitRegistration, registrations)
        # The e-tickets are derived from the id and creation time (see summit/registration.py),
        # so every seeded ticket page shows a QR code that checks in.
        tickets = [
            {"id": rid, "ticket_hash": token_hash(ticket_token(
                SummitRegistration(id=rid, created_at=row["created_at"])))}
            for rid, row in zip(registration_ids, registrations, strict=True)
            if row["status"] == RegistrationStatus.APPROVED
        ]
        if tickets:
            self.session.execute(update(SummitRegistration), tickets)
        self.report.registrations = len(registrations)
        self.progress(n_orgs - n_orgs // 2)
        self.demo_donor_id = demo_donor
        return people

    # attendance and live interaction ----------------------------------------------------

    def create_attendance(self, planned: list[_Planned], people: list[_Person]) -> None:
        rng = self.rng
        rows = []
        self.attended: dict[int, list[_Person]] = {}
        for p in planned:
            if p.status == SessionStatus.SCHEDULED:
                continue
            share = {SessionKind.KEYNOTE: 0.5, SessionKind.FORUM: 0.18,
                     SessionKind.ROUNDTABLE: 0.12}[p.kind]
            ends = min(p.ends_at, self.now)
            length = int((ends - p.starts_at).total_seconds())
            crowd = rng.sample(people, min(len(people), max(3, round(len(people) * share))))
            self.attended[p.id] = crowd
            if p.status == SessionStatus.LIVE:
                continue  # the live hub records the live session's attendance
            for person in crowd:
                joined = rng.randint(0, max(1, length // 4))
                stayed = rng.randint(max(60, length // 5), max(61, length - joined))
                first = p.starts_at + dt.timedelta(seconds=joined)
                last = min(first + dt.timedelta(seconds=stayed), ends)
                rows.append({
                    "session_id": p.id, "user_id": person.user_id,
                    "organization_id": person.organization_id, "first_seen_at": first,
                    "last_seen_at": last, "seconds": int((last - first).total_seconds()),
                })
        self.bulk(SummitAttendance, rows)
        self.report.attendance = len(rows)

    def moment(self, p: _Planned) -> dt.datetime:
        ends = min(p.ends_at, self.now - dt.timedelta(seconds=5))
        span = max(1, int((ends - p.starts_at).total_seconds()))
        return p.starts_at + dt.timedelta(seconds=self.rng.randint(0, span))

    def create_interaction(self, summit_id: int, planned: list[_Planned],
                           host_user_id: int) -> None:
        rng = self.rng
        live = next(p for p in planned if p.status == SessionStatus.LIVE)
        ended = [p for p in planned if p.status == SessionStatus.ENDED]
        chat: list[dict[str, Any]] = []

        def say(p: _Planned, room: str, who: _Person, body: str,
                status: ChatStatus = ChatStatus.VISIBLE) -> None:
            at = self.moment(p)
            moderated = status in (ChatStatus.REJECTED, ChatStatus.DELETED)
            chat.append({
                "room": room, "session_id": p.id, "user_id": who.user_id, "body": body,
                "status": status, "moderated_by_id": host_user_id if moderated else None,
                "moderated_at": min(at + dt.timedelta(seconds=40), self.now)
                if moderated else None,
                "created_at": at,
            })

        crowd = self.attended[live.id]
        for _ in range(120):
            say(live, f"s{live.id}", rng.choice(crowd), rng.choice(sd.CHAT_LINES))
        say(live, f"s{live.id}", rng.choice(crowd), sd.HELD_CHAT_LINES[0], ChatStatus.HELD)
        say(live, f"s{live.id}", rng.choice(crowd), sd.HELD_CHAT_LINES[1], ChatStatus.REJECTED)
        say(live, f"s{live.id}", rng.choice(crowd), "广告：点击链接领取红包", ChatStatus.DELETED)
        for p in ended:
            for _ in range(25):
                say(p, f"s{p.id}", rng.choice(self.attended[p.id]), rng.choice(sd.CHAT_LINES))
            for rid in p.room_ids:
                for _ in range(8):
                    say(p, f"r{rid}", rng.choice(self.attended[p.id]),
                        rng.choice(sd.CHAT_LINES))
        chat.sort(key=lambda row: row["created_at"])
        self.bulk(SummitChatMessage, chat)

        # Questions: on the live keynote a full board; on ended sessions, answered ones.
        questions: list[dict[str, Any]] = []
        texts = list(sd.QUESTIONS)
        rng.shuffle(texts)
        live_states = ([QuestionStatus.ANSWERED] * 2 + [QuestionStatus.ANSWERING]
                       + [QuestionStatus.APPROVED] * 8 + [QuestionStatus.PENDING] * 3
                       + [QuestionStatus.REJECTED])
        for text, status in zip(texts, live_states, strict=False):
            asker = rng.choice(crowd)
            at = self.moment(live)
            questions.append({
                "session_id": live.id, "user_id": asker.user_id, "body": text,
                "status": status, "upvotes": 0,
                "moderated_by_id": None if status == QuestionStatus.PENDING else host_user_id,
                "answered_at": (min(at + dt.timedelta(minutes=8), self.now)
                                if status == QuestionStatus.ANSWERED else None),
                "created_at": at,
            })
        for p in ended:
            for text in rng.sample(sd.QUESTIONS, 3):
                at = self.moment(p)
                questions.append({
                    "session_id": p.id, "user_id": rng.choice(self.attended[p.id]).user_id,
                    "body": text, "status": QuestionStatus.ANSWERED, "upvotes": 0,
                    "moderated_by_id": host_user_id,
                    "answered_at": min(at + dt.timedelta(minutes=5), p.ends_at),
                    "created_at": at,
                })
        question_ids = self.ids(SummitQuestion, questions)
        votes: list[dict[str, Any]] = []
        upvotes: list[dict[str, Any]] = []
        for qid, q in zip(question_ids, questions, strict=True):
            if q["status"] in (QuestionStatus.PENDING, QuestionStatus.REJECTED):
                continue
            pool = self.attended[q["session_id"]]
            n = min(len(pool), int(rng.paretovariate(1.2) * 6))
            voters = rng.sample(pool, n)
            for voter in voters:
                votes.append({"question_id": qid, "user_id": voter.user_id,
                              "created_at": min(q["created_at"] + dt.timedelta(
                                  seconds=rng.randint(5, 900)), self.now)})
            upvotes.append({"id": qid, "upvotes": len(voters)})
        self.bulk(SummitQuestionVote, votes)
        if upvotes:
            self.session.execute(update(SummitQuestion), upvotes)

        # Polls: open on the live keynote (with votes), a draft ready there, a closed one.
        polls = [(live, sd.POLL_QUESTION, sd.POLL_OPTIONS, PollStatus.OPEN, 0.45),
                 (live, sd.DRAFT_POLL_QUESTION, sd.DRAFT_POLL_OPTIONS, PollStatus.DRAFT, 0.0)]
        roundtable = next((p for p in ended if p.kind == SessionKind.ROUNDTABLE), None)
        if roundtable is not None:
            polls.append((roundtable, sd.CLOSED_POLL_QUESTION, sd.CLOSED_POLL_OPTIONS,
                          PollStatus.CLOSED, 0.5))
        for p, question, options, poll_status, turnout in polls:
            opened = None if poll_status == PollStatus.DRAFT else self.moment(p)
            poll_id = self.ids(SummitPoll, [{
                "session_id": p.id, "question": question, "status": poll_status,
                "created_by_id": host_user_id, "opened_at": opened,
                "closed_at": (min(p.ends_at, self.now) if poll_status == PollStatus.CLOSED
                              else None),
                "created_at": p.starts_at - dt.timedelta(days=1),
            }])[0]
            weights = [rng.uniform(0.5, 3.0) for _ in options]
            voters = rng.sample(self.attended[p.id],
                                round(len(self.attended[p.id]) * turnout))
            chosen = rng.choices(range(len(options)), weights, k=len(voters))
            counts = [chosen.count(k) for k in range(len(options))]
            option_ids = self.ids(SummitPollOption, [
                {"poll_id": poll_id, "label": label, "position": k, "votes": counts[k]}
                for k, label in enumerate(options)
            ])
            assert opened is not None or not voters  # noqa: S101 - drafts have no votes
            self.bulk(SummitPollVote, [
                {"poll_id": poll_id, "user_id": voter.user_id, "option_id": option_ids[k],
                 "created_at": min(opened + dt.timedelta(seconds=rng.randint(3, 600)),
                                   self.now) if opened else self.now}
                for voter, k in zip(voters, chosen, strict=True)
            ])

        # One muted attendee on the live keynote (the one whose message was deleted).
        self.bulk(SummitSanction, [{
            "summit_id": summit_id,
            "user_id": next(r["user_id"] for r in chat if r["status"] == ChatStatus.DELETED),
            "kind": SanctionKind.MUTE, "session_id": live.id,
            "until": self.now + dt.timedelta(minutes=30), "reason": "发布广告",
            "created_by_id": host_user_id, "created_at": self.now - dt.timedelta(minutes=2),
            "lifted_at": None,
        }])
        # The demo donor's agenda: the live keynote and two sessions still to come.
        if self.demo_donor_id is not None:
            upcoming = [p for p in planned if p.status == SessionStatus.SCHEDULED][:2]
            self.bulk(SummitAgendaItem, [
                {"user_id": self.demo_donor_id, "session_id": p.id,
                 "created_at": self.now - dt.timedelta(days=1)}
                for p in [live, *upcoming]
            ])


if __name__ == "__main__":  # pragma: no cover - regenerates the committed portraits
    for written in write_photos():
        print(written)  # noqa: T201
