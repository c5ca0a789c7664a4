"""The demo tells the truth: its simulated crowd gives as its own accounts, never as a
person's (a newcomer signed in as the demo donor finds no gift they did not make and their
daily match cap untouched); the seed's progress bar ends at exactly 100 %."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.campaigns.engine import GroupCommitEngine
from shanju.campaigns.models import CampaignGift
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.errors import InvalidInput
from shanju.core.migrations import create_schema
from shanju.demo.crowd import CROWD_DOMAIN, Crowd, is_crowd_email
from shanju.demo.seed import DEMO_ACCOUNTS, DEMO_PASSWORD, Plan, seed
from shanju.gifts.models import Gift

SCALE = 0.02


def _givers(database: Database) -> dict[int, tuple[str, str]]:
    """Every account that gave (either kind of gift): id → (email, password hash)."""
    with database.transaction(write=False) as s:
        return {int(uid): (str(email), str(hashed)) for uid, email, hashed in s.execute(
            select(User.id, User.email, User.password_hash)
            .where(User.id.in_(select(Gift.donor_id).where(Gift.donor_id.is_not(None))
                               .distinct())))}


def _assert_only_the_crowd_gave(database: Database) -> None:
    givers = _givers(database)
    assert givers
    people = {email for email, _role, _name in DEMO_ACCOUNTS}
    for email, _hash in givers.values():
        assert is_crowd_email(email) and email not in people, email
    with database.transaction(write=False) as s:
        for email, _hash in list(givers.values())[:3]:  # argon2 is slow: a few suffice
            with pytest.raises(InvalidInput):  # nobody signs in as the crowd
                accounts.authenticate(session=s, email=email, password=DEMO_PASSWORD)
        persons = list(s.scalars(select(User.id).where(
            User.email.in_(people))))
        assert len(persons) == len(people)
        assert s.scalar(select(func.count()).select_from(Gift).where(
            Gift.donor_id.in_(persons))) == 0


def test_the_crowd_never_gives_as_a_persons_account(db: Database) -> None:
    with db.transaction() as session:
        report = seed(session, scale=SCALE, summit_organizations=20)  # today: live giving day
    assert report.giving_day_gifts >= Plan.for_scale(SCALE).giving_day_gifts
    _assert_only_the_crowd_gave(db)
    # Its accounts are neither the demo's nor anyone else's: all at the crowd's own domain.
    with db.transaction(write=False) as s:
        assert all(h.startswith("!") for h in s.scalars(
            select(User.password_hash).where(User.email.like(f"%@{CROWD_DOMAIN}"))))
        # The telling cases are the crowd's too: a crowd staff member gives to their own
        # organization, a crowd donor gives too fast.
        reasons = dict(s.execute(select(CampaignGift.reason, func.min(CampaignGift.donor_id))
                                 .group_by(CampaignGift.reason)).all())
    assert {"staff_own_org", "too_fast"} <= set(reasons)

    # While the demo is served, the live crowd gives through the real engine: as its own
    # accounts too.
    engine = GroupCommitEngine(db, max_wait_ms=2)
    engine.start()
    crowd = Crowd(db, lambda: engine, rate_per_s=400.0)
    crowd.start()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with db.transaction(write=False) as s:
                live = s.scalar(select(func.count()).select_from(CampaignGift).where(
                    CampaignGift.order_id.like("o_live%"))) or 0
            if live >= 30:
                break
            time.sleep(0.05)
    finally:
        crowd.stop()
        engine.stop(10)
    assert live >= 30
    _assert_only_the_crowd_gave(db)


def _progress(tmp_path: Path, name: str, now: dt.datetime) -> tuple[list[int], int]:
    database = Database(f"sqlite:///{tmp_path / name}")
    create_schema(database)
    steps: list[int] = []
    with database.transaction() as session:
        seed(session, scale=SCALE, now=now, summit_organizations=20,
             progress=lambda n, _stage: steps.append(n))
    database.dispose()
    plan = dataclasses.replace(Plan.for_scale(SCALE), summit_organizations=20)
    return steps, plan.total_steps


@pytest.mark.parametrize("when", ["today", "a month ago"])
def test_the_seed_progress_bar_ends_at_exactly_100_percent(tmp_path: Path, when: str) -> None:
    # A month ago there is no live giving day: its share of the bar is filled all the same.
    now = utcnow() - (dt.timedelta(days=30) if when == "a month ago" else dt.timedelta(0))
    steps, total = _progress(tmp_path, "seed.sqlite3", now)
    assert all(n >= 0 for n in steps)
    running = 0
    for n in steps:
        running += n
        assert running <= total  # never past 100 %
    assert running == total
