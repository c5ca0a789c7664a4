"""``shanju bench http``: giving-day gifts through the running server, over loopback.

What is measured: the payment provider's notifications of paid giving-day orders sent by
several client processes at full speed to one uvicorn server on a throw-away database seeded
with a live campaign, its projects, donors and sponsors' pools (pools run out during the run).

* ``--provider wechatpay`` (the default): WeChat Pay API v3 notifications
  (``TRANSACTION.SUCCESS``) to ``POST /api/v1/payments/notify/wechatpay``, built exactly as
  the WeChat Pay emulator builds them (``WeChatPayEmulator.build_callback``: the resource
  encrypted with the APIv3 key, AEAD_AES_256_GCM; the body signed with the emulated platform
  key), for payment orders (``payment_intents`` rows with the campaign, the project's
  organization's approved sub-merchant and the amount) written in bulk before the clock. The
  server runs the production gateway (``WeChatPayGateway``, the ``wechatpayv3`` SDK)
  configured on the emulator's keys through the registry's ``SHANJU_WECHATPAY_*`` variables.
  Timed: verification and decryption, the read of the order, the group-commit engine's batch
  (the event, the order paid, the gift, its match, the ledger), the 204 once durable.
* ``--provider sandbox``: the old path for comparison — the sandbox's signed callbacks of
  *stateless* orders (``POST /api/v1/payments/callbacks/sandbox/orders``; orders minted as
  signed tokens, nothing written before the money arrives).

Before the clock starts: the database is seeded and the orders and the provider's signed
notifications built (the provider's work, not the platform's). The clients then only send bytes
and read answers: a raw asyncio HTTP/1.1 client with keep-alive connections, each connection
sending its next notification when the previous one is answered (closed loop), so the client
costs little of the machine's CPU. A notification is signed with a timestamp and the gateway
refuses one more than 5 minutes old, so they are signed once the server is up.

The last line printed is one JSON object (see :func:`run`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from shanju.accounts.models import Role, User
from shanju.bench.giving_day import create_pool
from shanju.campaigns import orders
from shanju.campaigns.models import (
    Campaign,
    CampaignGift,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    MatchPool,
)
from shanju.core.clock import today_cn, utcnow
from shanju.core.db import Database
from shanju.core.ids import public_id
from shanju.core.migrations import create_schema
from shanju.core.security import hash_password
from shanju.ledger import service as ledger
from shanju.organizations import payment_routes, uscc
from shanju.organizations.models import (
    Organization,
    OrgStatus,
    OrgType,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
from shanju.payments.emulators.wechatpay import (
    EmulatedOrder,
    WeChatPayEmulator,
    WeChatPayEmulatorKeys,
)
from shanju.payments.models import IntentStatus, PaymentIntent, ProviderEvent
from shanju.payments.providers import SandboxProvider
from shanju.projects.models import Project, ProjectStatus
from shanju.transparency.check import check as transparency_check

Progress = Callable[[int], None]
SECRET_KEY = "bench-http-secret-key"  # noqa: S105 - a throw-away key for a throw-away database
SANDBOX_SECRET = "bench-http-sandbox-secret"  # noqa: S105
CALLBACK_PATH = "/api/v1/payments/callbacks/sandbox/orders"
NOTIFY_PATH = "/api/v1/payments/notify/wechatpay"
PROVIDERS = ("wechatpay", "sandbox")
# Where the gateway would call the emulator's API: never during the run (notifications only).
EMULATOR_URL = "http://127.0.0.1:9"
# Amounts donors give (fen) and how often: mostly small gifts, a few large ones.
AMOUNTS = ((100, 10), (500, 15), (1_000, 25), (2_000, 15), (5_000, 15), (9_900, 10),
           (10_000, 5), (20_000, 3), (50_000, 2))


@dataclass(frozen=True)
class World:
    """What the seeded database holds."""

    campaign_id: int
    project_ids: list[int]
    donor_ids: list[int]
    pool_ids: list[int]
    budget_fen: int
    project_orgs: dict[int, int]


def seed(database: Database, *, donations: int, projects: int = 50, donors: int | None = None
         ) -> World:
    """A live campaign open all day, ``projects`` enrolled projects of 10 organizations,
    donors, and three sponsors' pools whose budgets run out during the run."""
    donors = donors or max(100, donations // 4)
    day = today_cn()
    expected_total = donations * sum(a * w for a, w in AMOUNTS) // sum(w for _, w in AMOUNTS)
    with database.transaction() as s:
        orgs = []
        for n in range(10):
            org = Organization(
                name=f"基准公益基金会{n}", uscc=uscc.make(f"53100000MJ{900_000 + n:06d}"),
                org_type=OrgType.FOUNDATION, registering_authority="民政部", province="北京",
                contact_phone="010-00000000", status=OrgStatus.APPROVED,
                fundraising_cert_no=f"bench{n}", fundraising_valid_from=day - dt.timedelta(30),
                fundraising_valid_until=day + dt.timedelta(365),
            )
            s.add(org)
            orgs.append(org)
        s.flush()
        project_rows = []
        for n in range(projects):
            org = orgs[n % len(orgs)]
            project = Project(
                organization_id=org.id, recipient_org_id=org.id, title=f"基准项目{n}",
                summary="benchmark", province="北京", goal_fen=10**12, fundraising_plan="bench",
                filing_number=f"bench{n}", filing_valid_from=day - dt.timedelta(1),
                filing_valid_until=day + dt.timedelta(365), status=ProjectStatus.FUNDRAISING,
            )
            s.add(project)
            project_rows.append(project)
        s.flush()
        campaign = Campaign(slug="bench-day", name="基准公益日", name_en="Bench giving day",
                            status=CampaignStatus.LIVE, starts_on=day, days=3,
                            opens_at="00:00", closes_at="23:59", org_quota=projects)
        s.add(campaign)
        s.flush()
        for project in project_rows:
            s.add(Enrolment(campaign_id=campaign.id, project_id=project.id,
                            organization_id=project.recipient_org_id,
                            status=EnrolmentStatus.APPROVED))
        password = hash_password("bench-password")
        users = [User(email=f"hb{i}@bench.invalid", display_name=f"捐赠人{i}",
                      password_hash=password, role=Role.DONOR) for i in range(donors)]
        s.add_all(users)
        s.flush()
        # Pools: 1:1 with a per-donor daily cap (first), a random ratio with a floor, and a
        # 1:0.5 pot with a per-project daily cap. Together about 40% of what will be given.
        pools: list[tuple[str, int, dict[str, Any]]] = [
            ("企业配捐 1:1", 10, {"per_donor_daily_cap_fen": 99_900, "min_gift_fen": 100}),
            ("随机配捐", 20, {"random": [{"weight": 3, "num": 1, "den": 1},
                                       {"weight": 1, "num": 0, "den": 1}],
                              "floor_fen": 100, "seed": 7}),
            ("平台配捐 1:0.5", 30, {"ratio_num": 1, "ratio_den": 2,
                                  "per_project_daily_cap_fen": expected_total // 20}),
        ]
        pool_ids = []
        budget_total = 0
        for i, (name, priority, params) in enumerate(pools):
            budget = max(10_000, expected_total * (15, 15, 10)[i] // 100)
            pool_ids.append(create_pool(s, campaign_id=campaign.id, name=name,
                                        priority=priority, budget_fen=budget,
                                        params=params))
            budget_total += budget
        s.flush()
        # Each organization's approved WeChat Pay route: its own sub-merchant (服务商 mode).
        for n, org in enumerate(orgs):
            s.add(PaymentRoute(organization_id=org.id, provider=RouteProvider.WECHATPAY,
                               merchant_id=f"19000{n:05d}", status=RouteStatus.APPROVED,
                               reviewed_at=utcnow()))
        s.flush()
        return World(campaign_id=campaign.id, project_ids=[p.id for p in project_rows],
                     donor_ids=[u.id for u in users], pool_ids=pool_ids,
                     budget_fen=budget_total,
                     project_orgs={p.id: p.recipient_org_id for p in project_rows})


def _workload(world: World, donations: int, seed_: int) -> list[tuple[int, int, int]]:
    """``(donor, project, amount)`` of each gift: reproducible, the same for every provider."""
    rng = random.Random(seed_)  # noqa: S311 - a reproducible workload
    amounts, weights = zip(*AMOUNTS, strict=True)
    out = []
    for _ in range(donations):
        donor_id = rng.choice(world.donor_ids)
        amount = rng.choices(amounts, weights)[0]
        out.append((donor_id, rng.choice(world.project_ids), amount))
    return out


def mint(world: World, *, donations: int, seed_: int = 99) -> tuple[list[bytes], dict[str, int]]:
    """Sandbox: mint ``donations`` stateless orders (as its order endpoint does) and the
    sandbox's signed callbacks for them, as raw HTTP requests; return them and each order's
    amount."""
    signer = orders.OrderSigner(SECRET_KEY)
    sandbox = SandboxProvider(SANDBOX_SECRET)
    requests: list[bytes] = []
    expected: dict[str, int] = {}
    for n, (donor_id, project_id, amount) in enumerate(_workload(world, donations, seed_)):
        actor = User(id=donor_id, display_name=f"捐赠人{donor_id}")
        fields = {"donor_name": actor.display_name, "anonymous": n % 7 == 0,
                  "message": "加油" if n % 3 == 0 else "", "province": "广东",
                  "amount_fen": amount}
        order, token = orders.make_order(
            signer=signer, actor=actor, campaign_id=world.campaign_id,
            project_id=project_id, idempotency_key=f"bench-{n}", fields=fields)
        body, headers = sandbox.build_order_callback(
            order_id=order.order_id, amount_fen=amount, attach=token,
            payer=f"payer-{donor_id}", device=f"device-{donor_id}")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        requests.append(
            (f"POST {CALLBACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
             ).encode() + body)
        expected[order.order_id] = amount
    return requests, expected


@dataclass(frozen=True)
class Order:
    """One giving-day payment order the bench wrote, and the sub-merchant it settles to."""

    order_id: str
    amount_fen: int
    sub_mchid: str
    openid: str


def open_orders(database: Database, world: World, *, donations: int, seed_: int = 99
                ) -> list[Order]:
    """WeChat Pay: write ``donations`` payment orders in bulk, as ``gifts.flows.open_order``
    writes a giving-day order (campaign, project, donor, the organization's approved
    sub-merchant, amount; no donation), in one transaction."""
    rows: list[dict[str, Any]] = []
    out: list[Order] = []
    now = utcnow()
    with database.transaction() as s:
        merchants = {
            org_id: payment_routes.merchant_route(
                session=s, organization_id=org_id, provider="wechatpay",
                secret_key=SECRET_KEY)
            for org_id in set(world.project_orgs.values())}
        for n, (donor_id, project_id, amount) in enumerate(_workload(world, donations, seed_)):
            org_id = world.project_orgs[project_id]
            route = merchants[org_id]
            if route is None:  # pragma: no cover - seed() approves one per organization
                raise RuntimeError(f"organization {org_id} has no WeChat Pay route")
            order_id = public_id("pi")
            rows.append({
                "id": order_id, "provider": "wechatpay", "amount_fen": amount,
                "currency": "CNY", "status": IntentStatus.REQUIRES_PAYMENT,
                "idempotency_scope": f"user:{donor_id}", "idempotency_key": f"bench-{n}",
                "request_hash": f"{n:064d}", "refunded_fen": 0, "created_at": now,
                "merchant_id": route.merchant_id, "organization_id": org_id,
                "project_id": project_id, "campaign_id": world.campaign_id,
                "channel": "wechat_h5", "donor_id": donor_id, "donor_name": f"捐赠人{donor_id}",
                "anonymous": n % 7 == 0, "message": "加油" if n % 3 == 0 else "",
                "province": "广东", "payer_hash": "", "expires_at": now + dt.timedelta(hours=2),
            })
            out.append(Order(order_id, amount, route.merchant_id,
                             f"oBenchPayer{donor_id:020d}"))
        for i in range(0, len(rows), 2_000):
            s.execute(insert(PaymentIntent), rows[i:i + 2_000])
    return out


def notifications(keys: WeChatPayEmulatorKeys, orders_: list[Order]) -> list[bytes]:
    """WeChat Pay's TRANSACTION.SUCCESS notification of each paid order, as raw HTTP
    requests: the emulator's own resource (``WeChatPayEmulator.transaction``) and
    ``build_callback`` (encrypted with the APIv3 key, signed with the platform key, now)."""
    emulator = WeChatPayEmulator(keys, sub_merchants={o.sub_mchid: "基准公益基金会"
                                                      for o in orders_})
    notify_url = f"http://127.0.0.1{NOTIFY_PATH}"
    now = utcnow()
    requests: list[bytes] = []
    for n, o in enumerate(orders_):
        order = EmulatedOrder(
            sp_appid=keys.sp_appid, sp_mchid=keys.sp_mchid, sub_mchid=o.sub_mchid,
            sub_appid=None, out_trade_no=o.order_id, description="善举 · 基准项目",
            total=o.amount_fen, attach="", notify_url=notify_url, trade_type="MWEB",
            time_expire=now + dt.timedelta(hours=2), request={}, token="", prepay_id="",
            created_at=now, paid=True, transaction_id=f"4200{n:09d}{now:%Y%m%d}{n:09d}",
            success_time=now, payer_openid=o.openid)
        callback = emulator.build_callback(notify_url, "TRANSACTION.SUCCESS", "支付成功",
                                           "transaction", emulator.transaction(order),
                                           kind="payment", ref=o.order_id)
        head = "".join(f"{k}: {v}\r\n" for k, v in callback.headers.items())
        requests.append(
            (f"POST {NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Length: {len(callback.body)}\r\n{head}\r\n").encode() + callback.body)
    return requests


# --- the client processes -------------------------------------------------------------------


def _accepted(head: bytes, body: bytes) -> bool:
    """The server's answer says the gift is durable: WeChat Pay's 204, or the sandbox lane's
    200 ``credited``."""
    status = head[9:12]
    return status == b"204" or (status == b"200" and b'"outcome":"credited"' in body)


async def _connection(port: int, batch: list[bytes], latencies: list[float],
                      failures: list[str], done: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    perf = time.perf_counter
    try:
        for n, request in enumerate(batch, 1):
            started = perf()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(perf() - started)
            if not _accepted(head, body):
                failures.append((head[:12] + b" " + body[:160]).decode(errors="replace"))
            if n % 50 == 0:
                with done.get_lock():
                    done.value += 50
        with done.get_lock():
            done.value += len(batch) % 50
    finally:
        writer.close()


def _client(port: int, batches: list[list[bytes]], go: Any, done: Any, out: Any) -> None:
    """One client process: its connections, each sending its batch in a closed loop."""
    latencies: list[float] = []
    failures: list[str] = []
    cpu_before = time.process_time()

    async def main() -> None:
        await asyncio.gather(*(_connection(port, b, latencies, failures, done)
                               for b in batches))

    go.wait()
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        failures.append(f"client: {type(exc).__name__}: {exc}")
    out.put((latencies, failures, time.process_time() - cpu_before))


# --- the server -------------------------------------------------------------------------------


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(database_url: str, port: int, *, environ: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving the app (factory) on ``port``, settings from the environment (and
    ``environ``: a provider's variables): one process, so one group-commit engine (the giving
    day's single writer per process). Returns the process and its port (port 0: any free
    port)."""
    if port == 0:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    if not _free(port):
        raise RuntimeError(f"port {port} is in use")
    env = {**os.environ, "DATABASE_URL": database_url, "SHANJU_SECRET_KEY": SECRET_KEY,
           "SHANJU_SANDBOX_SECRET": SANDBOX_SECRET, "SHANJU_ENVIRONMENT": "test",
           **(environ or {})}
    cmd = [sys.executable, "-m", "uvicorn", "shanju.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning", "--loop", "uvloop",
           "--http", "httptools", "--timeout-graceful-shutdown", "30"]
    # The server's log goes to stderr: stdout is the report's.
    server = subprocess.Popen(cmd, env=env, stdout=2)  # noqa: S603 - our own module (fd 2)
    deadline = time.monotonic() + 120  # importing the app is slow on a busy machine
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start within 120 s")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 without /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop gracefully (the engine drains), or kill after 60 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- the run ----------------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def invariants(database: Database, world: World, expected: dict[str, int], *,
               orders_written: bool = False) -> dict[str, Any]:
    """Ledger balanced, and the transparency log equal to it; every order credited exactly
    once for its amount; pools never below zero and equal to their ledger accounts; matches
    within the budget; project funds = gifts + matches. With payment orders
    (``orders_written``): the orders paid are exactly the gifts, and each order's notification
    is stored once."""
    with database.transaction(write=False) as s:
        report = ledger.check(s)
        logged = transparency_check(s)
        rows = s.execute(select(CampaignGift.order_id, CampaignGift.amount_fen,
                                CampaignGift.matched_fen)).all()
        gifts = {r.order_id: r.amount_fen for r in rows}
        matched = sum(r.matched_fen for r in rows)
        pools = s.execute(select(MatchPool.id, MatchPool.remaining_fen)).all()
        pools_match_ledger = all(
            remaining >= 0 and ledger.balance(s, ledger.match_pool(pid)) == remaining
            for pid, remaining in pools)
        duplicates = int(s.scalar(
            select(func.count()).select_from(
                select(CampaignGift.order_id).group_by(CampaignGift.order_id)
                .having(func.count() > 1).subquery())) or 0)
        raised = sum(ledger.balance(s, ledger.project_fund(p)) for p in world.project_ids)
        paid = set(s.scalars(select(PaymentIntent.id).where(
            PaymentIntent.status == IntentStatus.SUCCEEDED)))
        events = s.execute(select(func.count(), func.count(ProviderEvent.intent_id.distinct()))
                           .select_from(ProviderEvent)).one()
    exactly_once = gifts == expected and duplicates == 0
    checks: dict[str, Any] = {
        "ledger_balanced": report.ok,
        "log_equals_ledger": logged.ok,
        "exactly_once": exactly_once,
        "pools_match_ledger": pools_match_ledger,
        "within_budget": matched <= world.budget_fen,
        "funds_equal_gifts_plus_matches": raised == sum(gifts.values()) + matched,
        "gifts": len(gifts),
        "matched_fen": matched,
        "budget_fen": world.budget_fen,
    }
    if orders_written:
        checks["orders_paid_equal_gifts"] = paid == set(gifts)
        checks["events_once_per_order"] = tuple(events) == (len(expected), len(expected))
        checks["orders_paid"] = len(paid)
    return checks


CHECKS = ("ledger_balanced", "log_equals_ledger", "exactly_once", "pools_match_ledger",
          "within_budget", "funds_equal_gifts_plus_matches", "orders_paid_equal_gifts",
          "events_once_per_order")


def run(
    *,
    donations: int,
    clients: int = 2,
    connections: int = 32,
    port: int = 8106,
    database_url: str | None = None,
    provider: str = "wechatpay",
    progress: Progress | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seed, write the orders, serve, sign, send, check; return the report (``db``,
    ``provider``, ``donations``, ``clients``, ``seconds``, ``donations_per_s``, ``p50_ms``,
    ``p99_ms``, ``errors``, ``server_cpu_us_per_callback``, ``invariants``...)."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}")
    say = on_phase or (lambda _msg: None)
    folder = Path(tempfile.mkdtemp(prefix="shanju-bench-http-"))
    if database_url is None:
        database_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    database = Database(database_url)
    try:
        say("Migrating and seeding the database")
        create_schema(database)
        world = seed(database, donations=donations)
        environ: dict[str, str] = {}
        keys: WeChatPayEmulatorKeys | None = None
        written: list[Order] = []
        if provider == "wechatpay":
            say("Writing the payment orders (before the clock)")
            written = open_orders(database, world, donations=donations)
            expected = {o.order_id: o.amount_fen for o in written}
            # The emulator's keys; the server's gateway reads them from the registry's
            # SHANJU_WECHATPAY_* variables, as an operator would set them.
            keys = WeChatPayEmulatorKeys.in_directory(folder / "wechatpay-keys")
            environ = keys.environ(EMULATOR_URL)
        else:
            say("Minting orders and the provider's signed callbacks (before the clock)")
            requests, expected = mint(world, donations=donations)
        say("Starting the server")
        server, port = start_server(database_url, port, environ=environ)
        try:
            if keys is not None:
                say("Building WeChat Pay's signed, encrypted notifications (before the clock)")
                requests = notifications(keys, written)
                del written
            # Split: clients × connections closed-loop senders, round-robin.
            lanes = clients * connections
            per_lane = [requests[i::lanes] for i in range(lanes)]
            ctx = mp.get_context("fork")
            go, done, out = ctx.Event(), ctx.Value("q", 0), ctx.Queue()
            procs = [ctx.Process(target=_client, args=(
                port, per_lane[c * connections:(c + 1) * connections], go, done, out))
                for c in range(clients)]
            for p in procs:
                p.start()
            del requests, per_lane
            say("Sending")
            load_before = os.getloadavg()[0]
            cpu_before = process_cpu_seconds(server.pid)
            started = time.perf_counter()
            go.set()
            results: list[tuple[list[float], list[str], float]] = []
            reported = 0
            while len(results) < clients:
                try:
                    results.append(out.get(timeout=0.2))
                except Exception:  # noqa: BLE001, S110 - queue.Empty: report progress
                    pass
                now_done = done.value
                if progress and now_done > reported:
                    progress(now_done - reported)
                    reported = now_done
            elapsed = time.perf_counter() - started
            server_cpu = process_cpu_seconds(server.pid) - cpu_before
            load_after = os.getloadavg()[0]
            if progress and donations > reported:
                progress(donations - reported)
            for p in procs:
                p.join()
        finally:
            say("Stopping the server (the engine drains)")
            stop_server(server)
        latencies = sorted(x for lat, _, _ in results for x in lat)
        failures = [f for _, fs, _ in results for f in fs]
        client_cpu = sum(c for _, _, c in results)
        say("Checking invariants")
        checks = invariants(database, world, expected, orders_written=provider == "wechatpay")
    finally:
        database.dispose()
    from shanju.bench.common import machine

    completed = len(latencies)
    ok = (not failures and completed == donations
          and all(checks[name] for name in CHECKS if name in checks))
    per_callback = round(server_cpu / completed * 1e6) if completed else None
    return {
        "benchmark": "http",
        "provider": provider,
        "endpoint": NOTIFY_PATH if provider == "wechatpay" else CALLBACK_PATH,
        "db": database.engine.dialect.name,
        "donations": donations,
        "clients": clients,
        "connections": clients * connections,
        "seconds": round(elapsed, 3),
        "donations_per_s": round(completed / elapsed, 1) if elapsed else None,
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": _percentile(latencies, 1.0),
        "errors": len(failures) + (donations - completed),
        # CPU the server and the clients used while sending: the server's CPU per callback
        # (user + system, from /proc) does not depend on what else the machine is doing.
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_us_per_callback": per_callback,
        "server_cpu_us_per_donation": per_callback,  # the same: one callback per donation
        "client_cpu_s": round(client_cpu, 2),
        "load_average_1m": round(load_after, 2),
        "load_average_1m_before": round(load_before, 2),
        "first_errors": failures[:3],
        "orders_written_before_clock": provider == "wechatpay",
        "invariants": checks,
        "ok": ok,
        "machine": machine(),
    }
