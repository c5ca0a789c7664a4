"""`.ci/run` installs what a fresh Debian machine lacks — Redis included (the summit's broker
tests are mandatory in CI, so a machine without redis-server must get it, not skip them), and
nginx and iproute2 (the multi-node rehearsal and the deployment's nginx test are mandatory
there too)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _packages_to_install(path_dirs: list[Path]) -> list[str]:
    env = {**os.environ, "CI_PRINT_PACKAGES": "1",
           "PATH": os.pathsep.join(str(d) for d in path_dirs)}
    done = subprocess.run(["/bin/bash", str(REPO / ".ci" / "run")], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.split()


def test_a_machine_without_redis_gets_redis_server_and_its_client(tmp_path: Path) -> None:
    # A PATH with the tools the script itself uses, but no Redis binaries.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dpkg-query", "grep", "python3", "pg_isready", "id", "dirname"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not on this machine")
        (bin_dir / tool).symlink_to(found)
    needed = _packages_to_install([bin_dir])
    assert "redis-server" in needed and "redis-tools" in needed


def test_a_machine_with_redis_installs_nothing_for_it() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("Redis is not installed on this machine")
    needed = _packages_to_install([Path(p) for p in os.environ["PATH"].split(os.pathsep)])
    assert "redis-server" not in needed and "redis-tools" not in needed


def test_a_machine_without_nginx_or_ip_gets_nginx_and_iproute2(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dpkg-query", "grep", "python3", "pg_isready", "id", "dirname",
                 "redis-server", "redis-cli"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not on this machine")
        (bin_dir / tool).symlink_to(found)
    needed = _packages_to_install([bin_dir])
    assert "nginx" in needed and "iproute2" in needed
    assert "redis-server" not in needed


def test_a_machine_with_nginx_and_ip_installs_nothing_for_them() -> None:
    if shutil.which("nginx") is None or shutil.which("ip") is None:
        pytest.skip("nginx or ip is not on this machine's PATH")
    needed = _packages_to_install([Path(p) for p in os.environ["PATH"].split(os.pathsep)])
    assert "nginx" not in needed and "iproute2" not in needed
