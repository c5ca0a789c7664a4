"""``shanju bench multi-node``: a rehearsal of a multi-node deployment on one machine — two
server nodes, each in a network namespace of its own, against one PostgreSQL and one Redis,
nginx in front, a client process giving through both; the invariants checked at the end.

**The network.** The bench makes a Linux bridge in the host's namespace with the first address
of a free ``10.213.K.0/24`` (the first K whose /24 overlaps no address or route of the
machine), and two network namespaces (``shanju-mn-<pid>-a`` and ``-b``), each joined to the
bridge by a veth pair (its end inside is ``eth0``, the second and third address of the /24;
``lo`` up). The two nodes and the host are one LAN, as a deployment's machines would be.

**PostgreSQL and Redis stay as they are.** They listen on 127.0.0.1, which a namespace cannot
reach, and the bench does not reconfigure them: a small TCP relay (asyncio, a child process
in the host's namespace) listens on the bridge's address at PostgreSQL's and Redis's ports and
forwards each connection to the real servers. The nodes therefore use one and the same
``DATABASE_URL`` (``postgresql+psycopg://…@10.213.K.1:5432/<throw-away db>``) and Redis URL,
as a deployment's nodes do (the live snapshots' Redis keys are named after the database URL,
so nodes with different URLs for the same database would not share them). Forwarding by
nftables (DNAT to 127.0.0.1 with ``route_localnet``) would cost no CPU but would change the
host's firewall and sysctls; the relay changes nothing and is measured (``relay_cpu_s``).

**The provider.** The WeChat Pay emulator (``bench http``'s) serves the provider's API over
TLS on the bridge's address, with a certificate made for the run that the nodes trust through
``REQUESTS_CA_BUNDLE``: the nodes run with production settings (``shanju serve``'s
``SHANJU_ENVIRONMENT=production`` checks: strong secrets, no sandbox variable, an https
provider), each ``ip netns exec <ns> python -m shanju.cli serve --host <its address> --workers
W --forwarded-allow-ips <the bridge's address>``, rate limits and the live rooms' broker on
Redis (``?namespace=rehearsal-<pid>``), one transparency key file made before they start.

**nginx** (``/usr/sbin/nginx``, when present) runs in the host's namespace as a child process
with a configuration generated in a temporary folder: an upstream of both nodes (round robin,
keep-alive), the headers of ``deploy/nginx/shanju.conf``, plain HTTP on 127.0.0.1 (the TLS
of the real configuration is checked by its own test), and ``set_real_ip_from 127.0.0.1`` so
that the client may stand for many donors (each order says its donor's address in
``X-Forwarded-For``, as in ``bench http``). Its access log names the upstream of every
request. Without nginx the client connects to both nodes itself, lane by lane.

**The gifts.** Before the clock, the client opens ``N`` orders through the nodes (``POST
/api/v1/gifts``, each opened at the emulator), and the bench builds WeChat Pay's signed
notifications of those orders (the provider's work). On the clock, as in ``bench http``: on
each keep-alive connection, gift after gift, a new order and the notification of an earlier
one, in shuffled order — so a callback often lands on the node that did not open its order
(counted from the access log: ``callbacks_on_other_node``).

**The counts** per node are the servers' own (each node's uvicorn access log: every ``201`` of
``POST /api/v1/gifts`` and ``204`` of the notification path) and, with nginx, its upstream
log's; the report says both and checks they agree.

**The checks** at the end are ``bench http``'s (ledger balanced, the transparency log equal to
it, every paid order exactly one gift, each notification stored once, pools equal to their
ledger accounts, every order of the clock there and unpaid) plus: both nodes served orders
and callbacks, and exactly one of the nodes' processes signs the transparency log's
checkpoints (``core/leader.py``: its advisory lock in ``pg_locks``; the payments job, a round
every five minutes, has at most one leader).

**Clean-up**, in ``finally`` (and on Ctrl-C or SIGTERM): servers, nginx, relay, emulator,
veths, bridge, namespaces, the throw-away database and the run's Redis keys. Killed outright,
the bench takes its children with it (``setpriv --pdeathsig``, ``PR_SET_PDEATHSIG``); the
namespaces, links and database of an earlier run whose process is gone are removed at the
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL, make_url

from shanju.bench import http
from shanju.bench.common import die_with_parent, machine
from shanju.core.db import Database
from shanju.core.leader import lock_key
from shanju.core.migrations import create_schema
from shanju.payments.emulators.wechatpay import WeChatPayEmulatorKeys
from shanju.payments.models import PaymentIntent

Phase = Callable[[str], None]
NS_PREFIX = "shanju-mn-"  # network namespaces: shanju-mn-<pid>-a, shanju-mn-<pid>-b
LINK_PREFIX = "sjmn"  # links: sjmn<pid>br (the bridge), sjmn<pid>a and sjmn<pid>b (veths)
NODES = ("a", "b")
NODE_PORT = 8000
PAID_KEY = "paid-order-"  # the idempotency keys of the orders paid on the clock
ORDER_HEADER = "X-Rehearsal-Order"  # a callback's order, for the proxy's log (app ignores it)
JOBS = ("transparency-checkpointer", "payments-job")  # core/leader.py's job names


class Refused(Exception):  # noqa: N818 - a refusal, said to the operator
    """The rehearsal cannot run here (not root, no ``ip``, no PostgreSQL...): the CLI says
    why and exits 2."""


# --- what the machine must have ---------------------------------------------------------------


def ip_command() -> str | None:
    """The ``ip`` program (iproute2), or None."""
    found = shutil.which("ip")
    if found:
        return found
    return next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)),
                None)


def nginx_command() -> str | None:
    """nginx, if installed where Debian puts it (or on PATH)."""
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


def has_cap_net_admin() -> bool:
    """Whether this process may create namespaces and links (CAP_NET_ADMIN, bit 12)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 12))
    except (OSError, ValueError):
        pass
    return False


def preflight(database_url: str | None, redis_url: str) -> str:
    """Refuse (:class:`Refused`, one readable line) unless the rehearsal can run: root with
    CAP_NET_ADMIN, ``ip``, a reachable PostgreSQL server at ``database_url`` and Redis at
    ``redis_url``. Returns the ``ip`` program."""
    if not database_url:
        raise Refused("the rehearsal needs PostgreSQL: pass --database-url "
                      "postgresql+psycopg://user@127.0.0.1:5432/postgres (a server where it may "
                      "create and drop a database), or set DATABASE_URL to one")
    try:
        url = make_url(database_url)
    except Exception as exc:  # noqa: BLE001 - any unparsable URL
        raise Refused(f"--database-url is not a database URL: {exc}") from None
    if not url.drivername.startswith("postgresql"):
        raise Refused(f"the rehearsal needs PostgreSQL, not {url.get_backend_name()}: several "
                      "nodes share one PostgreSQL (SQLite takes one server process)")
    if os.geteuid() != 0:
        raise Refused("the rehearsal needs root: it creates network namespaces, a bridge and "
                      "veth links (run it as root, or in CI)")
    if not has_cap_net_admin():
        raise Refused("the rehearsal needs CAP_NET_ADMIN to create network namespaces and links "
                      "(this container or sandbox does not grant it)")
    ip = ip_command()
    if ip is None:
        raise Refused("`ip` is missing: install iproute2 (apt-get install iproute2)")
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        raise Refused(f"PostgreSQL does not answer at {url.render_as_string()}: "
                      f"{type(exc).__name__}") from None
    finally:
        engine.dispose()
    import redis

    try:
        redis.Redis.from_url(_without_namespace(redis_url), socket_timeout=2,
                             socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        raise Refused(f"Redis does not answer at {redis_url}: {type(exc).__name__}") from None
    return ip


def _without_namespace(url: str) -> str:
    return re.sub(r"[?&]namespace=[^&]*", "", url)


# --- the network ------------------------------------------------------------------------------


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)  # noqa: S603
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(ip: str) -> list[str]:
    """Remove the namespaces and links of earlier runs whose process is gone (a crashed or
    killed run); return their names. Those of a run still going are left alone."""
    removed: list[str] = []
    for line in _run(ip, "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)-[a-z]", name)
        if m and not _alive(int(m.group(1))):
            _empty_namespace(ip, name)
            _run(ip, "netns", "delete", name, check=False)
            removed.append(name)
    for line in _run(ip, "-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = re.fullmatch(LINK_PREFIX + r"(\d+)(br|[a-z])", name)
        if m and not _alive(int(m.group(1))):
            _run(ip, "link", "delete", name, check=False)
            removed.append(name)
    return removed


def _empty_namespace(ip: str, name: str) -> None:
    """Kill what still runs in the namespace ``name`` (a crashed run's servers)."""
    for pid in _run(ip, "netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def free_subnet(ip: str) -> ipaddress.IPv4Network:
    """The first 10.213.K.0/24 that overlaps no address or route of the host's namespace."""
    used: list[ipaddress.IPv4Network] = []
    for line in _run(ip, "-o", "-4", "addr", "show").stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            used.append(ipaddress.IPv4Interface(m.group(1)).network)
    for line in _run(ip, "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.IPv4Network(first, strict=False))
    for k in range(256):
        candidate = ipaddress.IPv4Network(f"10.213.{k}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.prefixlen > 0):
            return candidate
    raise Refused("no free 10.213.K.0/24 on this machine for the rehearsal's network")


@dataclass
class Network:
    """The run's bridge and namespaces (see the module's doc)."""

    ip: str
    subnet: ipaddress.IPv4Network
    pid: int = field(default_factory=os.getpid)
    made: list[tuple[str, str]] = field(default_factory=list)  # ("netns"|"link", name)

    @property
    def host(self) -> str:
        return str(self.subnet[1])

    def address(self, i: int) -> str:
        return str(self.subnet[2 + i])

    def namespace(self, i: int) -> str:
        return f"{NS_PREFIX}{self.pid}-{NODES[i]}"

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{self.pid}br"

    def up(self) -> None:
        ip, plen = self.ip, self.subnet.prefixlen
        _run(ip, "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        _run(ip, "addr", "add", f"{self.host}/{plen}", "dev", self.bridge)
        _run(ip, "link", "set", self.bridge, "up")
        for i, node in enumerate(NODES):
            ns, veth = self.namespace(i), f"{LINK_PREFIX}{self.pid}{node}"
            _run(ip, "netns", "add", ns)
            self.made.append(("netns", ns))
            _run(ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(("link", veth))
            _run(ip, "link", "set", veth, "master", self.bridge)
            _run(ip, "link", "set", veth, "up")
            _run(ip, "-n", ns, "addr", "add", f"{self.address(i)}/{plen}", "dev", "eth0")
            _run(ip, "-n", ns, "link", "set", "eth0", "up")
            _run(ip, "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        """Remove everything :meth:`up` made, namespaces first (never raises)."""
        for kind, name in reversed(self.made):
            if kind == "netns":
                _empty_namespace(self.ip, name)
                _run(self.ip, "netns", "delete", name, check=False)
        for kind, name in reversed(self.made):
            if kind == "link":
                _run(self.ip, "link", "delete", name, check=False)
        self.made.clear()


# --- the relay --------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay_main(routes: list[tuple[str, int, str, int]], ready: Any) -> None:
    async def serve(listen: tuple[str, int], target: tuple[str, int]) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(*target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(handle, *listen, reuse_address=True)

    servers = [await serve((h, p), (th, tp)) for h, p, th, tp in routes]
    ready.set()
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _relay(routes: list[tuple[str, int, str, int]], ready: Any) -> None:
    """The relay's process: forward each ``(host, port)`` to its ``(target, port)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's; it stops us
    die_with_parent()
    try:
        import uvloop

        uvloop.run(_relay_main(routes, ready))
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(_relay_main(routes, ready))


def start_relay(routes: list[tuple[str, int, str, int]]) -> Any:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_relay, args=(routes, ready), daemon=True)
    proc.start()
    if not ready.wait(60) or not proc.is_alive():
        proc.kill()
        raise RuntimeError("the relay did not start")
    return proc


# --- TLS for the provider's API -----------------------------------------------------------------


def make_certificate(folder: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``address`` (its own CA): the provider's API over
    https, as production requires. Returns (certificate, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rehearsal provider {address}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "provider.crt", folder / "provider.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


# --- nginx ------------------------------------------------------------------------------------


NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format rehearsal '$upstream_addr $status $request_method $uri '
                         '"$http_idempotency_key" "$http_x_rehearsal_order"';
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream shanju {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        access_log {dir}/access.log rehearsal;
        # The load generator stands for many donors: believe its X-Forwarded-For (a
        # production edge with no proxy before it must not).
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        client_max_body_size 50m;
        location / {{
            proxy_pass http://shanju;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
        }}
    }}
}}
"""


def write_nginx_conf(folder: Path, port: int, upstreams: list[str]) -> Path:
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.chmod(0o755)  # nginx's workers run as nobody
    servers = "\n".join(f"        server {u} max_fails=0;" for u in upstreams)
    path = folder / "nginx.conf"
    path.write_text(NGINX_CONF.format(dir=folder, port=port, servers=servers))
    return path


def start_nginx(nginx: str, folder: Path, conf: Path, port: int) -> subprocess.Popen[bytes]:
    test = _run(nginx, "-t", "-q", "-p", str(folder), "-c", str(conf), "-e",
                str(folder / "error.log"), check=False)
    if test.returncode != 0:
        raise RuntimeError(f"nginx -t refused the rehearsal's configuration: {test.stderr}")
    proc = subprocess.Popen(  # noqa: S603 - nginx with our own configuration
        [*dies_with_us(), nginx, "-p", str(folder), "-c", str(conf), "-e",
         str(folder / "error.log"), "-g", "daemon off;"], stdout=2, stderr=2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: "
                               + (folder / "error.log").read_text(errors="replace")[-500:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nginx did not start within 30 s")


def dies_with_us() -> list[str]:
    """A prefix that makes a command die (SIGTERM) when the bench dies, even by SIGKILL:
    util-linux's ``setpriv --pdeathsig`` (it execs the command in place), so that no node or
    nginx outlives a killed run. Empty without setpriv (the next run's start cleans up)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
                 wait: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the nodes --------------------------------------------------------------------------------


def node_environ(*, database_url: str, redis_url: str, folder: Path, base_url: str,
                 provider: dict[str, str], ca_file: Path) -> dict[str, str]:
    """A node's environment: production, as ``deploy/systemd/shanju.env.example`` says, on the
    rehearsal's database, Redis and provider; nothing of the bench's own ``SHANJU_*``."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHANJU_") and k != "DATABASE_URL" and k.lower() not in proxies}
    return env | {
        "SHANJU_ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "SHANJU_SECRET_KEY": secrets.token_urlsafe(48),
        "SHANJU_BASE_URL": base_url,
        "SHANJU_RATE_LIMIT_URL": redis_url,
        "SHANJU_SUMMIT_BROKER_URL": redis_url,
        "SHANJU_UPLOAD_DIR": str(folder / "uploads"),
        "SHANJU_TRANSPARENCY_KEY_FILE": str(folder / "transparency-ed25519.key"),
        "REQUESTS_CA_BUNDLE": str(ca_file),
        **provider,
    }


@dataclass
class Node:
    name: str
    namespace: str
    address: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def start_node(ip: str, node: Node, *, workers: int, env: dict[str, str], allow: str,
               cwd: Path) -> None:
    """``shanju serve`` in the node's namespace (``ip netns exec`` execs it: the pid is the
    server's)."""
    log = node.log.open("ab")
    try:
        node.proc = subprocess.Popen(  # noqa: S603 - our own command
            [ip, "netns", "exec", node.namespace, *dies_with_us(), sys.executable, "-m",
             "shanju.cli", "serve",
             "--host", node.address, "--port", str(NODE_PORT), "--workers", str(workers),
             "--forwarded-allow-ips", allow],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


ACCESS_RE = re.compile(rb'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')


def server_counts(log: Path) -> dict[str, int]:
    """What a node answered, from its uvicorn access log: orders opened (``201`` of
    ``POST /api/v1/gifts``), notifications taken (``204`` of the notify path), the rest."""
    counts: Counter[str] = Counter()
    for line in log.read_bytes().splitlines():
        m = ACCESS_RE.search(line)
        if not m:
            continue
        path, status = m.group("path").decode(), m.group("status").decode()
        if path == http.GIFTS_PATH and status == "201":
            counts["orders"] += 1
        elif path == http.NOTIFY_PATH and status == "204":
            counts["callbacks"] += 1
        elif path != "/healthz":
            counts["other"] += 1
    return {k: counts[k] for k in ("orders", "callbacks", "other")}


def _node_by_address(nodes: list[Node], upstream: str) -> str | None:
    last = upstream.split(",")[-1].strip().rsplit(":", 1)[0]
    return next((n.name for n in nodes if n.address == last), None)


def proxy_log(path: Path, nodes: list[Node]) -> tuple[dict[str, dict[str, int]],
                                                       dict[str, str], dict[str, str]]:
    """nginx's log: per node, orders opened and notifications taken; which node opened each
    order (by idempotency key) and which took each callback (by order id)."""
    per_node = {n.name: {"orders": 0, "callbacks": 0, "other": 0} for n in nodes}
    opened: dict[str, str] = {}
    callbacks: dict[str, str] = {}
    line_re = re.compile(r'^(?P<up>.+?) (?P<status>\d{3}) (?P<method>\S+) (?P<uri>\S+) '
                         r'"(?P<key>[^"]*)" "(?P<order>[^"]*)"$')
    for line in path.read_text(errors="replace").splitlines():
        m = line_re.match(line)
        if not m:
            continue
        node = _node_by_address(nodes, m.group("up"))
        if node is None:
            continue
        uri, status = m.group("uri"), m.group("status")
        if uri == http.GIFTS_PATH and status == "201":
            per_node[node]["orders"] += 1
            opened[m.group("key")] = node
        elif uri == http.NOTIFY_PATH and status == "204":
            per_node[node]["callbacks"] += 1
            callbacks[m.group("order")] = node
        elif uri != "/healthz":
            per_node[node]["other"] += 1
    return per_node, opened, callbacks


def leaders(database: Database) -> dict[str, int]:
    """How many sessions hold each once-per-deployment job's advisory lock (core/leader.py)."""
    out = {}
    with database.engine.connect() as conn:
        for job in JOBS:
            key = lock_key(job)
            unsigned = key & 0xFFFFFFFFFFFFFFFF
            out[job] = int(conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :hi AND objid = :lo AND objsubid = 1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).scalar() or 0)
    return out


# --- the run ----------------------------------------------------------------------------------


def _throwaway_url(server_url: str, name: str) -> URL:
    return make_url(server_url).set(database=name)


def _relayed(url: URL, host: str) -> str:
    return url.set(host=host).render_as_string(hide_password=False)


def run(*, donations: int, workers_per_node: int = 1, database_url: str | None = None,
        redis_url: str = "redis://127.0.0.1:6379/0", connections: int = 16,
        use_nginx: bool = True, progress: http.Progress | None = None,
        on_phase: Phase | None = None) -> dict[str, Any]:
    """Rehearse (see the module's doc) and return the report. Raises :class:`Refused` when
    the machine cannot run it."""
    say = on_phase or (lambda _msg: None)
    ip = preflight(database_url, redis_url)
    assert database_url is not None  # noqa: S101 - preflight refused otherwise
    removed = remove_leftovers(ip) + _drop_leftover_databases(database_url)
    if removed:
        say(f"Removed an earlier run's leftovers: {', '.join(removed)}")
    nginx = nginx_command() if use_nginx else None
    pid = os.getpid()
    folder = Path(tempfile.mkdtemp(prefix="shanju-bench-multinode-"))
    db_name = f"shanju_rehearsal_{pid}"
    namespace = f"rehearsal-{pid}"
    server_url = make_url(database_url)
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    network = Network(ip, free_subnet(ip), pid)
    nodes = [Node(name, network.namespace(i), network.address(i), folder / f"node-{name}.log")
             for i, name in enumerate(NODES)]
    relay: Any = None
    emulator: Any = None
    proxy: subprocess.Popen[bytes] | None = None
    database: Database | None = None
    nginx_dir = folder / "nginx"
    created_db = False
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        # Stopped by SIGTERM (a CI's time-out, systemd, kill): clean up as on Ctrl-C.
        previous_term = signal.signal(signal.SIGTERM, _terminated)
    try:
        say(f"Network: bridge {network.bridge} {network.subnet}, namespaces "
            f"{', '.join(n.namespace for n in nodes)}")
        network.up()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        created_db = True
        local_url = _throwaway_url(database_url, db_name)
        database = Database(local_url.render_as_string(hide_password=False))
        say("Migrating and seeding the database")
        create_schema(database)
        world = http.seed(database, donations=donations)
        redis_target = urlsplit(_without_namespace(redis_url))
        pg_port, redis_port = server_url.port or 5432, redis_target.port or 6379
        say(f"Relay on {network.host}: {pg_port} → PostgreSQL, {redis_port} → Redis")
        relay = start_relay([
            (network.host, pg_port, server_url.host or "127.0.0.1", pg_port),
            (network.host, redis_port, redis_target.hostname or "127.0.0.1", redis_port)])
        node_db_url = _relayed(local_url, network.host)
        auth = redis_target.netloc.rpartition("@")[0]
        node_redis = urlunsplit(redis_target._replace(
            netloc=f"{auth + '@' if auth else ''}{network.host}:{redis_port}",
            query=f"namespace={namespace}"))
        say("Starting the WeChat Pay emulator over TLS (the provider's API)")
        keys = WeChatPayEmulatorKeys.in_directory(folder / "wechatpay-keys")
        cert, cert_key = make_certificate(folder, network.host)
        merchants = {f"19000{n:05d}": "基准公益基金会" for n in range(10)}
        emulator, emulator_url = http.start_emulator(folder / "wechatpay-keys", merchants,
                                                     host=network.host, tls=(cert, cert_key))
        proxy_port = http._any_port()
        base_url = f"http://127.0.0.1:{proxy_port}" if nginx else f"http://{nodes[0].address}"
        _make_transparency_key(folder / "transparency-ed25519.key")
        env = node_environ(database_url=node_db_url, redis_url=node_redis, folder=folder,
                           base_url=base_url, provider=keys.environ(emulator_url), ca_file=cert)
        say(f"Starting two nodes (shanju serve, {workers_per_node} worker(s) each)")
        for node in nodes:
            start_node(ip, node, workers=workers_per_node, env=env, allow=network.host,
                       cwd=folder)
        for node in nodes:
            assert node.proc is not None  # noqa: S101
            try:
                http.wait_serving(node.proc, (node.address, NODE_PORT),
                                  workers=workers_per_node, name=f"node {node.name}")
            except RuntimeError as exc:
                tail = node.log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None
        if nginx:
            say(f"Starting nginx in front of both nodes on 127.0.0.1:{proxy_port}")
            conf = write_nginx_conf(nginx_dir, proxy_port,
                                    [f"{n.address}:{NODE_PORT}" for n in nodes])
            proxy = start_nginx(nginx, nginx_dir, conf, proxy_port)

        lanes_n = min(connections, max(2, donations // 2))
        if nginx:
            addresses = [("127.0.0.1", proxy_port)] * lanes_n
        else:
            addresses = [(nodes[i % 2].address, NODE_PORT) for i in range(lanes_n)]
        server_pids = [n.proc.pid for n in nodes if n.proc is not None]

        say("Before the clock: the donors open the orders that will be paid, through both "
            "nodes")
        paid_orders = http.order_requests(world, donations=donations, provider="wechatpay",
                                          seed_=99, key_prefix=PAID_KEY)
        lanes_a: list[http.Lane] = [[(http.ORDER, r) for r in paid_orders[i::lanes_n]]
                                    for i in range(lanes_n)]
        opening = http.drive(server_pids, 0, lanes_a, clients=1, floor=False,
                             addresses=addresses)
        direct_opened = {f"{PAID_KEY}{n}": nodes[(n % lanes_n) % 2].name
                         for n in range(donations)}
        with database.transaction(write=False) as s:
            rows = s.execute(select(PaymentIntent.id, PaymentIntent.amount_fen,
                                    PaymentIntent.merchant_id, PaymentIntent.donor_id,
                                    PaymentIntent.idempotency_key)
                             .where(PaymentIntent.idempotency_key.like(f"{PAID_KEY}%"))).all()
        paid = [http.Order(r.id, r.amount_fen, r.merchant_id or "",
                           f"oBenchPayer{r.donor_id:020d}") for r in rows]
        key_of = {r.id: r.idempotency_key for r in rows}
        expected = {o.order_id: o.amount_fen for o in paid}
        say("Building WeChat Pay's signed notifications of those orders (before the clock)")
        random.Random(5).shuffle(paid)  # noqa: S311 - a callback need not follow its order
        callbacks = [
            req.replace(b"\r\n", f"\r\n{ORDER_HEADER}: {o.order_id}\r\n".encode(), 1)
            for o, req in zip(paid, http.notifications(keys, paid), strict=True)]
        new_orders = http.order_requests(world, donations=len(callbacks), provider="wechatpay")
        lanes_b = http._lanes(new_orders, callbacks, lanes_n)
        direct_callbacks = {o.order_id: nodes[(n % lanes_n) % 2].name
                            for n, o in enumerate(paid)}

        say("On the clock: new orders and the earlier orders' notifications, through both")
        relay_cpu = http.process_cpu_seconds(relay.pid)
        proxy_cpu = http.tree_cpu_seconds(proxy.pid) if proxy else 0.0
        sent = http.drive(server_pids, 0, lanes_b, clients=1, floor=False, progress=progress,
                          addresses=addresses)
        relay_cpu = http.process_cpu_seconds(relay.pid) - relay_cpu
        proxy_cpu = (http.tree_cpu_seconds(proxy.pid) - proxy_cpu) if proxy else 0.0
        # The checkpointer's first round comes one interval (5 s) after a node starts: wait
        # for it (at most 15 s) to see who leads.
        deadline = time.monotonic() + 15
        while (held := leaders(database))[JOBS[0]] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        say("Stopping nginx and the nodes (the engines drain)")
        stop_process(proxy, signal.SIGQUIT)
        for node in nodes:
            stop_process(node.proc, signal.SIGTERM, 60)
        say("Checking invariants")
        checks = http.invariants(database, world, expected, orders_written=True,
                                 orders_opened=len(callbacks))
        servers = {n.name: server_counts(n.log) for n in nodes}
        if proxy is not None:
            per_proxy, opened_by, taken_by = proxy_log(nginx_dir / "access.log", nodes)
            opened_at = {oid: opened_by.get(key_of[oid]) for oid in expected}
        else:
            per_proxy, taken_by = None, direct_callbacks
            opened_at = {oid: direct_opened[key_of[oid]] for oid in expected}
        attributed = [oid for oid in expected if oid in taken_by and opened_at.get(oid)]
        crossed = sum(1 for oid in attributed if taken_by[oid] != opened_at[oid])
        checks["both_nodes_served"] = all(
            c["orders"] > 0 and c["callbacks"] > 0 for c in servers.values())
        if per_proxy is not None:
            checks["proxy_and_servers_agree"] = all(
                per_proxy[n][k] == servers[n][k] for n in servers for k in ("orders",
                                                                            "callbacks"))
        # Of the 2 × W processes, exactly one signs checkpoints; the payments job (a round
        # every 5 minutes by default) has at most one leader.
        checks["one_leader_per_job"] = held[JOBS[0]] == 1 and all(v <= 1 for v in held.values())
        return report(
            sent=sent, opening=opening, checks=checks, donations=donations,
            workers_per_node=workers_per_node, nodes=nodes, servers=servers,
            per_proxy=per_proxy, nginx=nginx, crossed=crossed, attributed=len(attributed),
            leaders=held, relay_cpu_s=relay_cpu, proxy_cpu_s=proxy_cpu,
            network=network, connections=lanes_n)
    finally:
        say("Cleaning up: servers, nginx, relay, emulator, network, database")
        stop_process(proxy, signal.SIGTERM, 10)
        # SIGTERM, which uvicorn takes as it takes Ctrl-C (the engines drain), and which a
        # process still importing does not ignore (SIGINT is ignored by background jobs).
        for node in nodes:
            stop_process(node.proc, signal.SIGTERM, 60)
        for child in (relay, emulator):
            if child is not None and child.is_alive():
                child.terminate()
                child.join(10)
                if child.is_alive():
                    child.kill()
        network.down()
        if database is not None:
            database.dispose()
        if created_db:
            with contextlib.suppress(Exception), admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
        _forget_redis_keys(redis_url, namespace,
                           _relayed(_throwaway_url(database_url, db_name), network.host))
        shutil.rmtree(folder, ignore_errors=True)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _terminated(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _drop_leftover_databases(database_url: str) -> list[str]:
    """Drop the throw-away databases of earlier runs whose process is gone."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    dropped = []
    try:
        with engine.connect() as conn:
            for name in conn.execute(text(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'shanju_rehearsal_%'"
            )).scalars():
                m = re.fullmatch(r"shanju_rehearsal_(\d+)", name)
                if m and not _alive(int(m.group(1))):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    dropped.append(name)
    finally:
        engine.dispose()
    return dropped


def _make_transparency_key(path: Path) -> None:
    """The one signing key every node shares (as ``shanju transparency public-key`` makes
    it on first use: Ed25519, PKCS#8 PEM, mode 0600), made before the nodes start."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _forget_redis_keys(redis_url: str, namespace: str, node_db_url: str) -> None:
    """Delete the run's keys: rate-limit counters (``shanju:<namespace>:…``) and the live
    snapshots (named after the nodes' database URL). Never raises."""
    try:
        import redis

        client = redis.Redis.from_url(_without_namespace(redis_url), socket_timeout=2)
        snapshots = hashlib.sha256(node_db_url.encode()).hexdigest()[:16]
        for pattern in (f"shanju:{namespace}:*", f"shanju:{snapshots}:*",
                        f"{namespace}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    except Exception:  # noqa: BLE001, S110 - best effort: the keys expire anyway
        pass


CHECKS = (*http.CHECKS, "both_nodes_served", "proxy_and_servers_agree", "one_leader_per_job")


def report(*, sent: http.Sent, opening: http.Sent, checks: dict[str, Any], donations: int,
           workers_per_node: int, nodes: list[Node], servers: dict[str, dict[str, int]],
           per_proxy: dict[str, dict[str, int]] | None, nginx: str | None, crossed: int,
           attributed: int, leaders: dict[str, int], relay_cpu_s: float, proxy_cpu_s: float,
           network: Network, connections: int) -> dict[str, Any]:
    """The rehearsal's report."""
    elapsed = sent.seconds
    halves = {}
    for kind, name in ((http.ORDER, "orders"), (http.CALLBACK, "callbacks")):
        samples = sent.latencies[kind]
        halves[name] = {"requests": len(samples),
                        "requests_per_s": round(len(samples) / elapsed, 1) if elapsed else None,
                        **http._latency(samples)}
    errors = (len(sent.failures) + (2 * donations - sent.completed)
              + len(opening.failures) + (donations - opening.completed))
    ok = errors == 0 and all(checks[name] for name in CHECKS if name in checks)
    load = os.getloadavg()
    return {
        "benchmark": "multi-node",
        "utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "db": "postgresql",
        "nodes": len(nodes),
        "workers_per_node": workers_per_node,
        "proxy": "nginx" if nginx else "none (the client connects to both nodes)",
        "network": {"subnet": str(network.subnet), "host": network.host,
                    "namespaces": [n.namespace for n in nodes]},
        "donations": donations,
        "connections": connections,
        "seconds": round(elapsed, 3),
        "donations_per_s": round(min(len(x) for x in sent.latencies) / elapsed, 1)
        if elapsed else None,
        "orders": halves["orders"],
        "callbacks": halves["callbacks"],
        "paid_orders_opened_before_the_clock": {
            "requests": opening.completed, "seconds": round(opening.seconds, 3),
            "errors": len(opening.failures), **http._latency(opening.latencies[http.ORDER])},
        "per_node": {n.name: {"address": f"{n.address}:{NODE_PORT}", "namespace": n.namespace,
                              **servers[n.name]} for n in nodes},
        "per_node_source": "each node's uvicorn access log (201 orders, 204 callbacks)",
        "per_node_nginx": per_proxy,
        "callbacks_on_other_node": crossed,
        "callbacks_attributed": attributed,
        # Which node took each order and each callback: nginx's log (its upstream, by the
        # order's idempotency key and the callback's order id), or without nginx the client's
        # connection (each one goes to one node).
        "callbacks_source": "nginx's access log" if per_proxy is not None
        else "the client's connections",
        "leaders": leaders,
        "errors": errors,
        "first_errors": (opening.failures + sent.failures)[:3],
        "server_cpu_s": round(sent.server_cpu_s, 2),
        "server_cpu_us_per_donation": round(sent.server_cpu_s / donations * 1e6)
        if donations else None,
        "relay_cpu_s": round(relay_cpu_s, 2),
        "nginx_cpu_s": round(proxy_cpu_s, 2),
        "client_cpu_s": round(sent.client_cpu_s, 2),
        "load_average_1m_before": round(sent.load_before, 2),
        "load_average_1m": round(sent.load_after, 2),
        "loadavg": [round(x, 2) for x in load],
        "invariants": checks,
        "ok": ok,
        "machine": machine(),
    }


def dumps(report_: dict[str, Any]) -> str:
    return json.dumps(report_, ensure_ascii=False)
