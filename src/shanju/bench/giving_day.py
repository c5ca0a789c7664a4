"""``shanju bench giving-day``: a 99-style opening through the group-commit engine.

The run, on a throw-away database (a temporary SQLite file, or a fresh PostgreSQL database
``shanju_bench_<pid>`` dropped afterwards):

1. **World.** 50 organizations with 10 projects each, all enrolled in one live campaign (open
   all day), donor accounts (a quarter as many as gifts, at most 50,000; a few are staff of an
   organization), created in bulk.
2. **Workload** (seeded, built before the clock starts): every gift is a
   :class:`~shanju.campaigns.engine.PaidGift`. Amounts: 55% common small sums (¥1, ¥5, ¥9.9,
   ¥10, ¥18, ¥50, ¥99…), 25% any ¥1–¥99.99, 17% ¥100–¥999, 3% ¥1,000–¥50,000 (log-uniform).
   Projects are picked with a skew (a few popular projects take most gifts); 5% of donors
   give 20% of the gifts, a few bot accounts give several a minute, a ring of accounts shares
   three payment accounts and devices, staff sometimes give to their own organization;
   ``paid_at`` advances evenly over the first ten minutes after the opening (this many
   accounts giving at the opening minute's 16,000/s would all trip the human ceiling of 4
   matched gifts a minute). 2% of gifts are delivered twice (a payment callback retried): half right
   after the first, half a little later — each must be credited once and answered
   ``duplicate`` the second time.
3. **Pools** (sized from the workload, so that one runs out mid-run): a platform pot 1:1 up to
   ¥100 a gift and ¥999 per donor a day (35% of what it could match); an enterprise's random
   ratio (1:1, 1:0.5 or none) with a ¥1 floor and ¥5,000 per project a day (25%); a second
   enterprise 1:2 for gifts of ¥10 or more with a per-organization cap (enough for all).
4. **Engine run.** A generator thread submits the gifts to a ``GroupCommitEngine``, either as
   fast as the engine takes them (at most ``in_flight`` unanswered) or at a fixed arrival rate
   (open loop: latency counts from the gift's scheduled arrival, so a generator that falls
   behind does not hide the queue). Latency is submit → the gift's future resolving (the batch
   is durable).
5. **Baseline** on a fresh database with the same world and pools: the first ``min(N, 5000)``
   submissions, one transaction per gift — ``apply_batch(session, [gift])`` inside
   ``Database.transaction()`` (lock the campaign, read the counters, decide, write, commit),
   one at a time.
6. **Invariants** after each run: the ledger balances (``ledger.check``); every pool's row
   equals its ledger balance and its budget minus its gifts' matches; no rule's cap is
   exceeded, recomputed from the gift rows (:func:`check_caps`); exactly once — one gift row
   per order id, each order answered ``credited`` once and ``duplicate`` on every repeat, and
   every project's ledger balance equals its gifts plus their matches.
7. **Quadratic round** (engine run only): the campaign ends, a quadratic pool is committed
   and :func:`~shanju.campaigns.quadratic.distribute` shares it over the run's gifts.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import datetime as dt
import functools
import gc
import hashlib
import itertools
import math
import multiprocessing
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.bench.common import (
    machine,
    machine_busy_seconds,
    percentiles,
    postgres_cpu_seconds,
    throwaway_database,
)
from shanju.campaigns import flows, quadratic
from shanju.campaigns.engine import GiftResult, GroupCommitEngine, PaidGift, apply_batch
from shanju.campaigns.escrow_writer import EscrowEngine
from shanju.campaigns.models import (
    Campaign,
    CampaignBatch,
    CampaignGift,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    MatchPool,
    MatchStatus,
    PoolKind,
    PoolRule,
    Sponsor,
    SponsorKind,
)
from shanju.campaigns.rules import RuleParams
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import Database
from shanju.core.security import hash_password
from shanju.ledger import service as ledger
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.projects.models import Project, ProjectStatus
from shanju.transparency import sequencer
from shanju.transparency.check import check as transparency_check

ORGS = 50
PROJECTS_PER_ORG = 10
MAX_DONORS = 50_000
BASELINE_SAMPLE = 5_000
# ``paid_at`` advances evenly over the first ten minutes after the opening: this many accounts
# giving at the opening minute's 16,000/s would all trip the human ceiling (4 a minute).
SIMULATED_SPAN_S = 600
DUPLICATE_RATE = 0.02
PROVIDER = "sandbox"
PROVINCES = ("北京", "上海", "广东", "浙江", "江苏", "四川", "湖北", "山东", "河南", "云南",
             "甘肃", "贵州", "福建", "湖南", "陕西", "新疆")
COMMON_SMALL_FEN = (100, 200, 500, 600, 800, 990, 1_000, 1_680, 1_800, 2_000, 5_000, 6_600,
                    8_800, 9_900)
COMMON_MEDIUM_FEN = (10_000, 20_000, 30_000, 50_000, 52_000, 66_600, 88_800, 99_900)

# phase, done, total
ProgressFn = Callable[[str, int, int], None]


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


# --- the world -----------------------------------------------------------------------------


@dataclass
class World:
    """Ids of what the setup created (identical on two fresh databases)."""

    campaign_id: int
    day: dt.date
    project_ids: list[int]
    org_of_project: dict[int, int]
    donor_ids: list[int]
    staff_org: dict[int, int]  # donor id → organization they are staff of
    pool_ids: list[int] = field(default_factory=list)


def _opening_time() -> dt.datetime:
    """The simulated opening: now, unless the China day ends within the hour (then the next
    day at 00:05 China time), so every gift's ``paid_at`` falls on one campaign day."""
    now = utcnow()
    local = now.astimezone(CHINA_TZ)
    if local.hour == 23:
        local = (local + dt.timedelta(days=1)).replace(hour=0, minute=5, second=0,
                                                       microsecond=0)
        return local.astimezone(dt.UTC)
    return now


def setup_world(database: Database, *, donors: int, opening: dt.datetime) -> World:
    """Organizations, projects, a live campaign with them enrolled, and donor accounts."""
    day = opening.astimezone(CHINA_TZ).date()
    with database.transaction() as session:
        orgs = [
            Organization(
                name=f"基准公益基金会{n}", uscc=uscc.make(f"53100000MJ{900_000 + n:06d}"),
                org_type=OrgType.FOUNDATION, registering_authority="民政部",
                province=PROVINCES[n % len(PROVINCES)], contact_phone="010-00000000",
                status=OrgStatus.APPROVED, fundraising_cert_no=f"bench{n}",
                fundraising_valid_from=day - dt.timedelta(days=30),
                fundraising_valid_until=day + dt.timedelta(days=365),
            )
            for n in range(ORGS)
        ]
        session.add_all(orgs)
        session.flush()
        projects = [
            Project(
                organization_id=org.id, recipient_org_id=org.id, title=f"基准项目{i}-{k}",
                summary="benchmark", province=org.province, goal_fen=10**12,
                fundraising_plan="bench", filing_number=f"bench-{i}-{k}",
                filing_valid_from=day - dt.timedelta(days=1),
                filing_valid_until=day + dt.timedelta(days=365),
                status=ProjectStatus.FUNDRAISING,
            )
            for i, org in enumerate(orgs) for k in range(PROJECTS_PER_ORG)
        ]
        session.add_all(projects)
        campaign = Campaign(
            slug="bench-99", name="基准公益日", name_en="Benchmark giving day",
            status=CampaignStatus.LIVE, starts_on=day, days=1, opens_at="00:00",
            closes_at="23:59", org_quota=PROJECTS_PER_ORG,
        )
        session.add(campaign)
        session.flush()
        session.execute(insert(Enrolment), [
            {"campaign_id": campaign.id, "project_id": p.id,
             "organization_id": p.recipient_org_id, "status": EnrolmentStatus.APPROVED}
            for p in projects
        ])
        # One password hash for every account: hashing 50,000 would take minutes.
        password = hash_password("bench-password")
        now = utcnow()
        staff_every = 500  # 0.2% of donors are staff of an organization
        rows = [
            {"email": f"gd{i}@bench.invalid", "display_name": f"捐赠人{i}",
             "password_hash": password,
             "role": Role.ORG_STAFF if i % staff_every == 7 else Role.DONOR,
             "organization_id": orgs[i % ORGS].id if i % staff_every == 7 else None,
             "province": PROVINCES[i % len(PROVINCES)], "created_at": now}
            for i in range(donors)
        ]
        for start in range(0, len(rows), 5_000):
            session.execute(insert(User), rows[start:start + 5_000])
        users = session.execute(
            select(User.id, User.organization_id).where(User.email.like("gd%@bench.invalid"))
            .order_by(User.id)
        ).all()
        return World(
            campaign_id=campaign.id, day=day, project_ids=[p.id for p in projects],
            org_of_project={p.id: p.recipient_org_id for p in projects},
            donor_ids=[int(u) for u, _ in users],
            staff_org={int(u): int(o) for u, o in users if o is not None},
        )


def _pool_specs(gifts: Sequence[PaidGift]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(name, priority, budget, rule params) of the pools, sized from the unique gifts."""
    total = sum(g.amount_fen for g in gifts)
    platform_demand = sum(min(g.amount_fen, 10_000) for g in gifts)
    return [
        ("平台配捐 1:1", 10, max(1, platform_demand * 35 // 100),
         {"ratio_num": 1, "ratio_den": 1, "max_match_per_gift_fen": 10_000,
          "per_donor_daily_cap_fen": 99_900}),
        ("爱心企业随机配捐", 20, max(1, total * 65 // 100 * 25 // 100),
         {"random": [{"weight": 50, "num": 1, "den": 1}, {"weight": 30, "num": 1, "den": 2},
                     {"weight": 20, "num": 0, "den": 1}],
          "floor_fen": 100, "seed": 99, "per_project_daily_cap_fen": 500_000}),
        ("企业 1:0.5 配捐", 30, max(1, total // 2),
         {"ratio_num": 1, "ratio_den": 2, "min_gift_fen": 1_000,
          "per_org_cap_fen": max(1, total // 2 // (ORGS // 2))}),
    ]


def create_pool(session: Session, *, campaign_id: int, name: str, priority: int,
                budget_fen: int, params: dict[str, Any],
                kind: PoolKind = PoolKind.MATCHING) -> int:
    """A sponsor and its pool, committed through the ledger (rule version 1)."""
    sponsor = Sponsor(campaign_id=campaign_id, name=f"{name}的出资方",
                      kind=SponsorKind.ENTERPRISE)
    session.add(sponsor)
    session.flush()
    pool = MatchPool(campaign_id=campaign_id, sponsor_id=sponsor.id, name=name, kind=kind,
                     priority=priority, committed_fen=budget_fen, remaining_fen=budget_fen,
                     rule_version=1)
    session.add(pool)
    session.flush()
    rule = RuleParams.model_validate(params)
    session.add(PoolRule(pool_id=pool.id, version=1, params=rule.model_dump(mode="json")))
    ledger.post(session, ledger.transfer(
        "pool.committed", source=ledger.sponsor(sponsor.id),
        destination=ledger.match_pool(pool.id), amount_fen=budget_fen,
        dedupe_key=f"pool.committed:{pool.id}:1", detail=flows.pool_log_detail(pool),
    ))
    session.flush()
    return pool.id


def setup_pools(database: Database, world: World, unique: Sequence[PaidGift]) -> None:
    """Commit the sponsors' pools for the workload (see module doc)."""
    with database.transaction() as session:
        world.pool_ids = [
            create_pool(session, campaign_id=world.campaign_id, name=name, priority=priority,
                        budget_fen=budget, params=params)
            for name, priority, budget, params in _pool_specs(unique)
        ]


# --- the workload --------------------------------------------------------------------------


def _amount(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(COMMON_SMALL_FEN)
    if roll < 0.80:
        return rng.randint(100, 9_999)
    if roll < 0.97:
        return rng.choice(COMMON_MEDIUM_FEN) if rng.random() < 0.5 else rng.randint(
            100, 999) * 100
    return int(math.exp(rng.uniform(math.log(100_000), math.log(5_000_000)))) // 100 * 100


def _hash(kind: str, value: object) -> str:
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).hexdigest()


@dataclass
class Workload:
    """The gifts in submission order (a retried gift appears twice) and the unique ones."""

    submissions: list[PaidGift]
    unique: list[PaidGift]


def build_workload(world: World, *, donations: int, opening: dt.datetime,
                   seed: int = 99) -> Workload:
    """``donations`` unique gifts plus ~2% retried deliveries (see module doc)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    projects = world.project_ids
    # Popularity: project k has weight 1/(k+1)^0.8 (a few popular ones, a long tail).
    cumulative = list(itertools.accumulate(1 / (k + 1) ** 0.8 for k in range(len(projects))))
    order = projects[:]
    rng.shuffle(order)
    donors = world.donor_ids
    keen = donors[: max(1, len(donors) // 20)]  # 5% of donors give 20% of the gifts
    bots = donors[len(keen): len(keen) + max(1, len(donors) // 2_500)]  # 0.5%: 5+ a minute
    ring = donors[-min(100, max(1, len(donors) // 50)):]  # accounts sharing payers/devices
    staff = sorted(world.staff_org)
    projects_of_org: dict[int, list[int]] = defaultdict(list)
    for p, o in world.org_of_project.items():
        projects_of_org[o].append(p)
    step = dt.timedelta(seconds=SIMULATED_SPAN_S / max(1, donations))
    unique: list[PaidGift] = []
    for n in range(donations):
        roll = rng.random()
        payer = device = None
        if roll < 0.01:
            donor = rng.choice(ring)
            payer, device = _hash("payer-ring", donor % 3), _hash("device-ring", donor % 3)
        elif roll < 0.012 and staff:
            donor = rng.choice(staff)
        elif roll < 0.017:
            donor = rng.choice(bots)
        elif roll < 0.217:
            donor = rng.choice(keen)
        else:
            donor = rng.choice(donors)
        if donor in world.staff_org and rng.random() < 0.5:
            project = rng.choice(projects_of_org[world.staff_org[donor]])
        else:
            project = order[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
        anonymous = rng.random() < 0.1
        unique.append(PaidGift(
            order_id=f"o_bench{n:09d}", campaign_id=world.campaign_id, project_id=project,
            donor_id=donor, donor_name="爱心人士" if anonymous else f"捐赠人{donor}",
            anonymous=anonymous, message="", province=PROVINCES[donor % len(PROVINCES)],
            amount_fen=_amount(rng), provider=PROVIDER, provider_txn_id=f"bench-txn-{n}",
            payer_hash=payer or _hash("payer", donor), device_hash=device or _hash(
                "device", donor), paid_at=opening + n * step,
        ))
    submissions: list[PaidGift] = []
    later: list[tuple[int, PaidGift]] = []  # (position, retried gift)
    for n, gift in enumerate(unique):
        while later and later[0][0] <= n:
            submissions.append(later.pop(0)[1])
        submissions.append(gift)
        if rng.random() < DUPLICATE_RATE:
            if rng.random() < 0.5:
                submissions.append(gift)  # retried at once: likely in the same batch
            else:
                bisect.insort(later, (n + rng.randint(50, 5_000), gift),
                              key=lambda pair: pair[0])
    submissions.extend(g for _, g in later)
    return Workload(submissions=submissions, unique=unique)


# --- runs ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one run measured."""

    seconds: float
    cpu_seconds: float  # this process's CPU time during the run (all its threads)
    started_at: dt.datetime
    latencies: list[float]
    results: list[GiftResult | None]
    errors: list[str]
    start: float = 0.0  # time.perf_counter() when the clock started (CLOCK_MONOTONIC on Linux:
    end: float = 0.0  # comparable between processes of one machine) and the last answer
    stats: dict[str, Any] = field(default_factory=dict)  # the engine's own counts
    busy_start: float | None = None  # machine_busy_seconds() at start and at the last answer
    busy_end: float | None = None
    db_cpu_start: float | None = None  # postgres_cpu_seconds() likewise (PostgreSQL)
    db_cpu_end: float | None = None


def run_engine(database: Database, submissions: Sequence[PaidGift], *, rate: float = 0,
               in_flight: int = 10_000, engine_options: dict[str, Any] | None = None,
               progress: ProgressFn = _no_progress,
               engine_class: type[GroupCommitEngine] = GroupCommitEngine,
               before_start: Callable[[], None] | None = None) -> RunResult:
    """Submit every gift to a ``GroupCommitEngine`` (or ``engine_class``); measure submit →
    durable. ``before_start`` runs once the engine is up, just before the clock starts (a
    writer process waits there for the others)."""
    count = len(submissions)
    submitted_at = [0.0] * count
    done_at = [0.0] * count
    futures: list[concurrent.futures.Future[GiftResult] | None] = [None] * count
    # Kept cheap on purpose: the callback runs in the engine's writer thread, and the
    # generator and this thread share the GIL with it. No semaphore, no polling of futures.
    resolved = [0]  # written by the writer thread only (a rare lost increment is harmless)
    finished = threading.Event()
    ticket = itertools.count(1)
    generator_failed: list[BaseException] = []
    clock = time.perf_counter

    def on_done(index: int, _future: concurrent.futures.Future[GiftResult]) -> None:
        done_at[index] = clock()
        resolved[0] += 1
        if next(ticket) == count:  # itertools.count is atomic under the GIL
            finished.set()

    engine = engine_class(database, **(engine_options or {}))
    engine.start()
    if before_start is not None:
        before_start()
    gc.collect()
    gc.freeze()  # the pre-built workload is never garbage: keep the collector off it
    started_at = utcnow()
    cpu_start = time.process_time()
    busy_start = machine_busy_seconds()
    db_cpu_start = postgres_cpu_seconds() if not database.is_sqlite else None
    start = clock()

    def generate() -> None:
        submit = engine.submit
        try:
            for index, gift in enumerate(submissions):
                if not rate:
                    # As fast as the engine takes them: at most ``in_flight`` unanswered.
                    # Once full, wait (in 2 ms naps) until a quarter has been answered, so
                    # the generator wakes rarely instead of spinning against the writer.
                    if index - resolved[0] >= in_flight:
                        while index - resolved[0] > in_flight * 3 // 4:
                            time.sleep(0.002)
                    submitted_at[index] = clock()
                else:
                    due = start + index / rate
                    wait = due - clock()
                    if wait > 0.0005:
                        time.sleep(wait)
                    submitted_at[index] = due  # open loop: count from the scheduled arrival
                future = submit(gift)
                futures[index] = future
                future.add_done_callback(functools.partial(on_done, index))
        except BaseException as exc:
            generator_failed.append(exc)
            finished.set()
            raise

    generator = threading.Thread(target=generate, name="giving-day-generator", daemon=True)
    generator.start()
    if count:
        while not finished.wait(0.25):
            progress("engine", min(resolved[0], count), count)
    generator.join()
    if generator_failed:
        engine.stop()
        gc.unfreeze()
        raise RuntimeError("the workload generator failed") from generator_failed[0]
    busy_end = machine_busy_seconds()
    db_cpu_end = postgres_cpu_seconds() if not database.is_sqlite else None
    progress("engine", count, count)
    cpu_seconds = time.process_time() - cpu_start
    engine.stop()
    gc.unfreeze()
    stats = engine.stats()
    errors: list[str] = []
    results: list[GiftResult | None] = []
    for future in futures:
        assert future is not None  # noqa: S101 - the generator filled every slot
        exc = future.exception()
        if exc is not None:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            results.append(None)
        else:
            results.append(future.result())
    end = max(done_at) if count else start
    latencies = [d - s for d, s in zip(done_at, submitted_at, strict=True)]
    return RunResult(seconds=end - start, cpu_seconds=cpu_seconds, started_at=started_at,
                     latencies=latencies, results=results, errors=errors, start=start,
                     end=end, stats=stats, busy_start=busy_start, busy_end=busy_end,
                     db_cpu_start=db_cpu_start, db_cpu_end=db_cpu_end)


def _writer_process(url: str, index: int, gifts: list[PaidGift], rate: float, in_flight: int,
                    engine_options: dict[str, Any], ready: Any, go: Any, done: Any,
                    answer: Any) -> None:
    """One escrow writer process of :func:`run_writers` (a ``spawn`` child): its own
    database connections, its own :class:`EscrowEngine`, its share of the workload."""
    database = Database(url)

    def wait_for_the_others() -> None:
        ready.put(index)
        go.wait()

    def count(_phase: str, finished: int, _total: int) -> None:
        done.value = finished

    try:
        run = run_engine(database, gifts, rate=rate, in_flight=in_flight,
                         engine_options={"worker": f"bench-writer-{index}", **engine_options},
                         progress=count, engine_class=EscrowEngine,
                         before_start=wait_for_the_others)
        answer.send(run)
    except BaseException as exc:
        answer.send(f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        answer.close()
        database.dispose()


def run_writers(database: Database, submissions: Sequence[PaidGift], *, writers: int,
                rate: float = 0, in_flight: int = 10_000,
                engine_options: dict[str, Any] | None = None,
                progress: ProgressFn = _no_progress) -> tuple[RunResult, list[RunResult]]:
    """``writers`` escrow writer processes (:class:`EscrowEngine`, ``docs/locking.md``,
    "Several writers") share the workload: submission ``i`` goes to writer ``i % writers``
    (so a retried delivery may reach another writer than its first, as it may in
    production). Each waits, engine started, until all are ready; the clock runs from the
    common start to the last answer. Returns the merged run (answers in submission order)
    and each writer's own."""
    ctx = multiprocessing.get_context("spawn")  # no inherited threads, pools or locks
    count = len(submissions)
    ready = ctx.Queue()
    go = ctx.Event()
    counters = [ctx.Value("q", 0, lock=False) for _ in range(writers)]
    pipes = [ctx.Pipe(duplex=False) for _ in range(writers)]
    processes = [
        ctx.Process(target=_writer_process, name=f"giving-day-writer-{k}", daemon=True,
                    args=(database.url, k, list(submissions[k::writers]), rate / writers,
                          max(1, in_flight // writers), engine_options or {}, ready, go,
                          counters[k], pipes[k][1]))
        for k in range(writers)
    ]
    for process in processes:
        process.start()
    for _, sender in pipes:
        sender.close()  # the children hold them: EOF reaches us if one dies
    try:
        for _ in range(writers):
            ready.get(timeout=120)
        started_at = utcnow()
        go.set()
        runs: list[RunResult | None] = [None] * writers
        while any(r is None for r in runs):
            progress("engine", min(count, sum(int(c.value) for c in counters)), count)
            for k, (receiver, _) in enumerate(pipes):
                if runs[k] is None and receiver.poll(0.05):
                    got = receiver.recv()
                    if not isinstance(got, RunResult):
                        raise RuntimeError(f"giving-day writer {k} failed: {got}")
                    runs[k] = got
            for k, process in enumerate(processes):
                if runs[k] is None and not process.is_alive() and not pipes[k][0].poll():
                    raise RuntimeError(f"giving-day writer {k} died (exit {process.exitcode})")
        progress("engine", count, count)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    done = [r for r in runs if r is not None]
    results: list[GiftResult | None] = [None] * count
    latencies = [0.0] * count
    for k, run in enumerate(done):
        results[k::writers] = run.results
        latencies[k::writers] = run.latencies
    first = min(done, key=lambda r: r.start)
    last = max(done, key=lambda r: r.end)
    merged = RunResult(seconds=last.end - first.start,
                       cpu_seconds=sum(r.cpu_seconds for r in done), started_at=started_at,
                       latencies=latencies, results=results,
                       errors=[e for r in done for e in r.errors], start=first.start,
                       end=last.end, busy_start=first.busy_start, busy_end=last.busy_end,
                       db_cpu_start=first.db_cpu_start, db_cpu_end=last.db_cpu_end)
    return merged, done


def run_baseline(database: Database, submissions: Sequence[PaidGift], *,
                 progress: ProgressFn = _no_progress) -> RunResult:
    """One transaction per gift (``apply_batch(session, [gift])``), one after the other."""
    count = len(submissions)
    latencies: list[float] = []
    results: list[GiftResult | None] = []
    errors: list[str] = []
    clock = time.perf_counter
    started_at = utcnow()
    cpu_start = time.process_time()
    start = clock()
    for index, gift in enumerate(submissions):
        t0 = clock()
        try:
            with database.transaction() as session:
                results.extend(apply_batch(session, [gift], worker="baseline"))
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            results.append(None)
        latencies.append(clock() - t0)
        if index % 200 == 0:
            progress("baseline", index, count)
    seconds = clock() - start
    cpu_seconds = time.process_time() - cpu_start
    progress("baseline", count, count)
    return RunResult(seconds=seconds, cpu_seconds=cpu_seconds, started_at=started_at,
                     latencies=latencies, results=results, errors=errors)


# --- invariants ----------------------------------------------------------------------------

_COUNTED = (MatchStatus.MATCHED, MatchStatus.HELD)  # matches that spend the pool's money


def check_caps(session: Session, campaign_id: int) -> list[str]:
    """Recompute every pool's caps from the gift rows; return the violations found.

    Per gift: a match only for a gift of at least the minimum, never above the per-gift cap,
    nor above the gift times the rule's largest ratio (or the floor, never above the gift).
    Per pool: matches per donor per day, per project per day, per organization, per day, and
    in all — each within its cap and the pool's budget.
    """
    violations: list[str] = []
    rules: dict[tuple[int, int], RuleParams] = {
        (int(pool_id), int(version)): RuleParams.model_validate(params)
        for pool_id, version, params in session.execute(
            select(PoolRule.pool_id, PoolRule.version, PoolRule.params)
            .join(MatchPool, MatchPool.id == PoolRule.pool_id)
            .where(MatchPool.campaign_id == campaign_id)
        )
    }
    pools = {p.id: p for p in session.scalars(
        select(MatchPool).where(MatchPool.campaign_id == campaign_id))}
    counted = CampaignGift.match_status.in_(_COUNTED)
    base = (CampaignGift.campaign_id == campaign_id, counted, CampaignGift.matched_fen > 0)

    for pool_id, version, amount, matched in session.execute(
        select(CampaignGift.pool_id, CampaignGift.rule_version, CampaignGift.amount_fen,
               CampaignGift.matched_fen).where(*base)
    ):
        rule = rules.get((int(pool_id or 0), int(version or 0)))
        if rule is None:
            violations.append(f"a match from pool {pool_id} names unknown rule v{version}")
            continue
        if amount < rule.min_gift_fen:
            violations.append(f"pool {pool_id}: matched a gift below the minimum")
        if rule.max_match_per_gift_fen is not None and matched > rule.max_match_per_gift_fen:
            violations.append(f"pool {pool_id}: {matched} above the per-gift cap")
        ratios = ([Fraction(o.num, o.den) for o in rule.random] if rule.random is not None
                  else [Fraction(rule.ratio_num, rule.ratio_den)])
        ceiling = max(math.floor(amount * max(ratios)), min(rule.floor_fen, amount))
        if matched > max(ceiling, math.ceil(amount * max(ratios))):
            violations.append(f"pool {pool_id}: {matched} for a gift of {amount}")

    def sums(*keys: Any) -> Iterator[tuple[Any, ...]]:
        yield from session.execute(
            select(CampaignGift.pool_id, *keys, func.sum(CampaignGift.matched_fen))
            .where(*base).group_by(CampaignGift.pool_id, *keys)
        )

    def current(pool_id: int) -> RuleParams:
        return rules[(pool_id, pools[pool_id].rule_version)]

    for pool_id, _donor, _day, total in sums(CampaignGift.donor_id, CampaignGift.day):
        cap = current(pool_id).per_donor_daily_cap_fen
        if cap is not None and total > cap:
            violations.append(f"pool {pool_id}: {total} for one donor in a day (cap {cap})")
    for pool_id, _project, _day, total in sums(CampaignGift.project_id, CampaignGift.day):
        cap = current(pool_id).per_project_daily_cap_fen
        if cap is not None and total > cap:
            violations.append(f"pool {pool_id}: {total} for one project in a day (cap {cap})")
    for pool_id, _org, total in sums(CampaignGift.organization_id):
        cap = current(pool_id).per_org_cap_fen
        if cap is not None and total > cap:
            violations.append(f"pool {pool_id}: {total} for one organization (cap {cap})")
    spent: dict[int, int] = defaultdict(int)
    for pool_id, _day, total in sums(CampaignGift.day):
        spent[pool_id] += int(total)
        cap = current(pool_id).daily_pot_fen
        if cap is not None and total > cap:
            violations.append(f"pool {pool_id}: {total} in a day (pot {cap})")
    for pool_id, pool in pools.items():
        if pool.kind != PoolKind.MATCHING:
            continue
        if spent[pool_id] > pool.committed_fen:
            violations.append(f"pool {pool_id}: matched {spent[pool_id]} of "
                              f"{pool.committed_fen}")
        if pool.remaining_fen != pool.committed_fen - spent[pool_id]:
            violations.append(f"pool {pool_id}: remaining {pool.remaining_fen} but "
                              f"{pool.committed_fen} − {spent[pool_id]} matched")
    return violations


def check_invariants(database: Database, world: World, submissions: Sequence[PaidGift],
                     results: Sequence[GiftResult | None]) -> dict[str, Any]:
    """Check the run's invariants (see module doc); return the booleans and what failed."""
    outcomes: dict[str, list[str]] = defaultdict(list)
    for gift, result in zip(submissions, results, strict=True):
        outcomes[gift.order_id].append(result.outcome if result else "error")
    unique: dict[str, PaidGift] = {g.order_id: g for g in submissions}
    answered_once = all(
        sorted(seen) == ["credited"] + ["duplicate"] * (len(seen) - 1)
        for seen in outcomes.values()
    )
    with database.transaction(write=False) as session:
        report = ledger.check(session)
        logged = transparency_check(session)
        rows, orders = session.execute(
            select(func.count(), func.count(func.distinct(CampaignGift.order_id)))
            .where(CampaignGift.campaign_id == world.campaign_id)
        ).one()
        raised = dict(session.execute(
            select(CampaignGift.project_id, func.sum(CampaignGift.amount_fen))
            .where(CampaignGift.campaign_id == world.campaign_id)
            .group_by(CampaignGift.project_id)
        ).all())
        matched = dict(session.execute(
            select(CampaignGift.project_id, func.sum(CampaignGift.matched_fen))
            .where(CampaignGift.campaign_id == world.campaign_id,
                   CampaignGift.match_status == MatchStatus.MATCHED)
            .group_by(CampaignGift.project_id)
        ).all())
        funds = ledger.balances(session, [ledger.project_fund(p) for p in world.project_ids])
        pools = session.scalars(select(MatchPool).where(
            MatchPool.campaign_id == world.campaign_id).order_by(MatchPool.id)).all()
        pool_balances = ledger.balances(session, [ledger.match_pool(p.id) for p in pools])
        pools_match = all(pool_balances[ledger.match_pool(p.id)] == p.remaining_fen
                          for p in pools)
        caps = check_caps(session, world.campaign_id)
    expected_raised: dict[int, int] = defaultdict(int)
    for gift in unique.values():
        expected_raised[gift.project_id] += gift.amount_fen
    funds_match = all(
        funds[ledger.project_fund(p)] == int(raised.get(p, 0)) + int(matched.get(p, 0))
        for p in world.project_ids
    )
    raised_match = all(int(raised.get(p, 0)) == expected_raised.get(p, 0)
                       for p in world.project_ids)
    exactly_once = (answered_once and rows == orders == len(unique) and raised_match
                    and funds_match)
    return {
        "ledger_balanced": report.ok,
        "caps_respected": not caps,
        "exactly_once": exactly_once,
        "pool_remaining_equals_ledger": pools_match,
        "log_equals_ledger": logged.ok,
        "problems": (caps[:10]
                     + [f"transparency log: {k} ×{n}" for k, n in logged.counts.items()]
                     + ([] if answered_once else ["an order was not credited exactly once"])
                     + ([] if rows == orders == len(unique) else
                        [f"{rows} gift rows, {orders} order ids, {len(unique)} orders"])
                     + ([] if raised_match else ["raised per project differs from gifts"])
                     + ([] if funds_match else ["a project's ledger balance differs"])
                     + ([] if pools_match else ["a pool's row differs from its ledger"])
                     + ([] if report.ok else ["ledger check failed"])),
    }


def pool_report(database: Database, world: World, started_at: dt.datetime) -> dict[str, Any]:
    """Budget, matched money and when (seconds into the run) each pool ran out."""
    with database.transaction(write=False) as session:
        pools = session.scalars(select(MatchPool).where(
            MatchPool.campaign_id == world.campaign_id,
            MatchPool.kind == PoolKind.MATCHING).order_by(MatchPool.id)).all()
        report: list[dict[str, Any]] = []
        for pool in pools:
            ran_out = pool.exhausted_at
            if ran_out is None and pool.remaining_fen == 0:
                # The engine did not stamp it: the commit of the pool's last match.
                ran_out = session.scalar(
                    select(func.max(CampaignBatch.committed_at))
                    .join(CampaignGift, CampaignGift.batch_id == CampaignBatch.id)
                    .where(CampaignGift.pool_id == pool.id)
                )
            report.append({
                "pool_id": pool.id, "name": pool.name, "budget_fen": pool.committed_fen,
                "matched_fen": pool.committed_fen - pool.remaining_fen,
                "remaining_fen": pool.remaining_fen,
                "exhausted_at_s": (round((ran_out - started_at).total_seconds(), 3)
                                   if ran_out is not None else None),
            })
        reasons = Counter(dict(session.execute(
            select(CampaignGift.reason, func.count())
            .where(CampaignGift.campaign_id == world.campaign_id)
            .group_by(CampaignGift.reason)
        ).all()))
        statuses = Counter(dict(session.execute(
            select(CampaignGift.match_status, func.count())
            .where(CampaignGift.campaign_id == world.campaign_id)
            .group_by(CampaignGift.match_status)
        ).all()))
        batches = session.execute(
            select(func.count(), func.avg(CampaignBatch.gifts), func.max(CampaignBatch.gifts))
            .where(CampaignBatch.worker != "baseline")
        ).one()
    exhausted = [float(p["exhausted_at_s"]) for p in report if p["exhausted_at_s"] is not None]
    return {
        "pools": report,
        "pool_exhausted_at_s": min(exhausted) if exhausted else None,
        "matched_fen": sum(p["matched_fen"] for p in report),
        "budget_fen": sum(p["budget_fen"] for p in report),
        "reasons": {str(k or "matched"): v for k, v in sorted(reasons.items())},
        "match_status": {str(getattr(k, "value", k)): v for k, v in sorted(statuses.items())},
        "batches": {"count": int(batches[0] or 0),
                    "mean_gifts": round(float(batches[1] or 0), 1),
                    "max_gifts": int(batches[2] or 0)},
    }


def quadratic_round(database: Database, world: World, budget_fen: int) -> dict[str, Any]:
    """End the campaign and share a quadratic pool over the run's gifts; time it."""
    with database.transaction() as session:
        session.execute(update(Campaign).where(Campaign.id == world.campaign_id)
                        .values(status=CampaignStatus.ENDED))
        pool_id = create_pool(session, campaign_id=world.campaign_id, name="二次方配捐",
                              priority=1_000, budget_fen=budget_fen,
                              params={"per_project_daily_cap_fen": max(1, budget_fen // 20)},
                              kind=PoolKind.QUADRATIC)
    t0 = time.perf_counter()
    with database.transaction() as session:
        shares = quadratic.distribute(session=session, actor=None, pool_id=pool_id)
    seconds = time.perf_counter() - t0
    with database.transaction(write=False) as session:
        pool = session.get_one(MatchPool, pool_id)
        ok = ledger.check(session).ok and pool.remaining_fen == ledger.balance(
            session, ledger.match_pool(pool_id))
        distributed = pool.committed_fen - pool.remaining_fen
    return {"budget_fen": budget_fen, "distributed_fen": distributed,
            "projects": sum(1 for s in shares if s.share_fen),
            "capped": sum(1 for s in shares if s.share_fen == max(1, budget_fen // 20)),
            "seconds": round(seconds, 3), "ledger_balanced": ok}


# --- the whole benchmark -------------------------------------------------------------------


def _machine_cost(run: RunResult, credited: int) -> dict[str, Any]:
    """CPU per gift: the writer processes' own, the database server's (PostgreSQL, from
    ``/proc``: its share apart from other work on the machine), and the whole machine's."""
    cost: dict[str, Any] = {
        "writer_cpu_us_per_gift": round(run.cpu_seconds / credited * 1e6, 1) if credited
        else None,
        "database_cpu_us_per_gift": None, "machine_busy_s": None,
        "machine_cpu_us_per_gift": None, "machine_cores_busy": None}
    if not credited or not run.seconds:
        return cost
    if run.db_cpu_start is not None and run.db_cpu_end is not None:
        cost["database_cpu_us_per_gift"] = round(
            (run.db_cpu_end - run.db_cpu_start) / credited * 1e6, 1)
    if run.busy_start is not None and run.busy_end is not None:
        busy = run.busy_end - run.busy_start
        cost |= {"machine_busy_s": round(busy, 2),
                 "machine_cpu_us_per_gift": round(busy / credited * 1e6, 1),
                 "machine_cores_busy": round(busy / run.seconds, 2)}
    return cost


def _writer_report(index: int, run: RunResult) -> dict[str, Any]:
    credited = sum(1 for r in run.results if r is not None and r.outcome == "credited")
    return {"writer": index, "submissions": len(run.results), "donations": credited,
            "seconds": round(run.seconds, 3),
            "donations_per_s": round(credited / run.seconds, 1) if run.seconds else None,
            "cpu_seconds": round(run.cpu_seconds, 3), **run.stats}


def _versions(database: Database) -> dict[str, str]:
    with database.engine.connect() as conn:
        if database.is_sqlite:
            return {"sqlite": str(conn.exec_driver_sql("select sqlite_version()").scalar())}
        return {"postgresql": str(conn.exec_driver_sql("show server_version").scalar())}


def _prepare(database: Database, *, donations: int, opening: dt.datetime,
             seed: int) -> tuple[World, Workload]:
    donors = max(50, min(MAX_DONORS, donations // 4))
    world = setup_world(database, donors=donors, opening=opening)
    workload = build_workload(world, donations=donations, opening=opening, seed=seed)
    setup_pools(database, world, workload.unique)
    return world, workload


def bench_giving_day(*, db: str, donations: int, rate: float = 0, in_flight: int = 10_000,
                     baseline_sample: int = BASELINE_SAMPLE, seed: int = 99,
                     engine_options: dict[str, Any] | None = None, quadratic_pool: bool = True,
                     writers: int | None = None,
                     progress: ProgressFn = _no_progress) -> dict[str, Any]:
    """Run the engine and the naive baseline on the same workload; return the report.

    ``writers=None``: one :class:`GroupCommitEngine` in this process. ``writers=K``: K
    escrow writer processes (:func:`run_writers`); once they stop, the log's queue is
    sequenced (timed as ``log_drain_s``) before the invariants are checked."""
    if writers is not None and (writers < 1 or (writers > 1 and db == "sqlite")):
        raise ValueError("SQLite takes one writer process; several need PostgreSQL")
    opening = _opening_time()
    progress("setup", 0, 1)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with throwaway_database(db) as database:
        world, workload = _prepare(database, donations=donations, opening=opening, seed=seed)
        versions = _versions(database)
        progress("setup", 1, 1)
        per_writer: list[RunResult] = []
        log_drain_s = None
        if writers is None:
            run = run_engine(database, workload.submissions, rate=rate, in_flight=in_flight,
                             engine_options=engine_options, progress=progress)
        else:
            run, per_writer = run_writers(database, workload.submissions, writers=writers,
                                          rate=rate, in_flight=in_flight,
                                          engine_options=engine_options, progress=progress)
            drain_start = time.perf_counter()
            sequencer.drain(database)
            log_drain_s = round(time.perf_counter() - drain_start, 3)
        progress("checking", 0, 1)
        invariants = check_invariants(database, world, workload.submissions, run.results)
        pools = pool_report(database, world, run.started_at)
        qf = (quadratic_round(database, world, budget_fen=max(100, pools["budget_fen"] // 10))
              if quadratic_pool and not run.errors else None)
        progress("checking", 1, 1)

    sample = workload.submissions[: min(len(workload.submissions), baseline_sample)]
    with throwaway_database(db, suffix="_baseline") as database:
        base_world, base_workload = _prepare(database, donations=donations, opening=opening,
                                             seed=seed)
        if (base_world.project_ids, base_world.donor_ids, base_world.pool_ids) != (
                world.project_ids, world.donor_ids, world.pool_ids):
            raise RuntimeError("the baseline's world differs from the engine run's")
        baseline = run_baseline(database, sample, progress=progress)
        base_invariants = check_invariants(database, world, sample, baseline.results)

    credited = sum(1 for r in run.results if r is not None and r.outcome == "credited")
    base_credited = sum(1 for r in baseline.results
                        if r is not None and r.outcome == "credited")
    rate_engine = credited / run.seconds if run.seconds else 0.0
    rate_base = base_credited / baseline.seconds if baseline.seconds else 0.0
    lat = percentiles(run.latencies)
    base_lat = percentiles(baseline.latencies)
    flags = {k: bool(invariants[k]) for k in
             ("ledger_balanced", "caps_respected", "exactly_once", "pool_remaining_equals_ledger",
              "log_equals_ledger")}
    base_flags = {k: bool(base_invariants[k]) for k in flags}
    return {
        "benchmark": "giving-day",
        "db": db,
        "donations": credited,
        "submissions": len(workload.submissions),
        "duplicates": len(workload.submissions) - len(workload.unique),
        "donors": len(world.donor_ids),
        "projects": len(world.project_ids),
        "rate_target": rate or "max",
        "seconds": round(run.seconds, 3),
        "donations_per_s": round(rate_engine, 1),
        "p50_ms": lat.get("p50_ms"),
        "p95_ms": lat.get("p95_ms"),
        "p99_ms": lat.get("p99_ms"),
        "max_ms": lat.get("max_ms"),
        "cpu_seconds": round(run.cpu_seconds, 3),
        "donations_per_cpu_s": round(credited / run.cpu_seconds, 1) if run.cpu_seconds else None,
        # The whole machine (this process, its writers, the database server, anything else
        # running): what a gift costs in CPU everywhere, and how many cores the run kept busy.
        **_machine_cost(run, credited),
        "baseline_donations": base_credited,
        "baseline_seconds": round(baseline.seconds, 3),
        "baseline_cpu_seconds": round(baseline.cpu_seconds, 3),
        "baseline_donations_per_s": round(rate_base, 1),
        "baseline_p50_ms": base_lat.get("p50_ms"),
        "baseline_p99_ms": base_lat.get("p99_ms"),
        "speedup": round(rate_engine / rate_base, 1) if rate_base else None,
        "pool_exhausted_at_s": pools["pool_exhausted_at_s"],
        "matched_fen": pools["matched_fen"],
        "budget_fen": pools["budget_fen"],
        "raised_fen": sum(g.amount_fen for g in workload.unique),
        "pools": pools["pools"],
        "reasons": pools["reasons"],
        "match_status": pools["match_status"],
        "batches": pools["batches"],
        "quadratic": qf,
        "errors": len(run.errors) + len(baseline.errors),
        "first_errors": (run.errors + baseline.errors)[:5],
        "invariants": flags,
        "baseline_invariants": base_flags,
        "problems": invariants["problems"] + base_invariants["problems"],
        "engine_options": engine_options or {},
        "writers": writers or 1,
        "writer_engine": "group-commit" if writers is None else "escrow",
        "per_writer": [_writer_report(k, w) for k, w in enumerate(per_writer)],
        "log_drain_s": log_drain_s,
        "machine": {**machine(), **versions,
                    "loadavg_at_start": load_before,
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
