"""deploy/ (docs/deploy.md) stays true: nginx accepts its configuration (``nginx -t``, with a
certificate made for the test), its limits and live locations match the code, the systemd
units parse (``systemd-analyze verify`` where it exists), and the environment file names every
setting production reads — and nothing that is not one.

Without nginx the nginx test skips outside CI and fails in CI (``CI=true``), where .ci/run
installs it."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shanju.core import files
from shanju.core.config import Settings
from shanju.payments.registry import PROVIDERS

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "shanju.conf"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_EXAMPLE = DEPLOY / "systemd" / "shanju.env.example"


def _nginx() -> str:
    found = "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else shutil.which("nginx")
    if found is None:
        if IN_CI:
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    return found


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "give.example.org")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "fullchain.pem", folder / "privkey.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _nginx_t(tmp_path: Path, conf_text: str) -> subprocess.CompletedProcess[str]:
    nginx = _nginx()
    cert, key = _self_signed(tmp_path)
    conf_text = (conf_text
                 .replace("/etc/letsencrypt/live/give.example.org/fullchain.pem", str(cert))
                 .replace("/etc/letsencrypt/live/give.example.org/privkey.pem", str(key))
                 .replace("/var/log/nginx/", f"{tmp_path}/"))
    site = tmp_path / "shanju.conf"
    site.write_text(conf_text)
    # What /etc/nginx/nginx.conf gives a file of conf.d/: the http{} context around it.
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {site};\n}}\n")
    return subprocess.run(  # noqa: S603 - nginx on our own files
        [nginx, "-t", "-p", str(tmp_path), "-c", str(wrapper), "-e", str(tmp_path / "e.log")],
        capture_output=True, text=True, check=False, timeout=60)


def test_nginx_accepts_the_deployments_configuration(tmp_path: Path) -> None:
    done = _nginx_t(tmp_path, NGINX_CONF.read_text())
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_nginx_t_refuses_a_broken_configuration(tmp_path: Path) -> None:
    # The check above can fail: the same file with one directive misspelt does not pass.
    broken = NGINX_CONF.read_text().replace("proxy_read_timeout 60s;", "proxy_read_timeot 60s;")
    done = _nginx_t(tmp_path, broken)
    assert done.returncode != 0 and "proxy_read_timeot" in done.stderr


def _directive(name: str, text: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.MULTILINE)


def test_nginx_takes_the_largest_upload_and_proxies_the_live_routes() -> None:
    from shanju.campaigns.pages import router as campaign_pages
    from shanju.summit.gateway import router as summit_gateway

    text = NGINX_CONF.read_text()
    (size,) = _directive("client_max_body_size", text)
    assert size.endswith("m")
    assert int(size[:-1]) * 1024 * 1024 > files.MAX_FILES_PER_POST * files.MAX_UPLOAD_BYTES
    # The WebSocket location is the app's WebSocket route; the SSE one matches the live
    # leaderboard's path.
    paths = {getattr(r, "path", "") for r in (*summit_gateway.routes, *campaign_pages.routes)}
    assert "/summit/live" in paths and "location = /summit/live {" in text
    assert "/campaigns/{slug}/live" in paths
    (sse,) = re.findall(r"location ~ (\S+) \{", text)
    assert re.match(sse, "/campaigns/bench-day/live")
    # The edge sets the forwarded headers the nodes believe from it.
    headers = dict(h.split(None, 1) for h in _directive("proxy_set_header", text))
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Upgrade"] == "$http_upgrade"


def _env_names(text: str) -> set[str]:
    """Every variable a line sets or shows (``NAME=`` or ``# NAME=``)."""
    return set(re.findall(r"^#?\s*((?:SHANJU_|DATABASE_URL)\w*)=", text, flags=re.MULTILINE))


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"SHANJU_{name.upper()}")
    return names


PROVIDER_VARIABLES = {v for p in PROVIDERS.values() for v in p.variables}
SANDBOX = {"SHANJU_SANDBOX_ENABLED", "SHANJU_SANDBOX_SECRET"}


def test_the_environment_file_names_every_setting_and_nothing_else() -> None:
    text = ENV_EXAMPLE.read_text()
    named = _env_names(text)
    known = _setting_names() | PROVIDER_VARIABLES
    assert named - known == set(), "not settings (misspelt?)"
    # Complete: every setting and every provider variable, except the sandbox's.
    assert known - SANDBOX - named == set()
    # The sandbox is never set in production; it is only named in a comment.
    assert not (named & SANDBOX)
    active = set(re.findall(r"^((?:SHANJU_|DATABASE_URL)\w*)=", text, flags=re.MULTILINE))
    assert {"DATABASE_URL", "SHANJU_SECRET_KEY", "SHANJU_BASE_URL", "SHANJU_RATE_LIMIT_URL",
            "SHANJU_SUMMIT_BROKER_URL", "SHANJU_UPLOAD_DIR",
            "SHANJU_TRANSPARENCY_KEY_FILE"} <= active


def test_the_units_set_only_settings_and_read_the_environment_file() -> None:
    assert {u.name for u in UNITS} == {"shanju.service", "shanju-migrate.service"}
    for unit in UNITS:
        text = unit.read_text()
        for value in _directive_values("Environment", text):
            name = value.split("=", 1)[0]
            assert name in _setting_names(), (unit.name, name)
        assert _directive_values("EnvironmentFile", text) == ["/etc/shanju/shanju.env"]
    serve = (DEPLOY / "systemd" / "shanju.service").read_text()
    (exec_start,) = _directive_values("ExecStart", serve)
    assert " serve " in exec_start and "--workers" in exec_start
    assert "--forwarded-allow-ips" in exec_start


def _directive_values(name: str, text: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", text, flags=re.MULTILINE)


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the units' settings are checked above)")
    shanju = Path(shutil.which("shanju") or Path(sys.executable).parent / "shanju")
    copies = []
    for unit in UNITS:
        # Where this checkout has what the units name: the program and the environment file.
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text()
                        .replace("/opt/shanju/.venv/bin/shanju", str(shanju))
                        .replace("/etc/shanju/shanju.env", str(ENV_EXAMPLE)))
        copies.append(str(copy))
    done = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True,  # noqa: S603
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    # Parse problems are warnings on standard error (the unit would still load, without them).
    assert "Failed to parse" not in done.stderr and "Unknown key" not in done.stderr, done.stderr
