"""What a giving-day order is validated against (``orders.OrderFacts``): the campaign, the
project, its enrolment and what it raised, read once per ``ORDER_FACTS_MAX_AGE_S`` by each
process and shared by its requests — a change takes effect within that bound, and an order
is never refused on facts from memory (docs/campaigns/checkout.md, "Validating an order")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import ApiToken, User
from shanju.campaigns import orders
from shanju.campaigns.models import Campaign, CampaignGift, CampaignStatus, Enrolment
from shanju.campaigns.models import EnrolmentStatus as E
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.projects.models import GoalPolicy, Project, ProjectStatus
from tests.factories import make_campaign, make_campaign_gift, make_org, make_project, make_user
from tests.projects.helpers import api_token

BOUND = orders.ORDER_FACTS_MAX_AGE_S


@dataclass
class World:
    campaign_id: int
    project_id: int
    donor_id: int


def _world(db: Database) -> World:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, goal_fen=10_000)
        project.goal_policy = GoalPolicy.STOP
        campaign = make_campaign(s, projects=[project])
        donor = make_user(s, display_name="王五")
        return World(campaign.id, project.id, donor.id)


def _clock(db: Database) -> list[float]:
    """The process's order facts of ``db`` on a clock the test moves."""
    now = [1_000.0]
    with db.transaction(write=False) as s:
        orders.order_facts(s).clock = lambda: now[0]
    return now


def _check(db: Database, w: World, session: Session | None = None) -> str:
    """What an order of the world's donor is told: ``ok`` or the refusal's code."""
    def go(s: Session) -> str:
        try:
            orders.check_order_request(
                session=s, actor=s.get_one(User, w.donor_id), campaign_id=w.campaign_id,
                project_id=w.project_id, amount_fen=2_000, donor_name="", anonymous=False,
                message="", province="")
        except DomainError as exc:
            return exc.code
        return "ok"
    if session is not None:
        return go(session)
    with db.transaction(write=False) as s:
        return go(s)


def _end_campaign(s: Session, w: World) -> None:
    s.get_one(Campaign, w.campaign_id).status = CampaignStatus.ENDED


def _unenrol(s: Session, w: World) -> None:
    s.execute(update(Enrolment).where(Enrolment.project_id == w.project_id)
              .values(status=E.WITHDRAWN))


def _pause(s: Session, w: World) -> None:
    s.get_one(Project, w.project_id).status = ProjectStatus.PAUSED


def _reach_goal(s: Session, w: World) -> None:
    make_campaign_gift(s, campaign=s.get_one(Campaign, w.campaign_id),
                       project=s.get_one(Project, w.project_id), amount_fen=10_000)


CHANGES: dict[str, tuple[Callable[[Session, World], None], str]] = {
    "campaign ended": (_end_campaign, "campaign_not_live"),
    "project unenrolled": (_unenrol, "project_not_enrolled"),
    "project paused": (_pause, "project_not_fundraising"),
    "goal reached, stop": (_reach_goal, "project_goal_reached"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_stops_orders_within_the_bound(db: Database, change: str) -> None:
    w = _world(db)
    now = _clock(db)
    assert _check(db, w) == "ok"
    apply, code = CHANGES[change]
    with db.transaction() as s:
        apply(s, w)
    now[0] += BOUND / 2
    assert _check(db, w) == "ok"  # the facts this process read half a second ago
    now[0] += BOUND / 2
    assert _check(db, w) == code  # read again: refused, with the usual code


@pytest.mark.parametrize(("change", "undo"), [
    (_end_campaign, lambda s, w: setattr(s.get_one(Campaign, w.campaign_id), "status",
                                         CampaignStatus.LIVE)),
    (_unenrol, lambda s, _: s.execute(update(Enrolment).values(status=E.APPROVED))),
    (_pause, lambda s, w: setattr(s.get_one(Project, w.project_id), "status",
                                  ProjectStatus.FUNDRAISING)),
], ids=["campaign", "enrolment", "project"])
def test_an_order_is_never_refused_on_remembered_facts(
        db: Database, change: Callable[[Session, World], None],
        undo: Callable[[Session, World], None]) -> None:
    w = _world(db)
    _clock(db)  # the clock stands still: whatever is remembered stays young
    with db.transaction() as s:
        change(s, w)
    assert _check(db, w) != "ok"
    with db.transaction() as s:
        undo(s, w)
    assert _check(db, w) == "ok"  # the remembered refusal was read again


@pytest.mark.parametrize("flushed", [False, True])
def test_facts_read_beside_changes_of_their_transaction_are_not_kept(
        db: Database, flushed: bool) -> None:
    w = _world(db)
    _clock(db)
    with db.transaction() as s:
        if flushed:
            make_user(s, display_name="同一事务")  # a change of this transaction, flushed
        else:
            s.get_one(User, w.donor_id).display_name = "改名"  # one not flushed yet
        with s.no_autoflush:
            assert _check(db, w, session=s) == "ok"
        _end_campaign(s, w)
    # Nothing was kept from that transaction: this order reads the campaign, ended.
    assert _check(db, w) == "campaign_not_live"
    # A transaction that changed nothing keeps what it read (the control).
    with db.transaction() as s:
        s.get_one(Campaign, w.campaign_id).status = CampaignStatus.LIVE
    assert _check(db, w) == "ok"
    with db.transaction() as s:
        _end_campaign(s, w)
    assert _check(db, w) == "ok"  # remembered, within the bound


def test_the_facts_are_the_process_s_per_database_and_bounded(db: Database) -> None:
    with db.transaction(write=False) as s, db.transaction() as t:
        # The read and the write sessions of one database share them.
        assert orders.order_facts(s) is orders.order_facts(t)
    w = _world(db)
    _clock(db)
    with db.transaction(write=False) as s:
        facts = orders.order_facts(s)
        facts.clear()
        for pid in range(w.project_id + 1, w.project_id + orders.MAX_ORDER_FACTS + 1):
            facts.project(s, w.campaign_id, pid)  # made-up projects, remembered as absent
        assert len(facts._projects) == orders.MAX_ORDER_FACTS
        facts.project(s, w.campaign_id, w.project_id)
        assert len(facts._projects) == 1  # forgotten all at once, then this one


# --- through the API -----------------------------------------------------------------------


def _order(client: TestClient, w: World, auth: dict[str, str], key: str,
           **body: Any) -> Any:
    return client.post(f"/api/v1/campaigns/{w.campaign_id}/orders",
                       json={"project_id": w.project_id, "amount_fen": 2_000, **body},
                       headers={**auth, "Idempotency-Key": key})


def _counts(db: Database) -> tuple[int, int]:
    with db.transaction(write=False) as s:
        return (int(s.scalar(select(func.count()).select_from(CampaignGift)) or 0),
                int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0))


def test_an_ended_campaign_refuses_orders_within_the_bound_and_writes_nothing(
        client: TestClient, db: Database) -> None:
    w = _world(db)
    auth = api_token(db, w.donor_id)
    now = _clock(db)
    assert _order(client, w, auth, "k1").status_code == 201
    with db.transaction() as s:
        _end_campaign(s, w)
    before = _counts(db)
    now[0] += BOUND
    refused = _order(client, w, auth, "k2")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "campaign_not_live"
    assert _counts(db) == before


def test_an_order_records_its_token_use_even_when_refused(
        client: TestClient, db: Database) -> None:
    w = _world(db)
    auth = api_token(db, w.donor_id)

    def last_used() -> dt.datetime | None:
        with db.transaction(write=False) as s:
            return s.scalars(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    refused = _order(client, w, auth, "k1", project_id=w.project_id + 1000)
    assert refused.json()["error"]["code"] == "project_not_found"
    assert last_used() is not None
    with db.transaction() as s:
        s.execute(update(ApiToken).values(last_used_at=None))
    assert _order(client, w, auth, "k2").status_code == 201
    assert last_used() is not None


def test_without_a_credential_an_order_is_refused_before_its_body(client: TestClient,
                                                                  db: Database) -> None:
    w = _world(db)
    nobody = client.post(f"/api/v1/campaigns/{w.campaign_id}/orders",
                         json={"amount_fen": "not even a number"},
                         headers={"Idempotency-Key": "k"})
    assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "not_authenticated"
    forged = client.post(f"/api/v1/campaigns/{w.campaign_id}/orders",
                         json={"project_id": w.project_id, "amount_fen": 100},
                         headers={"Idempotency-Key": "k", "Authorization": "Bearer sj_nope"})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_token"
