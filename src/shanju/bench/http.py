"""``shanju bench http``: giving-day gifts through the running server, over loopback —
both halves of each gift, and the same client against a bare ASGI endpoint (the floor).

A gift takes two requests, and at a giving day's opening minute both hit the server at once:
the donor's **order** (open a payment order) and the payment provider's **callback** (the order
was paid). The bench serves the app with uvicorn (``--workers W`` processes, each with its own
group-commit engine; on PostgreSQL the campaign row's lock keeps them exact, docs/locking.md)
on a throw-away database seeded with a live campaign, its projects, donors (each with an API
token) and sponsors' pools that run out during the run. Several client processes then send,
on each keep-alive connection in a closed loop, gift after gift: an order request, then a
provider's callback. The callbacks are for orders written before the clock (their provider's
signed notifications built before the clock too: the provider's work, not the platform's);
the orders opened in the window are new ones whose payment would come after it — the steady
state of the opening minute, where each second brings as many new orders as paid ones.

* ``--provider wechatpay`` (the default): the order is ``POST /api/v1/gifts`` (a WeChat Pay H5
  order: validate, write the ``payment_intents`` row, open it at WeChat Pay — the emulator,
  served by its own process, is the provider's API); the callback is WeChat Pay's API v3
  ``TRANSACTION.SUCCESS`` notification to ``POST /api/v1/payments/notify/wechatpay``, built
  as the emulator builds it (resource encrypted with the APIv3 key, body signed with the
  platform key) and answered 204 once the engine's batch is durable. The server runs the
  production gateway (``WeChatPayGateway``) on the emulator's keys
  (``SHANJU_WECHATPAY_*`` variables).
* ``--provider sandbox``: the older stateless path — the order is
  ``POST /api/v1/campaigns/{id}/orders`` (a signed order token, nothing written); the
  callback the sandbox's signed callback (``POST /api/v1/payments/callbacks/sandbox/orders``).

**The floor**: in the same run, before the app starts, the same client processes send the same
requests (same sizes, same JSON bodies, same connections) to :func:`floor_app`, a bare ASGI
endpoint served by uvicorn with the same settings and workers, which reads the body, parses
its JSON and answers. ``ratio = gift_requests_per_s / floor_requests_per_s`` says how much of
the server stack's capacity the gift path leaves.

The client is a raw asyncio HTTP/1.1 client (uvloop) that only sends prepared bytes and reads
answers, so it costs little of the machine's CPU. The last line printed is one JSON object
(see :func:`run`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
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

from shanju.accounts.models import ApiToken, Role, User
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
from shanju.core.security import hash_password, token_hash
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
from shanju.payments.emulators import wechatpay as wechatpay_emulator
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
GIFTS_PATH = "/api/v1/gifts"
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
    tokens: dict[int, str]  # each donor's API token (plain)


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
        # Each donor's personal API token (never used yet: a donor's first order records its
        # use, as it would).
        tokens = {u.id: f"sj_bench{u.id:024d}" for u in users}
        s.execute(insert(ApiToken), [
            {"user_id": uid, "name": "bench", "prefix": plain[:8],
             "token_hash": token_hash(plain)} for uid, plain in tokens.items()])
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
                     project_orgs={p.id: p.recipient_org_id for p in project_rows},
                     tokens=tokens)


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


def order_requests(world: World, *, donations: int, provider: str, seed_: int = 7,
                   key_prefix: str = "bench-order-") -> list[bytes]:
    """The donors' order requests of ``donations`` new gifts, as raw HTTP requests: each
    donor's API token, an Idempotency-Key per gift and the donor's own address (as the
    TLS proxy in front says it, ``X-Forwarded-For``: uvicorn trusts it from 127.0.0.1).
    WeChat Pay: ``POST /api/v1/gifts`` (an H5 order of the giving day); sandbox: the
    campaign's stateless ``POST /api/v1/campaigns/{id}/orders``. Idempotency keys:
    ``key_prefix`` and the gift's number."""
    requests: list[bytes] = []
    for n, (donor_id, project_id, amount) in enumerate(_workload(world, donations, seed_)):
        fields: dict[str, Any] = {
            "project_id": project_id, "amount_fen": amount, "donor_name": f"捐赠人{donor_id}",
            "anonymous": n % 7 == 0, "message": "加油" if n % 3 == 0 else "",
            "province": "广东"}
        if provider == "wechatpay":
            path = GIFTS_PATH
            fields |= {"campaign_id": world.campaign_id, "channel": "wechat_h5"}
        else:
            path = f"/api/v1/campaigns/{world.campaign_id}/orders"
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        address = f"10.{donor_id >> 16 & 255}.{donor_id >> 8 & 255}.{donor_id & 255}"
        requests.append(
            (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
             f"Authorization: Bearer {world.tokens[donor_id]}\r\n"
             f"Idempotency-Key: {key_prefix}{n}\r\nX-Forwarded-For: {address}\r\n\r\n"
             ).encode() + body)
    return requests


# --- the floor: a bare ASGI endpoint ---------------------------------------------------------


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI application: read the request's body, parse its JSON, answer a small JSON
    object (``/healthz``: 200 without a body to parse). What any JSON endpoint on this
    server stack must at least do: the floor the gift path is compared with."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, answer = 200, b'{"ok":true}'
    if scope["path"] != "/healthz":
        try:
            json.loads(body)
        except ValueError:
            status, answer = 400, b'{"ok":false}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


# --- the client processes -------------------------------------------------------------------

ORDER, CALLBACK, FLOOR = 0, 1, 2
KINDS = ("orders", "callbacks", "floor")
Lane = list[tuple[int, bytes]]
Address = tuple[str, int]


def _accepted(kind: int, head: bytes, body: bytes) -> bool:
    """The server's answer is the success of its kind: an order opened (201); a callback's
    gift durable (WeChat Pay's 204, or the sandbox lane's 200 ``credited``); the floor's 200."""
    status = head[9:12]
    if kind == ORDER:
        return status == b"201"
    if kind == CALLBACK:
        return status == b"204" or (status == b"200" and b'"outcome":"credited"' in body)
    return status == b"200"


async def _connection(address: Address, lane: Lane, latencies: list[list[float]],
                      failures: list[str], done: Any, floor: bool) -> None:
    reader, writer = await asyncio.open_connection(*address)
    perf = time.perf_counter
    try:
        for n, (kind, request) in enumerate(lane, 1):
            started = perf()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies[kind].append(perf() - started)
            if not _accepted(FLOOR if floor else kind, head, body):
                failures.append(f"{KINDS[kind]}: "
                                + (head[:12] + b" " + body[:160]).decode(errors="replace"))
            if n % 50 == 0:
                with done.get_lock():
                    done.value += 50
        with done.get_lock():
            done.value += len(lane) % 50
    finally:
        writer.close()


def _client(addresses: list[Address], lanes: list[Lane], floor: bool, go: Any, done: Any,
            out: Any) -> None:
    """One client process: its connections (lane ``i`` to ``addresses[i]``), each sending its
    lane in a closed loop."""
    latencies: list[list[float]] = [[], []]
    failures: list[str] = []
    cpu_before = time.process_time()

    async def main() -> None:
        await asyncio.gather(*(_connection(address, lane, latencies, failures, done, floor)
                               for address, lane in zip(addresses, lanes, strict=True)))

    go.wait()
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        failures.append(f"client: {type(exc).__name__}: {exc}")
    out.put((latencies, failures, time.process_time() - cpu_before))


# --- the servers ------------------------------------------------------------------------------


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# uvicorn's settings, the same for the app and the floor.
UVICORN_OPTIONS = ("--no-access-log", "--log-level", "warning", "--loop", "uvloop",
                   "--http", "httptools", "--timeout-graceful-shutdown", "30")


def start_server(database_url: str, port: int, *, environ: dict[str, str] | None = None,
                 workers: int = 1, target: str = "shanju.app:create_app", factory: bool = True
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``target`` (the app's factory by default) on ``port`` with
    ``workers`` processes (each with its own group-commit engine), settings from the
    environment (and ``environ``: a provider's variables). Returns once every worker has
    started (the process tree's CPU has settled). Port 0: any free port."""
    if port == 0:
        port = _any_port()
    if not _free(port):
        raise RuntimeError(f"port {port} is in use")
    env = {**os.environ, "DATABASE_URL": database_url, "SHANJU_SECRET_KEY": SECRET_KEY,
           "SHANJU_SANDBOX_SECRET": SANDBOX_SECRET, "SHANJU_ENVIRONMENT": "test",
           **(environ or {})}
    cmd = [sys.executable, "-m", "uvicorn", target, *(["--factory"] if factory else []),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           *UVICORN_OPTIONS]
    # The server's log goes to stderr: stdout is the report's.
    server = subprocess.Popen(cmd, env=env, stdout=2)  # noqa: S603 - our own module (fd 2)
    wait_serving(server, ("127.0.0.1", port), workers=workers)
    return server, port


def wait_serving(server: subprocess.Popen[bytes], address: Address, *, workers: int = 1,
                 name: str = "the server") -> None:
    """Return once ``server`` answers ``GET /healthz`` at ``address`` with 200 and, with
    several workers, once its whole process tree is idle (every worker has started); stop it
    and raise RuntimeError if it exits or does not answer within 180 s."""
    deadline = time.monotonic() + 180  # importing the app is slow on a busy machine
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.returncode}")
        try:
            with socket.create_connection(address, timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            time.sleep(0.1)
    else:
        stop_server(server)
        raise RuntimeError(f"{name} did not start within 180 s")
    if workers > 1:
        # One worker answered; the others may still be importing: wait until the whole
        # tree is idle (all W workers up), at most a minute more.
        settle = time.monotonic() + 60
        before = tree_cpu_seconds(server.pid)
        while time.monotonic() < settle:
            time.sleep(0.5)
            now = tree_cpu_seconds(server.pid)
            if len(_children(server.pid)) >= workers and now - before < 0.05:
                break
            before = now


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(c) for c in text)
    except OSError:
        pass
    return out


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 without /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its living descendants (uvicorn's workers)."""
    total = process_cpu_seconds(pid)
    for child in _children(pid):
        total += tree_cpu_seconds(child)
    return total


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop gracefully (each engine drains), or kill after 60 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _serve_emulator(keys_dir: str, port: int, merchants: dict[str, str], host: str,
                    tls: tuple[str, str] | None) -> None:
    """The WeChat Pay emulator's API on ``host:port`` (its own process: the provider's
    side); over TLS with ``tls`` = (certificate file, key file)."""
    import uvicorn

    from shanju.bench.common import die_with_parent

    die_with_parent()
    keys = WeChatPayEmulatorKeys.in_directory(Path(keys_dir))
    emulator = WeChatPayEmulator(keys, sub_merchants=merchants)
    uvicorn.run(wechatpay_emulator.create_app(emulator), host=host, port=port,
                log_level="warning", access_log=False, loop="uvloop", http="httptools",
                ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)


def start_emulator(keys_dir: Path, merchants: dict[str, str], *, host: str = "127.0.0.1",
                   tls: tuple[Path, Path] | None = None) -> tuple[Any, str]:
    """Start the emulator's process on ``host`` (any free port; https with ``tls``, its
    certificate and key files); return it and its base URL once it answers."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    proc = mp.get_context("spawn").Process(
        target=_serve_emulator, daemon=True,
        args=(str(keys_dir), port, merchants, host,
              (str(tls[0]), str(tls[1])) if tls else None))
    proc.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError("the WeChat Pay emulator exited")
        try:
            with socket.create_connection((host, port), timeout=1):
                return proc, f"{'https' if tls else 'http'}://{host}:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the WeChat Pay emulator did not start within 120 s")


# --- the run ----------------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": _percentile(ordered, 0.50), "p95_ms": _percentile(ordered, 0.95),
            "p99_ms": _percentile(ordered, 0.99), "max_ms": _percentile(ordered, 1.0)}


@dataclass
class Sent:
    """What one closed-loop sending of lanes measured."""

    seconds: float
    latencies: list[list[float]]  # by kind (orders, callbacks)
    failures: list[str]
    server_cpu_s: float
    client_cpu_s: float
    load_before: float
    load_after: float

    @property
    def completed(self) -> int:
        return sum(len(k) for k in self.latencies)


def drive(server_pid: int | list[int], port: int, lanes: list[Lane], *, clients: int,
          floor: bool, progress: Progress | None = None,
          addresses: list[Address] | None = None) -> Sent:
    """Send every lane (``clients`` processes, ``len(lanes) // clients`` connections each) and
    wait for every answer. Lane ``i`` goes to ``addresses[i]`` (default: 127.0.0.1:``port``);
    the server CPU is that of ``server_pid``'s process tree (or the trees of a list)."""
    per_client = -(-len(lanes) // clients)
    if addresses is None:
        addresses = [("127.0.0.1", port)] * len(lanes)
    pids = server_pid if isinstance(server_pid, list) else [server_pid]
    ctx = mp.get_context("fork")
    go, done, out = ctx.Event(), ctx.Value("q", 0), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(
        addresses[c * per_client:(c + 1) * per_client],
        lanes[c * per_client:(c + 1) * per_client], floor, go, done, out))
        for c in range(clients)]
    for p in procs:
        p.start()
    total = sum(len(lane) for lane in lanes)
    load_before = os.getloadavg()[0]
    cpu_before = sum(tree_cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    go.set()
    results: list[tuple[list[list[float]], list[str], float]] = []
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
    server_cpu = sum(tree_cpu_seconds(pid) for pid in pids) - cpu_before
    load_after = os.getloadavg()[0]
    if progress and total > reported:
        progress(total - reported)
    for p in procs:
        p.join()
    return Sent(seconds=elapsed,
                latencies=[[x for lat, _, _ in results for x in lat[k]] for k in (0, 1)],
                failures=[f for _, fs, _ in results for f in fs],
                server_cpu_s=server_cpu, client_cpu_s=sum(c for _, _, c in results),
                load_before=load_before, load_after=load_after)


def invariants(database: Database, world: World, expected: dict[str, int], *,
               orders_written: bool = False, orders_opened: int = 0) -> dict[str, Any]:
    """Ledger balanced, and the transparency log equal to it; every paid order credited
    exactly once for its amount; pools never below zero and equal to their ledger accounts;
    matches within the budget; project funds = gifts + matches. With payment orders
    (``orders_written``): the orders paid are exactly the gifts, each paid order's
    notification is stored once, and the ``orders_opened`` orders the donors opened in the
    window are there, unpaid."""
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
        opened = int(s.scalar(select(func.count()).select_from(PaymentIntent).where(
            PaymentIntent.idempotency_key.like("bench-order-%"),
            PaymentIntent.status == IntentStatus.REQUIRES_PAYMENT)) or 0)
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
        checks["orders_opened_in_window"] = opened
        checks["every_order_opened"] = opened == orders_opened
    return checks


CHECKS = ("ledger_balanced", "log_equals_ledger", "exactly_once", "pools_match_ledger",
          "within_budget", "funds_equal_gifts_plus_matches", "orders_paid_equal_gifts",
          "events_once_per_order", "every_order_opened")


def _lanes(orders_: list[bytes], callbacks: list[bytes], lanes: int) -> list[Lane]:
    """Round-robin over ``lanes`` connections; on each, gift after gift: its order request,
    then a callback."""
    pairs = [[(ORDER, o), (CALLBACK, c)] for o, c in zip(orders_, callbacks, strict=True)]
    return [[r for pair in pairs[i::lanes] for r in pair] for i in range(lanes)]


def run(
    *,
    donations: int,
    clients: int = 2,
    connections: int = 32,
    workers: int = 1,
    port: int = 8106,
    database_url: str | None = None,
    provider: str = "wechatpay",
    floor: bool = True,
    progress: Progress | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seed, write the paid orders, sign their callbacks, measure the floor, serve the app,
    send each gift's two requests, check; return the report (``db``, ``provider``,
    ``workers``, ``donations``, ``donations_per_s``, ``gift_requests_per_s``,
    ``floor_requests_per_s``, ``ratio``, ``orders`` and ``callbacks``: each half's rate and
    latencies, ``errors``, the server's CPU per donation, ``invariants``...)."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}")
    if workers > 1 and (database_url is None or database_url.startswith("sqlite")):
        raise ValueError("several workers need PostgreSQL (SQLite: one server process; "
                         "docs/locking.md)")
    say = on_phase or (lambda _msg: None)
    folder = Path(tempfile.mkdtemp(prefix="shanju-bench-http-"))
    if database_url is None:
        database_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    database = Database(database_url)
    emulator: Any = None
    provider_cpu = 0.0
    try:
        say("Migrating and seeding the database")
        create_schema(database)
        world = seed(database, donations=donations)
        environ: dict[str, str] = {}
        keys: WeChatPayEmulatorKeys | None = None
        written: list[Order] = []
        callbacks: list[bytes] = []
        if provider == "wechatpay":
            say("Writing the paid gifts' payment orders (before the clock)")
            written = open_orders(database, world, donations=donations)
            expected = {o.order_id: o.amount_fen for o in written}
            # The emulator's keys; the server's gateway reads them from the registry's
            # SHANJU_WECHATPAY_* variables, as an operator would set them.
            keys = WeChatPayEmulatorKeys.in_directory(folder / "wechatpay-keys")
            say("Starting the WeChat Pay emulator (the provider's API, its own process)")
            emulator, emulator_url = start_emulator(
                folder / "wechatpay-keys",
                {o.sub_mchid: "基准公益基金会" for o in written})
            environ = keys.environ(emulator_url)
        else:
            say("Minting orders and the provider's signed callbacks (before the clock)")
            callbacks, expected = mint(world, donations=donations)
        orders_ = order_requests(world, donations=donations, provider=provider)
        if keys is not None:
            # Signed with a timestamp the gateway accepts for 5 minutes: signed now.
            say("Building WeChat Pay's signed, encrypted notifications (before the clock)")
            callbacks = notifications(keys, written)
            del written
        lanes = _lanes(orders_, callbacks, clients * connections)
        del orders_, callbacks
        floor_sent: Sent | None = None
        if floor:
            say(f"The floor: a bare ASGI endpoint, {workers} worker(s)")
            server, fport = start_server(database_url, port, workers=workers,
                                         target="shanju.bench.http:floor_app", factory=False)
            try:
                floor_sent = drive(server.pid, fport, lanes, clients=clients, floor=True)
            finally:
                stop_server(server)
        say(f"Starting the server: {workers} worker(s)")
        server, port = start_server(database_url, port, environ=environ, workers=workers)
        try:
            say("Sending orders and callbacks")
            cpu_before = process_cpu_seconds(emulator.pid) if emulator is not None else 0.0
            sent = drive(server.pid, port, lanes, clients=clients, floor=False,
                         progress=progress)
            if emulator is not None:
                provider_cpu = process_cpu_seconds(emulator.pid) - cpu_before
        finally:
            say("Stopping the server (the engines drain)")
            stop_server(server)
        say("Checking invariants")
        checks = invariants(database, world, expected, orders_written=provider == "wechatpay",
                            orders_opened=donations)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.join(30)
        database.dispose()
    from shanju.bench.common import machine

    return report(sent, floor_sent, checks, provider=provider, db=database.engine.dialect.name,
                  donations=donations, clients=clients, connections=clients * connections,
                  workers=workers, provider_cpu_s=provider_cpu, machine=machine())


def report(sent: Sent, floor_sent: Sent | None, checks: dict[str, Any], *, provider: str,
           db: str, donations: int, clients: int, connections: int, workers: int,
           provider_cpu_s: float, machine: dict[str, Any]) -> dict[str, Any]:
    """The report of a run (see :func:`run`)."""
    elapsed = sent.seconds
    completed = sent.completed
    both = sorted(sent.latencies[0] + sent.latencies[1])
    errors = len(sent.failures) + (2 * donations - completed)
    ok = (not sent.failures and completed == 2 * donations
          and all(checks[name] for name in CHECKS if name in checks))
    gift_rps = round(completed / elapsed, 1) if elapsed else None
    floor_rps = (round(floor_sent.completed / floor_sent.seconds, 1)
                 if floor_sent is not None and floor_sent.seconds else None)
    per_donation = round(sent.server_cpu_s / donations * 1e6) if donations else None
    halves = {}
    for kind, name in ((ORDER, "orders"), (CALLBACK, "callbacks")):
        samples = sent.latencies[kind]
        halves[name] = {"requests": len(samples),
                        "requests_per_s": round(len(samples) / elapsed, 1) if elapsed else None,
                        **_latency(samples)}
    out: dict[str, Any] = {
        "benchmark": "http",
        "provider": provider,
        "endpoints": {"orders": GIFTS_PATH if provider == "wechatpay"
                      else "/api/v1/campaigns/{id}/orders",
                      "callbacks": NOTIFY_PATH if provider == "wechatpay" else CALLBACK_PATH},
        "db": db,
        "workers": workers,
        "donations": donations,
        "clients": clients,
        "connections": connections,
        "seconds": round(elapsed, 3),
        # A donation is both halves: its order and its callback.
        "donations_per_s": round(min(len(x) for x in sent.latencies) / elapsed, 1)
        if elapsed else None,
        "gift_requests_per_s": gift_rps,
        "floor_requests_per_s": floor_rps,
        "ratio": round(gift_rps / floor_rps, 3) if gift_rps and floor_rps else None,
        "orders": halves["orders"],
        "callbacks": halves["callbacks"],
        **_latency(both),
        "floor": None if floor_sent is None else {
            "seconds": round(floor_sent.seconds, 3), "requests": floor_sent.completed,
            "errors": len(floor_sent.failures), "server_cpu_s": round(floor_sent.server_cpu_s, 2),
            **_latency(floor_sent.latencies[0] + floor_sent.latencies[1])},
        "errors": errors,
        # CPU while sending (user + system, from /proc: every worker of the server): per
        # donation (its order and its callback) it does not depend on what else runs.
        "server_cpu_s": round(sent.server_cpu_s, 2),
        "server_cpu_us_per_donation": per_donation,
        "server_cpu_us_per_request": round(sent.server_cpu_s / completed * 1e6)
        if completed else None,
        "floor_server_cpu_us_per_request": round(
            floor_sent.server_cpu_s / floor_sent.completed * 1e6)
        if floor_sent is not None and floor_sent.completed else None,
        # The provider's side on this machine: the WeChat Pay emulator answering the orders.
        "provider_cpu_s": round(provider_cpu_s, 2),
        "client_cpu_s": round(sent.client_cpu_s, 2),
        "load_average_1m": round(sent.load_after, 2),
        "load_average_1m_before": round(sent.load_before, 2),
        "first_errors": sent.failures[:3],
        "invariants": checks,
        "ok": ok,
        "machine": machine,
    }
    return out
