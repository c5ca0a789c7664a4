"""Goals that mean something (issue 14): 已筹满 once a goal is reached, what the organization
chose then (keep taking gifts with a warning, stop, or a stretch goal), donors told before they
pay — on the pages and in the API — and the countdown of a fundraising period."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from shanju.core.clock import CHINA_TZ, time_left, today_cn, utcnow
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.i18n import gettext
from shanju.organizations.models import Organization
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.projects.goals import GoalState
from shanju.projects.models import GoalPolicy, Project, ProjectStatus
from tests.factories import make_campaign, make_org, make_project
from tests.projects.helpers import api_token, audit_count, paid_donation, sign_in, staff_of

S = ProjectStatus


def zh(message: str) -> str:
    return gettext("zh_CN", message)


def _project(goal_fen: int, policy: GoalPolicy = GoalPolicy.CONTINUE,
             stretch: int | None = None) -> Project:
    return Project(goal_fen=goal_fen, goal_policy=policy, stretch_goal_fen=stretch)


@pytest.mark.parametrize(("policy", "stretch", "raised", "state", "target"), [
    (GoalPolicy.CONTINUE, None, 9_999, GoalState.OPEN, 10_000),
    (GoalPolicy.CONTINUE, None, 10_000, GoalState.REACHED, 10_000),
    (GoalPolicy.CONTINUE, None, 177_500, GoalState.REACHED, 10_000),
    (GoalPolicy.STOP, None, 9_999, GoalState.OPEN, 10_000),
    (GoalPolicy.STOP, None, 10_000, GoalState.CLOSED, 10_000),
    (GoalPolicy.STRETCH, 30_000, 9_999, GoalState.OPEN, 10_000),
    (GoalPolicy.STRETCH, 30_000, 10_000, GoalState.STRETCH, 30_000),
    (GoalPolicy.STRETCH, 30_000, 29_999, GoalState.STRETCH, 30_000),
    (GoalPolicy.STRETCH, 30_000, 30_000, GoalState.CLOSED, 30_000),
    (GoalPolicy.STRETCH, None, 10_000, GoalState.CLOSED, 10_000),
])
def test_the_goal_state_follows_what_was_raised_and_the_policy(
        policy: GoalPolicy, stretch: int | None, raised: int, state: GoalState,
        target: int) -> None:
    goal = goals.goal_of(_project(10_000, policy, stretch), raised)
    assert (goal.state, goal.target_fen, goal.original_fen) == (state, target, 10_000)
    assert goal.reached is (raised >= 10_000)
    assert goal.accepting is (state is not GoalState.CLOSED)
    assert goal.needs_confirmation is (state in (GoalState.REACHED, GoalState.STRETCH))
    assert 0 <= goal.percent <= 100


def test_percent_of_the_original_goal_is_not_capped() -> None:
    goal = goals.goal_of(_project(10_000), 177_500)
    assert goal.percent_of_original == 1775 and goal.percent == 100


# --- the API -------------------------------------------------------------------------------


def _past_goal(db: Database, policy: GoalPolicy = GoalPolicy.CONTINUE,
               stretch: int | None = None) -> tuple[int, int]:
    """A fundraising project with a ¥100 goal and ¥150 raised: (project id, org id)."""
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, goal_fen=10_000)
        project.goal_policy = policy
        project.stretch_goal_fen = stretch
        paid_donation(s, project, amount_fen=15_000)
        return project.id, org.id


def _give(client: TestClient, headers: dict[str, str], project_id: int, key: str,
          **extra: object) -> tuple[int, dict[str, object]]:
    answer = client.post("/api/v1/donations", json={
        "project_id": project_id, "amount_fen": 2_000, **extra},
        headers={**headers, "Idempotency-Key": key})
    return answer.status_code, answer.json()


def test_the_api_says_a_project_is_past_its_goal_and_wants_a_confirmation(
        client: TestClient, db: Database, world: object) -> None:
    pid, _ = _past_goal(db)
    headers = {"Authorization": f"Bearer {world.donor_token}"}  # type: ignore[attr-defined]
    read = client.get(f"/api/v1/projects/{pid}").json()
    assert (read["goal_state"], read["goal_policy"], read["target_fen"]) == (
        "reached", "continue", 10_000)
    status, body = _give(client, headers, pid, "g1")
    assert status == 409
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "past_goal_unconfirmed"
    assert error["details"] == {"goal_state": "reached", "goal_fen": 10_000,
                                "target_fen": 10_000, "raised_fen": 15_000,
                                "goal_policy": "continue"}
    status, body = _give(client, headers, pid, "g2", confirm_past_goal=True)
    assert status == 201, body


def test_a_project_that_stops_at_its_goal_takes_no_more_gifts(
        client: TestClient, db: Database, world: object) -> None:
    pid, _ = _past_goal(db, GoalPolicy.STOP)
    headers = {"Authorization": f"Bearer {world.donor_token}"}  # type: ignore[attr-defined]
    assert client.get(f"/api/v1/projects/{pid}").json()["goal_state"] == "closed"
    for extra in ({}, {"confirm_past_goal": True}):
        status, body = _give(client, headers, pid, f"s{len(extra)}", **extra)
        assert status == 409
        assert body["error"]["code"] == "project_goal_reached"  # type: ignore[index]
    page = client.get(f"/projects/{pid}")
    assert 'data-status="goal_reached"' in page.text and 'id="donate"' not in page.text
    assert zh("Goal reached") in page.text


def test_a_stretch_goal_takes_gifts_up_to_it_then_stops(
        client: TestClient, db: Database, world: object) -> None:
    pid, _ = _past_goal(db, GoalPolicy.STRETCH, stretch=16_000)
    headers = {"Authorization": f"Bearer {world.donor_token}"}  # type: ignore[attr-defined]
    read = client.get(f"/api/v1/projects/{pid}").json()
    assert (read["goal_state"], read["goal_fen"], read["target_fen"], read["stretch_goal_fen"]
            ) == ("stretch", 10_000, 16_000, 16_000)
    page = client.get(f"/projects/{pid}").text
    assert 'data-goal-state="stretch"' in page and "¥16,000" not in page  # ¥160
    assert "¥160" in page and "¥100" in page  # the stretch goal and the original, both shown
    status, body = _give(client, headers, pid, "t1")
    assert status == 409 and body["error"]["code"] == "past_goal_unconfirmed"  # type: ignore[index]
    with db.transaction() as s:
        paid_donation(s, s.get_one(Project, pid), amount_fen=1_000)  # ¥160 now: reached
    assert client.get(f"/api/v1/projects/{pid}").json()["goal_state"] == "closed"
    status, body = _give(client, headers, pid, "t2", confirm_past_goal=True)
    assert status == 409 and body["error"]["code"] == "project_goal_reached"  # type: ignore[index]


def test_giving_day_orders_are_told_too(client: TestClient, db: Database,
                                        world: object) -> None:
    pid, _ = _past_goal(db)
    with db.transaction() as s:
        campaign_id = make_campaign(s, projects=[s.get_one(Project, pid)]).id
    headers = {"Authorization": f"Bearer {world.donor_token}"}  # type: ignore[attr-defined]
    body = {"project_id": pid, "amount_fen": 2_000}
    refused = client.post(f"/api/v1/campaigns/{campaign_id}/orders", json=body,
                          headers={**headers, "Idempotency-Key": "o1"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "past_goal_unconfirmed"
    taken = client.post(f"/api/v1/campaigns/{campaign_id}/orders",
                        json={**body, "confirm_past_goal": True},
                        headers={**headers, "Idempotency-Key": "o2"})
    assert taken.status_code == 201, taken.text


# --- the pages -----------------------------------------------------------------------------


def _csrf(page_text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert match
    return match.group(1)


def test_the_donate_form_warns_and_needs_the_box_ticked(
        client: TestClient, db: Database, world: object) -> None:
    pid, _ = _past_goal(db)
    sign_in(client, db, world.donor_id)  # type: ignore[attr-defined]
    page = client.get(f"/projects/{pid}")
    # 已筹满, not 募捐中: the badge, the percent of the goal, the notice and the box.
    assert 'data-status="goal_reached"' in page.text
    assert 'data-status="fundraising"' not in page.text
    assert "150%" in page.text
    notice = re.search(r'<div class="past-goal[^"]*" id="past-goal".*?</div>', page.text, re.S)
    assert notice and "¥100" in notice.group(0) and "¥150" in notice.group(0)
    assert re.search(r'name="confirm_past_goal" value="1" required', notice.group(0))
    form = {"csrf_token": _csrf(page.text), "amount": "20", "idempotency_key": "p1"}
    refused = client.post(f"/projects/{pid}/donate", data=form, follow_redirects=False)
    assert refused.status_code == 409
    assert 'id="confirm_past_goal-error"' in refused.text
    assert 'data-code="past_goal_unconfirmed"' in refused.text
    taken = client.post(f"/projects/{pid}/donate", data={**form, "confirm_past_goal": "1"},
                        follow_redirects=False)
    assert taken.status_code == 303 and taken.headers["location"].startswith("/pay/sandbox/")


def test_below_the_goal_nothing_changes(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s), goal_fen=100_000)
        paid_donation(s, project, amount_fen=2_000)
        pid = project.id
    page = client.get(f"/projects/{pid}").text
    assert 'id="past-goal"' not in page and 'data-status="fundraising"' in page
    assert 'id="goal-reached"' not in page


# --- the organization's choice ---------------------------------------------------------------


def test_staff_choose_a_stretch_goal_in_the_console(client: TestClient, db: Database) -> None:
    pid, org_id = _past_goal(db)
    with db.transaction() as s:
        staff_id = staff_of(s, s.get_one(Organization, org_id)).id
    csrf = sign_in(client, db, staff_id)
    console = client.get(f"/console/projects/{pid}")
    assert 'id="goal-setting"' in console.text
    url = f"/console/projects/{pid}/goal-setting"
    too_low = client.post(url, data={"csrf_token": csrf, "goal_policy": "stretch",
                                     "stretch_goal": "120"})
    assert too_low.status_code == 422 and 'data-code="stretch_goal_too_low"' in too_low.text
    missing = client.post(url, data={"csrf_token": csrf, "goal_policy": "stretch"})
    assert 'data-code="stretch_goal_required"' in missing.text
    odd = client.post(url, data={"csrf_token": csrf, "goal_policy": "maybe"})
    assert 'data-code="goal_policy_invalid"' in odd.text
    done = client.post(url, data={"csrf_token": csrf, "goal_policy": "stretch",
                                  "stretch_goal": "300"}, follow_redirects=False)
    assert done.status_code == 303
    with db.transaction(write=False) as s:
        project = s.get_one(Project, pid)
        assert (project.goal_policy, project.stretch_goal_fen, project.goal_fen) == (
            GoalPolicy.STRETCH, 30_000, 10_000)
        assert audit_count(s, "projects.project.goal_policy_set") == 1
    # Back to "continue": the stretch goal goes.
    client.post(url, data={"csrf_token": csrf, "goal_policy": "continue", "stretch_goal": "300"})
    with db.transaction(write=False) as s:
        assert s.get_one(Project, pid).stretch_goal_fen is None


def test_the_goal_setting_over_the_api(client: TestClient, db: Database) -> None:
    pid, org_id = _past_goal(db)
    with db.transaction() as s:
        other = make_org(s)
        staff = staff_of(s, s.get_one(Organization, org_id)).id
        stranger = staff_of(s, other).id
    url = f"/api/v1/projects/{pid}/goal-setting"
    answer = client.put(url, json={"goal_policy": "stop"}, headers=api_token(db, staff))
    assert answer.status_code == 200 and answer.json()["goal_state"] == "closed"
    refused = client.put(url, json={"goal_policy": "stretch", "stretch_goal_fen": 12_000},
                         headers=api_token(db, staff))
    # ¥120 is above the goal but not above the ¥150 raised.
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "stretch_goal_too_low"
    not_theirs = client.put(url, json={"goal_policy": "stop"}, headers=api_token(db, stranger))
    assert not_theirs.status_code == 403
    assert client.put(url, json={"goal_policy": "nope"},
                      headers=api_token(db, staff)).status_code == 422
    with db.transaction() as s:
        s.get_one(Project, pid).status = S.ENDED
    locked = client.put(url, json={"goal_policy": "continue"}, headers=api_token(db, staff))
    assert locked.status_code == 409 and locked.json()["error"]["code"] == "goal_policy_locked"


def test_a_draft_goal_cannot_pass_its_stretch_goal(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, status=S.DRAFT, goal_fen=10_000)
        staff = staff_of(s, org)
        projects.do_set_goal_policy(session=s, actor=staff, project=project, policy="stretch",
                                    stretch_goal=20_000)
        fields = projects.fields_of(project)
        fields.goal_fen = 20_000
        with pytest.raises(InvalidInput) as raised:
            projects.do_update_project(session=s, actor=staff, project=project, fields=fields)
        assert raised.value.code == "goal_above_stretch_goal"


# --- the countdown -----------------------------------------------------------------------------


def test_time_left_is_counted_from_the_injected_clock() -> None:
    now = utcnow()  # relative to the clock: any day works
    left = time_left(now + dt.timedelta(days=3, hours=4, minutes=5, seconds=6), now)
    assert (left.days, left.hours, left.minutes, left.over) == (3, 4, 5, False)
    soon = time_left(now + dt.timedelta(seconds=20), now)
    assert (soon.days, soon.hours, soon.minutes, soon.over) == (0, 0, 1, False)
    assert time_left(now - dt.timedelta(hours=1), now).over


def test_the_project_page_counts_down_and_the_end_stops_gifts(
        client: TestClient, db: Database, world: object) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        project.ends_on = today_cn() + dt.timedelta(days=2)
        ended = make_project(s, org=org)
        ended.ends_on = today_cn() - dt.timedelta(days=1)
        pid, ended_id = project.id, ended.id
        ends_at = goals.fundraising_ends_at(project)
    assert ends_at is not None and ends_at.tzinfo == CHINA_TZ and ends_at.hour == 0
    left = goals.project_time_left(project, now=utcnow())
    assert left is not None and left.days in (2, 3)
    page = client.get(f"/projects/{pid}").text
    shown = re.search(r'<p class="countdown[^>]*>(.*?)</p>', page, re.S)
    assert shown and zh("%(days)s days %(hours)s hours left") % {
        "days": left.days, "hours": left.hours} in shown.group(1)
    api = client.get(f"/api/v1/projects/{pid}").json()
    assert 0 < api["seconds_left"] <= 3 * 86_400
    headers = {"Authorization": f"Bearer {world.donor_token}"}  # type: ignore[attr-defined]
    status, body = _give(client, headers, ended_id, "late")
    assert status == 409 and body["error"]["code"] == "project_not_fundraising"  # type: ignore[index]
    assert client.get(f"/api/v1/projects/{ended_id}").json()["seconds_left"] == 0
    assert zh("The fundraising period is over.") in client.get(f"/projects/{ended_id}").text


def test_the_giving_day_dashboard_counts_down(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s, days=2, closes_at="22:00")
        slug = campaign.slug
        last = campaign.starts_on + dt.timedelta(days=1)
    page = client.get(f"/campaigns/{slug}").text
    assert 'class="countdown small"' in page
    # Until the closing minute of the last day, China time.
    assert f"{last.isoformat()} 22:00" in page


def test_check_goal_allows_gift_directly(db: Database) -> None:
    pid, _ = _past_goal(db)
    with db.transaction(write=False) as s:
        project = s.get_one(Project, pid)
        with pytest.raises(Conflict) as raised:
            goals.check_goal_allows_gift(session=s, project=project, confirm_past_goal=False)
        assert raised.value.field == "confirm_past_goal"
        assert goals.check_goal_allows_gift(session=s, project=project,
                                            confirm_past_goal=True).raised_fen == 15_000


def test_the_giving_day_banner_on_a_project_counts_down(client: TestClient,
                                                        db: Database) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project], days=1, closes_at="23:59")
        pid, last = project.id, campaign.starts_on
    page = client.get(f"/projects/{pid}").text
    banner = page.index('class="giving-day-banner"')
    countdown = page.index('class="countdown small"', banner)
    assert f"{last.isoformat()} 23:59" in page[countdown:countdown + 600]
