"""`SHANJU_ENVIRONMENT=production shanju serve`, the real command in a subprocess: it refuses
the sandbox (any of its variables), default, short or low-entropy secrets, no real payment
provider, and a provider partly set or not on https — each refusal one line, all at once, exit
2, no traceback — and a good configuration (strong secrets, WeChat Pay configured with the
emulator's keys and an https base URL) serves, without a sandbox."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shanju.core.config import DEFAULT_SANDBOX_SECRET
from shanju.payments.providers import SandboxProvider
from shanju.payments.registry import NO_PROVIDER
from tests.payments.helpers import wechatpay_environ
from tests.serving import free_socket

SHANJU = Path(sys.executable).with_name("shanju")  # .venv/bin/shanju
STRONG = secrets.token_urlsafe(48)
WECHATPAY_VARIABLES = ("SHANJU_WECHATPAY_SP_MCHID", "SHANJU_WECHATPAY_SP_APPID",
                       "SHANJU_WECHATPAY_CERT_SERIAL_NO", "SHANJU_WECHATPAY_PRIVATE_KEY_FILE",
                       "SHANJU_WECHATPAY_APIV3_KEY", "SHANJU_WECHATPAY_PUBLIC_KEY_FILE",
                       "SHANJU_WECHATPAY_PUBLIC_KEY_ID", "SHANJU_WECHATPAY_BASE_URL")


def environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """The process's environment without any setting of Shanju's, then production and
    ``values``; files under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHANJU_") and k != "DATABASE_URL"}
    env.update({
        "SHANJU_ENVIRONMENT": "production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shanju.sqlite3'}",
        "SHANJU_UPLOAD_DIR": str(tmp_path / "uploads"),
        "SHANJU_TRANSPARENCY_KEY_FILE": str(tmp_path / "transparency.key"),
        "SHANJU_TRANSPARENCY_CHECKPOINT_SECONDS": "0",
        **values,
    })
    return env


def shanju(tmp_path: Path, *args: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        [str(SHANJU), *args], env=environment(tmp_path, **values), cwd=tmp_path,
        capture_output=True, text=True, timeout=180, check=False)


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    """(status, body) of a GET, or a POST of ``body``; raises OSError if nobody answers."""
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def refusals(output: str) -> list[str]:
    return [line.strip()[2:] for line in output.splitlines() if line.startswith("  - ")]


@pytest.fixture(scope="module")
def wechatpay(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """WeChat Pay's variables, its keys the emulator's (made once), its real https base URL."""
    return wechatpay_environ(tmp_path_factory.mktemp("wechatpay-keys"))


WEAK_SECRET_HINT = "Make a secret with:"
# Each case: what changes from a good configuration (None: unset), the refusals expected, and
# whether the hint to make a secret is shown.
CASES: dict[str, tuple[dict[str, str | None], list[str], bool]] = {
    "default secret": ({"SHANJU_SECRET_KEY": None}, [
        "SHANJU_SECRET_KEY is not set (the development default); set a secret of your own"],
        True),
    "short secret": ({"SHANJU_SECRET_KEY": "x"}, [
        "SHANJU_SECRET_KEY is 1 byte long; a signing secret needs at least 32 random bytes"],
        True),
    "low-entropy secret": ({"SHANJU_SECRET_KEY": "ab" * 32}, [
        "SHANJU_SECRET_KEY has low entropy (about 64 bits estimated as length x Shannon "
        "entropy of its characters; at least 128 needed): use random bytes"], True),
    "the sandbox enabled": ({"SHANJU_SANDBOX_ENABLED": "true",
                             "SHANJU_SANDBOX_SECRET": secrets.token_urlsafe(48)}, [
        "SHANJU_SANDBOX_ENABLED and SHANJU_SANDBOX_SECRET are set, but production never runs "
        "the sandbox payment provider (its payments are not real money): remove them"], False),
    "the sandbox's secret alone": ({"SHANJU_SANDBOX_SECRET": DEFAULT_SANDBOX_SECRET}, [
        "SHANJU_SANDBOX_SECRET is set, but production never runs the sandbox payment provider "
        "(its payments are not real money): remove it"], False),
    "no real provider": (dict.fromkeys(WECHATPAY_VARIABLES), [NO_PROVIDER], False),
    "a provider partly set": ({"SHANJU_WECHATPAY_PUBLIC_KEY_ID": None,
                               "SHANJU_ALIPAY_APP_ID": "2021000000000001"}, [
        "WeChat Pay: SHANJU_WECHATPAY_PUBLIC_KEY_ID is not set",
        "Alipay: SHANJU_ALIPAY_PRIVATE_KEY_FILE is not set: the file of the application's "
        "private key",
        "Alipay: SHANJU_ALIPAY_PUBLIC_KEY_FILE is not set: the file of Alipay's public key"],
        False),
    "a provider on plain http": ({"SHANJU_WECHATPAY_BASE_URL": "http://api.mch.weixin.qq.com"}, [
        "WeChat Pay: SHANJU_WECHATPAY_BASE_URL must be an https URL in production"], False),
    "everything at once": ({"SHANJU_SECRET_KEY": "x", "SHANJU_SANDBOX_ENABLED": "true",
                            **dict.fromkeys(WECHATPAY_VARIABLES)}, [
        "SHANJU_SECRET_KEY is 1 byte long; a signing secret needs at least 32 random bytes",
        "SHANJU_SANDBOX_ENABLED is set, but production never runs the sandbox payment provider "
        "(its payments are not real money): remove it",
        NO_PROVIDER], True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_each_problem_in_one_line(tmp_path: Path, wechatpay: dict[str, str],
                                                case: str) -> None:
    changes, expected, hint = CASES[case]
    good = {"SHANJU_SECRET_KEY": STRONG, **wechatpay}
    values = {k: v for k, v in {**good, **changes}.items() if v is not None}
    done = shanju(tmp_path, "serve", **values)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Refusing to start in production:" in done.stdout
    assert refusals(done.stdout) == expected
    assert (WEAK_SECRET_HINT in done.stdout) is hint
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "shanju.sqlite3").exists()  # refused before touching the database


def test_a_good_configuration_passes_the_checks(tmp_path: Path,
                                                wechatpay: dict[str, str]) -> None:
    done = shanju(tmp_path, "serve", SHANJU_SECRET_KEY=STRONG,
                  SHANJU_RECEIPT_SALT_KEY=secrets.token_urlsafe(48), **wechatpay)
    # Past the production checks, to the next one: the schema is not migrated yet.
    assert "Refusing to start in production" not in done.stdout, done.stdout
    assert "shanju migrate" in done.stdout
    assert done.returncode == 2


def test_a_good_configuration_serves_without_a_sandbox(tmp_path: Path,
                                                      wechatpay: dict[str, str]) -> None:
    assert shanju(tmp_path, "migrate", SHANJU_SECRET_KEY=STRONG).returncode == 0
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen(  # noqa: S603 - our own command
        [str(SHANJU), "serve", "--port", str(port)], cwd=tmp_path,
        env=environment(tmp_path, SHANJU_SECRET_KEY=STRONG, **wechatpay),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # importing the app is slow on a busy machine
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if http(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer within 120 s"
            time.sleep(0.1)
        assert http(f"{base}/pay/sandbox/pi_x")[0] == 404
        body, headers = SandboxProvider(DEFAULT_SANDBOX_SECRET).build_callback(
            event_type="payment.succeeded", intent_id="pi_x", amount_fen=100)
        status, answer = http(f"{base}/api/v1/payments/callbacks/sandbox", body,
                              {**headers, "Content-Type": "application/json"})
        assert status == 404
        assert json.loads(answer)["error"]["code"] == "unknown_provider"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output = server.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
    assert "Refusing" not in output
    assert "Traceback" not in output
