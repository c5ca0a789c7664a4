"""``shanju bench multi-node``: two ``shanju serve`` nodes in network namespaces of their own,
one PostgreSQL and one Redis, nginx in front, a client giving through both — both nodes serve
orders and callbacks, every invariant holds, and nothing of the run is left behind.

It needs root (namespaces, links) and PostgreSQL: outside CI it skips with the reason when
either is missing; in CI (``CI=true``, where .ci/run installs nginx and iproute2) it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from shanju.bench import multinode
from shanju.cli import app

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "SHANJU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SHANJU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def rehearsal_machine() -> str:
    """The ``ip`` program, once the machine can rehearse; else skip (fail in CI)."""
    try:
        return multinode.preflight(PG_ADMIN_URL, REDIS_URL)
    except multinode.Refused as exc:
        reason = f"the multi-node rehearsal cannot run here: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (mandatory in CI)")
        pytest.skip(reason)


def _leftovers(ip: str, pid: int) -> list[str]:
    names = subprocess.run([ip, "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.split()
    links = subprocess.run([ip, "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    return ([n for n in names if n.startswith(f"{multinode.NS_PREFIX}{pid}-")]
            + [w.strip().split("@")[0] for w in links.split(":")
               if w.strip().startswith(f"{multinode.LINK_PREFIX}{pid}")])


@pytest.mark.slow
def test_two_nodes_behind_nginx_give_exactly_once_and_leave_nothing(
        rehearsal_machine: str) -> None:
    ip = rehearsal_machine
    result = CliRunner().invoke(app, [
        "bench", "multi-node", "--donations", "60", "--workers-per-node", "1",
        "--connections", "8", "--database-url", PG_ADMIN_URL, "--redis-url", REDIS_URL,
        "--json"])
    assert result.exit_code == 0, (result.output[-3000:], repr(result.exception))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["errors"] == 0, report["first_errors"]
    assert (report["nodes"], report["workers_per_node"], report["donations"]) == (2, 1, 60)
    if multinode.nginx_command() is not None or IN_CI:
        assert report["proxy"] == "nginx"
        # nginx's upstream log and the servers' own access logs count the same requests.
        assert report["per_node_nginx"] == {
            name: {**{k: v for k, v in counts.items() if k in ("orders", "callbacks",
                                                               "other")}}
            for name, counts in report["per_node"].items()}
    # Both nodes served orders and callbacks (the servers' own counts), all of them.
    per_node = report["per_node"]
    assert set(per_node) == {"a", "b"}
    assert all(c["orders"] > 0 and c["callbacks"] > 0 for c in per_node.values())
    # Orders: 60 before the clock (to be paid) and 60 on it; callbacks: the 60 paid.
    assert sum(c["orders"] for c in per_node.values()) == 120
    assert sum(c["callbacks"] for c in per_node.values()) == 60
    assert report["callbacks_attributed"] == 60
    assert 0 < report["callbacks_on_other_node"] < 60
    for half in ("orders", "callbacks"):
        stats = report[half]
        assert stats["requests"] == 60
        assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert report["donations_per_s"] > 0
    checks = report["invariants"]
    for name in multinode.CHECKS:
        if name in checks:
            assert checks[name] is True, (name, checks)
    assert checks["gifts"] == checks["orders_paid"] == 60
    # Exactly one process of the two nodes signs the transparency log's checkpoints.
    assert report["leaders"]["transparency-checkpointer"] == 1
    assert report["machine"]["cpus"] and len(report["loadavg"]) == 3
    # Nothing left: namespaces, links, the throw-away database.
    assert _leftovers(ip, os.getpid()) == []
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                                {"n": f"shanju_rehearsal_{os.getpid()}"}).scalar()
    finally:
        admin.dispose()
    assert left == 0


def test_a_crashed_runs_namespace_and_links_are_removed_at_start(
        rehearsal_machine: str, tmp_path: Path) -> None:
    ip = rehearsal_machine
    # A process that has ended: its pid names the "crashed" run.
    done = subprocess.Popen(["true"])  # noqa: S607 - coreutils
    done.wait()
    dead = done.pid
    ns, link = f"{multinode.NS_PREFIX}{dead}-a", f"{multinode.LINK_PREFIX}{dead}a"
    subprocess.run([ip, "netns", "add", ns], check=True)
    try:
        subprocess.run([ip, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                        "netns", ns], check=True)
        # A live run's namespace (ours) stays.
        mine = f"{multinode.NS_PREFIX}{os.getpid()}-z"
        subprocess.run([ip, "netns", "add", mine], check=True)
        try:
            removed = multinode.remove_leftovers(ip)
            assert ns in removed and mine not in removed
            assert _leftovers(ip, dead) == []
            assert mine in _leftovers(ip, os.getpid())
        finally:
            subprocess.run([ip, "netns", "delete", mine], check=False)
    finally:
        subprocess.run([ip, "netns", "delete", ns], check=False, capture_output=True)
        subprocess.run([ip, "link", "delete", link], check=False, capture_output=True)


def test_the_rehearsal_refuses_without_postgresql() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "multi-node", "--donations", "10"],
                           env={"DATABASE_URL": ""})
    assert result.exit_code == 2
    assert "needs PostgreSQL" in result.output
    result = runner.invoke(app, ["bench", "multi-node", "--database-url",
                                 "sqlite:///var/x.sqlite3"])
    assert result.exit_code == 2
    assert "PostgreSQL, not sqlite" in result.output


def _shanju_as(*setpriv: str) -> subprocess.CompletedProcess[str]:
    """``shanju bench multi-node`` in a process of its own, under ``setpriv`` options."""
    command = [sys.executable, "-m", "shanju.cli", "bench", "multi-node", "--donations", "10",
               "--database-url", PG_ADMIN_URL]
    if setpriv:
        tool = shutil.which("setpriv")
        if tool is None:
            pytest.skip("setpriv (util-linux) is not installed")
        command = [tool, *setpriv, *command]
    return subprocess.run(command, capture_output=True, text=True, check=False,  # noqa: S603
                          timeout=120, cwd="/")


def _others_can_run_this_checkout() -> bool:
    """Whether another user may traverse to this checkout and its environment."""
    for path in (Path(sys.prefix), Path(__file__).resolve().parents[2]):
        for folder in (path, *path.parents):
            if not folder.stat().st_mode & 0o001:
                return False
    return True


def test_the_rehearsal_refuses_without_root() -> None:
    # As root: the same command as the unprivileged user "nobody".
    if os.geteuid() == 0 and not _others_can_run_this_checkout():
        pytest.skip("the user nobody cannot reach this checkout (a folder above it is 0700)")
    done = (_shanju_as("--reuid=65534", "--regid=65534", "--clear-groups")
            if os.geteuid() == 0 else _shanju_as())
    assert done.returncode == 2, done.stderr[-2000:]
    assert "needs root" in done.stderr and "Traceback" not in done.stderr


def test_the_rehearsal_refuses_without_cap_net_admin() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop CAP_NET_ADMIN alone")
    done = _shanju_as("--bounding-set=-net_admin", "--inh-caps=-net_admin")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "CAP_NET_ADMIN" in done.stderr and "Traceback" not in done.stderr
