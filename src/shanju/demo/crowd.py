"""The demo's giving-day crowd: gifts to the live campaign, through the real engine.

:func:`seed_gifts` fills today's giving day so far (run by the seeder, in its transaction,
through ``campaigns.engine.apply_batch`` — the same code and the same ledger entries as a
production batch), including the cases the anti-fraud rules and explanations are for: a
staff member giving to their own organization, several accounts sharing one payer account
(held for the public notice period), a donor beyond the daily cap.

:class:`Crowd` keeps the demo alive while it is served: a thread that submits a few gifts
a second to the app's :class:`~shanju.campaigns.engine.GroupCommitEngine`, as if payment
callbacks were arriving, so the live dashboard moves.

The crowd gives as its own accounts, never as a person's: simulated donors (and one
simulated staff member) whose email is at :data:`CROWD_DOMAIN` and whose password hash
matches no password, so nobody signs in as them. The demo accounts people use (the README's
``donor@demo.shanju.org`` …) never give: a newcomer finds no gift they did not make, and
their daily match cap untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns.engine import GiftResult, PaidGift, apply_batch
from shanju.campaigns.models import Campaign, CampaignStatus, Enrolment, EnrolmentStatus
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import Database
from shanju.demo.data import AMOUNTS

log = structlog.get_logger(__name__)
BATCH = 1000
# The simulated crowd's accounts: seeded donors, and staff members the crowd needs.
CROWD_DOMAIN = "crowd.demo.shanju.org"
# Not an argon2 hash: no password matches it (core.security.verify_password says no).
CROWD_PASSWORD_HASH = "!simulated-crowd: no password signs in"  # noqa: S105 - not a secret


def crowd_email(local: str) -> str:
    """The email of one of the crowd's accounts."""
    return f"{local}@{CROWD_DOMAIN}"


def is_crowd_email(email: str) -> bool:
    """Whether an account is one of the simulated crowd's (not a person's)."""
    return email.endswith("@" + CROWD_DOMAIN)


@dataclass(frozen=True)
class Donor:
    """A demo donor account who may give on the giving day."""

    id: int
    name: str
    province: str | None


@dataclass(frozen=True)
class Target:
    """An enrolled project and its campaign."""

    campaign_id: int
    project_id: int


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class GiftMaker:
    """Builds realistic gifts: many small amounts, a few large; popular projects get more."""

    def __init__(self, rng: random.Random, donors: Sequence[Donor], targets: Sequence[Target],
                 *, prefix: str) -> None:
        self.rng = rng
        self.donors = donors
        self.targets = targets
        # A few projects draw most gifts (the leaderboard has a head and a tail).
        self.weights = [1 / (i + 1) for i in range(len(targets))]
        self.amounts = [a for a, _ in AMOUNTS]
        self.amount_weights = [w for _, w in AMOUNTS]
        self.prefix = prefix
        self.seq = itertools.count(1)

    def gift(self, paid_at: dt.datetime, *, donor: Donor | None = None,
             target: Target | None = None, payer: str | None = None) -> PaidGift:
        """One paid gift at ``paid_at``."""
        donor = donor or self.rng.choice(self.donors)
        target = target or self.rng.choices(self.targets, self.weights)[0]
        n = next(self.seq)
        order = f"o_{self.prefix}{n:09d}"
        anonymous = self.rng.random() < 0.1
        return PaidGift(
            order_id=order, campaign_id=target.campaign_id, project_id=target.project_id,
            donor_id=donor.id, donor_name=donor.name, anonymous=anonymous, message="",
            province=donor.province,
            amount_fen=self.rng.choices(self.amounts, self.amount_weights)[0],
            provider="sandbox", provider_txn_id=f"sbx_{order}",
            payer_hash=_hash(payer or f"payer:{donor.id}"),
            device_hash=_hash(f"device:{donor.id}"), paid_at=paid_at,
        )


def _live_targets(session: Session) -> list[Target]:
    rows = session.execute(
        select(Enrolment.campaign_id, Enrolment.project_id)
        .join(Campaign, Campaign.id == Enrolment.campaign_id)
        .where(Campaign.status == CampaignStatus.LIVE,
               Enrolment.status == EnrolmentStatus.APPROVED)
        .order_by(Enrolment.campaign_id, Enrolment.id)
    )
    return [Target(int(c), int(p)) for c, p in rows]


def _donors(session: Session, limit: int = 3000) -> list[Donor]:
    """The crowd's donor accounts (never a person's)."""
    rows = session.execute(
        select(User.id, User.display_name, User.province)
        .where(User.role == Role.DONOR, User.email.like(f"%@{CROWD_DOMAIN}"))
        .order_by(User.id).limit(limit)
    )
    return [Donor(int(i), str(n), p) for i, n, p in rows]


def seed_gifts(session: Session, *, gifts: int, rng: random.Random,
               now: dt.datetime | None = None,
               progress: Callable[[int], None] | None = None) -> list[GiftResult]:
    """Give ``gifts`` gifts to the live campaigns between today's opening (China time) and
    ``now``, through the engine's batch code, in the caller's transaction."""
    now = now or utcnow()
    targets = _live_targets(session)
    donors = _donors(session)
    if not targets or not donors:
        return []
    maker = GiftMaker(rng, donors, targets, prefix="demo")
    opening = dt.datetime.combine(now.astimezone(CHINA_TZ).date(), dt.time(0), CHINA_TZ)
    span = max(1.0, (now - opening).total_seconds() - 1)
    # Most gifts in the last hours (a giving day builds up), none in the future.
    times = sorted(now - dt.timedelta(seconds=span * rng.random() ** 2) for _ in range(gifts))
    planned = [maker.gift(at) for at in times]
    planned += _telling_cases(session, maker, targets, donors,
                              max(opening, now - dt.timedelta(minutes=5)))
    results: list[GiftResult] = []
    reported = 0
    for start in range(0, len(planned), BATCH):
        chunk = planned[start:start + BATCH]
        results += apply_batch(session, chunk, worker="demo-seed")
        if progress is not None:
            # In units of the ``gifts`` asked for (the telling cases ride along), so that a
            # progress bar counting them ends at 100 %, not past it.
            reached = gifts * (start + len(chunk)) // len(planned)
            progress(reached - reported)
            reported = reached
    return results


def _telling_cases(session: Session, maker: GiftMaker, targets: Sequence[Target],
                   donors: Sequence[Donor], at: dt.datetime) -> list[PaidGift]:
    """Gifts whose match the anti-fraud rules withhold or hold, so the demo can show why."""
    cases: list[PaidGift] = []
    # Three accounts paying with one payer account: the third one's match is held.
    for donor in donors[-3:]:
        cases.append(maker.gift(at, donor=donor, target=targets[0], payer="payer:shared-demo"))
    # One of the crowd gives five times in one minute: the ceiling.
    for _ in range(5):
        cases.append(maker.gift(at + dt.timedelta(seconds=1), donor=donors[0]))
    # A staff member of an enrolled project's organization gives to it: a simulated staff
    # member of the crowd's, made for this (never the demo's org@ or summit@ account).
    target = targets[-1]
    org_id = _project_orgs(session, [target.project_id])[target.project_id]
    staff = _crowd_staff(session, org_id=org_id, name=maker.rng.choice(_STAFF_NAMES))
    cases.append(maker.gift(at, donor=staff, target=target))
    return cases


_STAFF_NAMES = ("周敏", "吴磊", "郑洁", "孙浩")


def _crowd_staff(session: Session, *, org_id: int, name: str) -> Donor:
    """The crowd's staff member of the organization ``org_id`` (made once)."""
    email = crowd_email(f"staff{org_id:04d}")
    found = session.scalar(select(User).where(User.email == email))
    if found is None:
        found = User(email=email, display_name=name, password_hash=CROWD_PASSWORD_HASH,
                     role=Role.ORG_STAFF, organization_id=org_id, is_active=True)
        session.add(found)
        session.flush()
    return Donor(found.id, found.display_name, None)


def _project_orgs(session: Session, project_ids: Sequence[int]) -> dict[int, int]:
    from shanju.projects.models import Project

    rows = session.execute(
        select(Project.id, Project.recipient_org_id).where(Project.id.in_(project_ids)))
    return {int(p): int(o) for p, o in rows}


class Crowd:
    """A thread giving a few gifts a second to the live campaigns through ``engine``."""

    def __init__(self, database: Database, engine_of: Callable[[], object | None], *,
                 rate_per_s: float = 3.0, seed: int = 999) -> None:
        self.database = database
        self.engine_of = engine_of
        self.rate = rate_per_s
        self.rng = random.Random(seed)  # noqa: S311 - demo data, not security
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-crowd", daemon=True)

    def start(self) -> None:
        """Start giving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop giving."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with self.database.transaction(write=False) as session:
            targets = _live_targets(session)
            donors = _donors(session)
        if not targets or not donors:
            return
        maker = GiftMaker(self.rng, donors, targets,
                          prefix=f"live{int(utcnow().timestamp())}_")
        while not self._stop.wait(self.rng.expovariate(self.rate)):
            engine = self.engine_of()
            submit = getattr(engine, "submit", None)
            if submit is None:
                continue
            try:
                submit(maker.gift(utcnow()))
            except RuntimeError:  # the engine is stopping with the server
                return
