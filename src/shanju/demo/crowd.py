"""The demo's giving-day crowd: gifts to the live campaign, through the real engine.

:func:`seed_gifts` fills today's giving day so far (run by the seeder, in its transaction,
through ``campaigns.engine.apply_batch`` — the same code and the same ledger entries as a
production batch), including the cases the anti-fraud rules and explanations are for: a
staff member giving to their own organization, several accounts sharing one payer account
(held for the public notice period), a donor beyond the daily cap.

:class:`Crowd` keeps the demo alive while it is served: a thread that submits a few gifts
a second to the app's :class:`~shanju.campaigns.engine.GroupCommitEngine`, as if payment
callbacks were arriving, so the live dashboard moves.
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
    rows = session.execute(
        select(User.id, User.display_name, User.province)
        .where(User.role == Role.DONOR).order_by(User.id).limit(limit)
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
    for start in range(0, len(planned), BATCH):
        chunk = planned[start:start + BATCH]
        results += apply_batch(session, chunk, worker="demo-seed")
        if progress is not None:
            progress(len(chunk))
    return results


def _telling_cases(session: Session, maker: GiftMaker, targets: Sequence[Target],
                   donors: Sequence[Donor], at: dt.datetime) -> list[PaidGift]:
    """Gifts whose match the anti-fraud rules withhold or hold, so the demo can show why."""
    cases: list[PaidGift] = []
    # Three accounts paying with one payer account: the third one's match is held.
    for donor in donors[-3:]:
        cases.append(maker.gift(at, donor=donor, target=targets[0], payer="payer:shared-demo"))
    # The demo donor (李明, the first donor) gives five times in one minute: the ceiling.
    for _ in range(5):
        cases.append(maker.gift(at + dt.timedelta(seconds=1), donor=donors[0]))
    # A staff member of an enrolled project's organization gives to it.
    staff = session.execute(
        select(User.id, User.display_name, User.organization_id)
        .where(User.role == Role.ORG_STAFF, User.organization_id.is_not(None))
        .order_by(User.id)
    ).all()
    orgs = _project_orgs(session, [t.project_id for t in targets])
    for uid, name, org_id in staff:
        own = [t for t in targets if orgs.get(t.project_id) == org_id]
        if own:
            cases.append(maker.gift(at, donor=Donor(int(uid), str(name), None), target=own[0]))
            break
    return cases


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
