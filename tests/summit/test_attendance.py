"""Attendance: heartbeats summed per session and person; aggregates; CSV and Excel exports
read back; who may export what."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import openpyxl
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import Database
from shanju.summit import attendance
from shanju.summit.attendance import Beat, record_heartbeats
from shanju.summit.models import SummitAttendance
from tests.accounts.helpers import login
from tests.factories import make_user
from tests.summit.reg_helpers import make_reviewer, make_session, make_staff, make_summit

T0 = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)  # 09:00 in China


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_record_heartbeats_sums_per_session_and_person(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        keynote = make_session(s, summit=summit)
        forum = make_session(s, summit=summit, title="分论坛", hours_from_now=2)
        staff = make_staff(s)
        donor = make_user(s)
        ids = (keynote.id, forum.id, staff.id, donor.id, staff.organization_id)
    k, f, u, d, org = ids
    with db.transaction() as s:
        record_heartbeats(s, [
            Beat(k, u, org, at(30), 30), Beat(k, u, None, at(60), 30),  # same key: summed
            Beat(k, d, None, at(30), 30), Beat(f, u, org, at(30), 15),
        ])
    with db.transaction() as s:
        record_heartbeats(s, [Beat(k, u, org, at(90), 30), Beat(k, d, None, at(45), 5)])
        record_heartbeats(s, [])
    with db.transaction(write=False) as s:
        rows = {(r.session_id, r.user_id): r for r in s.scalars(select(SummitAttendance))}
        assert len(rows) == 3
        mine = rows[(k, u)]
        assert (mine.seconds, mine.organization_id) == (90, org)
        assert mine.first_seen_at == at(0) and mine.last_seen_at == at(90)
        assert rows[(k, d)].seconds == 35 and rows[(k, d)].organization_id is None
        assert rows[(f, u)].seconds == 15


def test_aggregates(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        keynote = make_session(s, summit=summit)
        forum = make_session(s, summit=summit, title="分论坛", hours_from_now=2)
        empty = make_session(s, summit=summit, title="圆桌", hours_from_now=4)
        a = make_staff(s, org_name="甲基金会")
        a2 = make_staff(s, org=_org(s, a))
        b = make_staff(s, org_name="乙协会")
        donor = make_user(s)
        other = make_summit(s)
        elsewhere = make_session(s, summit=other)
        record_heartbeats(s, [
            Beat(keynote.id, a.id, a.organization_id, at(600), 600),
            Beat(keynote.id, a2.id, a.organization_id, at(300), 300),
            Beat(forum.id, a.id, a.organization_id, at(1200), 1200),
            Beat(keynote.id, b.id, b.organization_id, at(60), 60),
            Beat(keynote.id, donor.id, None, at(120), 120),
            Beat(elsewhere.id, donor.id, None, at(999), 999),
        ])
        sessions = attendance.session_totals(s, summit_id=summit.id)
        assert [(x.title, x.people, x.seconds) for x in sessions] == [
            ("主论坛:科技向善", 4, 1080), ("分论坛", 1, 1200), ("圆桌", 0, 0)]
        assert empty.id == sessions[2].session_id
        only_b = attendance.session_totals(s, summit_id=summit.id,
                                           organization_id=b.organization_id)
        assert [(x.people, x.seconds) for x in only_b] == [(1, 60), (0, 0), (0, 0)]
        orgs = attendance.organization_totals(s, summit_id=summit.id)
        assert [(o.name, o.people, o.seconds) for o in orgs] == [
            ("甲基金会", 2, 2100), ("", 1, 120), ("乙协会", 1, 60)]
        assert orgs[1].organization_id is None
        assert attendance.minutes(29) == 0 and attendance.minutes(30) == 1
        assert [p.title for p in attendance.person_sessions(
            s, summit_id=summit.id, user_id=a.id)] == ["主论坛:科技向善", "分论坛"]


def _org(s: Any, staff: Any) -> Any:
    from shanju.organizations.models import Organization

    return s.get(Organization, staff.organization_id)


def _world(db: Database) -> dict[str, Any]:
    with db.transaction() as s:
        summit = make_summit(s)
        keynote = make_session(s, summit=summit)
        a = make_staff(s, org_name="甲基金会", name="王小明")
        b = make_staff(s, org_name="=乙协会", name="张三")  # a name that looks like a formula
        record_heartbeats(s, [
            Beat(keynote.id, a.id, a.organization_id, at(600), 600),
            Beat(keynote.id, b.id, b.organization_id, at(90), 90),
        ])
        return {"slug": summit.slug, "organizer": make_reviewer(s).email, "a": a.email,
                "a_org": a.organization_id, "b_org": b.organization_id,
                "uscc": _org(s, a).uscc, "donor": make_user(s).email}


def test_organizers_export_csv_and_excel_with_full_names(client: TestClient,
                                                        db: Database) -> None:
    w = _world(db)
    login(client, w["organizer"])
    base = f"/api/v1/summits/{w['slug']}/attendance/export"
    r = client.get(f"{base}?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert list(rows[0]) == list(attendance.EXPORT_COLUMNS)
    by_person = {row["person"]: row for row in rows}
    assert set(by_person) == {"王小明", "张三"}
    mine = by_person["王小明"]
    assert (mine["organization"], mine["uscc"], mine["session"], mine["minutes"],
            mine["seconds"]) == ("甲基金会", w["uscc"], "主论坛:科技向善", "10", "600")
    assert mine["first_seen"] == T0.astimezone(CHINA_TZ).isoformat(timespec="seconds")
    assert mine["last_seen"] == "2026-11-30T09:10:00+08:00"
    assert by_person["张三"]["organization"] == "'=乙协会"  # never a formula

    r = client.get(f"{base}?format=xlsx&organization_id={w['a_org']}")
    assert r.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    sheet = book["attendance"]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    book.close()
    assert values[0] == list(attendance.EXPORT_COLUMNS)
    assert values[1:] == [["甲基金会", w["uscc"], "王小明", "主论坛:科技向善", 10, 600,
                           "2026-11-30T09:00:00+08:00", "2026-11-30T09:10:00+08:00"]]
    r = client.get(f"{base}?format=pdf")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_format"

    page = client.get(f"/summits/{w['slug']}/attendance")
    assert page.status_code == 200 and "甲基金会" in page.text and "width: 100%" in page.text
    data = client.get(f"/api/v1/summits/{w['slug']}/attendance").json()
    assert [(o["name"], o["minutes"]) for o in data["organizations"]] == [
        ("甲基金会", 10), ("=乙协会", 2)]


def test_staff_export_their_own_organization_masked(client: TestClient, db: Database) -> None:
    w = _world(db)
    login(client, w["a"])
    base = f"/api/v1/summits/{w['slug']}/attendance/export"
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"{base}?format=csv").content.decode("utf-8-sig"))))
    assert [(r["organization"], r["person"]) for r in rows] == [("甲基金会", "王**")]
    r = client.get(f"{base}?format=csv&organization_id={w['b_org']}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "own_organization_only"
    page = client.get(f"/summits/{w['slug']}/attendance").text
    assert "甲基金会" in page and "乙协会" not in page

    client.cookies.clear()
    login(client, w["donor"])
    r = client.get(f"{base}?format=csv")
    assert r.status_code == 403 and r.json()["error"]["code"] == "organizer_only"


def test_times_are_aware(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        keynote = make_session(s, summit=summit)
        user = make_user(s)
        now = utcnow()
        record_heartbeats(s, [Beat(keynote.id, user.id, None, now, 30)])
    with db.transaction(write=False) as s:
        row = next(attendance.attendance_rows(s, summit_id=summit.id))
        assert row.last_seen_at == now and row.last_seen_at.tzinfo is not None
