"""The registry of real gateways: built from the providers' variables (the emulators' keys as
files), reported when partly set or invalid, absent when not set at all, and found by name on
the app's ``Providers``. No database: nothing here touches one."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from shanju.app import create_app
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.errors import NotFound
from shanju.payments.alipay import AlipayGateway
from shanju.payments.emulators import alipay as alipay_emulator
from shanju.payments.emulators import wechatpay as wechatpay_emulator
from shanju.payments.gateway import ActionKind, Channel, MerchantRoute, PayRequest
from shanju.payments.providers import Providers, SandboxProvider
from shanju.payments.registry import (
    NO_PROVIDER,
    GatewayConfigError,
    configured_gateways,
    read_gateways,
)
from shanju.payments.wechatpay import WeChatPayGateway
from tests.payments.helpers import alipay_environ, wechatpay_environ
from tests.serving import free_socket, uvicorn_thread

SUB = "1900000109"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulators' keys, generated once for the module."""
    return tmp_path_factory.mktemp("provider-keys")


@pytest.fixture(autouse=True)
def no_outside_providers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The process's environment configures no provider and no .env file is read."""
    for name in list(os.environ):
        if name.startswith(("SHANJU_WECHATPAY_", "SHANJU_ALIPAY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_both_gateways_are_built_from_their_variables(key_dir: Path) -> None:
    environ = {**wechatpay_environ(key_dir), **alipay_environ(key_dir), "PATH": "/bin"}
    setup = read_gateways(environ, require_https=True)
    assert setup.problems == ()
    assert sorted(setup.gateways) == ["alipay", "wechatpay"]
    assert isinstance(setup.gateways["wechatpay"], WeChatPayGateway)
    assert isinstance(setup.gateways["alipay"], AlipayGateway)
    assert setup.production_problems() == []
    assert sorted(configured_gateways(environ, require_https=True)) == ["alipay", "wechatpay"]
    # One provider alone is enough; the other is simply absent.
    only = read_gateways(wechatpay_environ(key_dir), require_https=True)
    assert (list(only.gateways), only.problems) == (["wechatpay"], ())


def test_a_provider_without_any_variable_is_absent() -> None:
    setup = read_gateways({"PATH": "/bin", "SHANJU_WECHATPAY_SP_MCHID": "  "},
                          require_https=True)
    assert (dict(setup.gateways), setup.problems) == ({}, ())
    assert configured_gateways({}, require_https=True) == {}
    assert setup.production_problems() == [NO_PROVIDER]


def test_a_half_configured_provider_is_reported_not_built(key_dir: Path) -> None:
    wechat = wechatpay_environ(key_dir)
    half = {k: v for k, v in wechat.items()
            if k in ("SHANJU_WECHATPAY_SP_MCHID", "SHANJU_WECHATPAY_SP_APPID")}
    environ = {**half, **alipay_environ(key_dir), "SHANJU_ALIPAY_APPID": "2021000000000001"}
    setup = read_gateways(environ, require_https=True)
    assert dict(setup.gateways) == {}  # Alipay's misspelt variable holds it back too
    assert list(setup.problems) == [
        "WeChat Pay: SHANJU_WECHATPAY_CERT_SERIAL_NO is not set",
        "WeChat Pay: SHANJU_WECHATPAY_PRIVATE_KEY_FILE is not set",
        "WeChat Pay: SHANJU_WECHATPAY_APIV3_KEY is not set",
        "WeChat Pay: SHANJU_WECHATPAY_PUBLIC_KEY_FILE is not set",
        "WeChat Pay: SHANJU_WECHATPAY_PUBLIC_KEY_ID is not set",
        "Alipay: SHANJU_ALIPAY_APPID is not one of Alipay's variables (misspelt?)",
    ]
    assert setup.production_problems() == list(setup.problems)
    with pytest.raises(GatewayConfigError) as refused:
        configured_gateways(environ, require_https=True)
    assert refused.value.problems == list(setup.problems)
    assert all(wechat["SHANJU_WECHATPAY_APIV3_KEY"] not in p for p in setup.problems)


def test_an_invalid_key_file_or_an_http_url_is_a_problem(key_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    setup = read_gateways({**alipay_environ(key_dir),
                           "SHANJU_ALIPAY_PRIVATE_KEY_FILE": str(garbage)}, require_https=True)
    [problem] = setup.problems
    assert problem.startswith(f"Alipay: SHANJU_ALIPAY_PRIVATE_KEY_FILE ({garbage}) is not an "
                              "unencrypted RSA private key")
    http = {**wechatpay_environ(key_dir, "http://127.0.0.1:9"),
            **alipay_environ(key_dir, "http://127.0.0.1:9/gateway.do")}
    assert list(read_gateways(http, require_https=True).problems) == [
        "WeChat Pay: SHANJU_WECHATPAY_BASE_URL must be an https URL in production",
        "Alipay: SHANJU_ALIPAY_GATEWAY must be an https URL "
        "(it is 'http://127.0.0.1:9/gateway.do')",
    ]
    # Outside production a local emulator over plain http is fine.
    assert sorted(configured_gateways(http, require_https=False)) == ["alipay", "wechatpay"]


def _request(merchant: MerchantRoute, channel: Channel) -> PayRequest:
    return PayRequest(
        out_trade_no="SJ" + secrets.token_hex(8), amount_fen=1234, description="善举 · 一次捐赠",
        merchant=merchant, channel=channel, notify_url="http://127.0.0.1:9/notify",
        expires_at=utcnow().replace(microsecond=0) + dt.timedelta(minutes=15),
        client_ip="203.0.113.7")


@pytest.fixture
def emulators(key_dir: Path) -> Iterator[tuple[dict[str, str], MerchantRoute, MerchantRoute]]:
    """Both emulators served on their keys: (the variables pointing at them, a WeChat Pay
    sub-merchant, an Alipay merchant)."""
    wx_sock, ali_sock = free_socket(), free_socket()
    wx_base = f"http://127.0.0.1:{wx_sock.getsockname()[1]}"
    ali_base = f"http://127.0.0.1:{ali_sock.getsockname()[1]}"
    wx, _ = wechatpay_emulator.setup(wx_base, key_dir, sub_merchants={SUB: "绿水青山公益基金会"})
    environ = {**wechatpay_environ(key_dir, wx_base),
               **alipay_environ(key_dir, f"{ali_base}/gateway.do")}
    ali, _ = alipay_emulator.setup(ali_base, key_dir, app_id=environ["SHANJU_ALIPAY_APP_ID"])
    merchant = ali.add_merchant("青山助学基金会")
    with uvicorn_thread(wechatpay_emulator.create_app(wx), wx_sock), \
            uvicorn_thread(alipay_emulator.create_app(ali), ali_sock):
        yield environ, MerchantRoute("wechatpay", SUB), merchant.route()


def test_the_gateways_built_from_the_variables_talk_to_the_emulators(
        emulators: tuple[dict[str, str], MerchantRoute, MerchantRoute]) -> None:
    """The keys named by the variables are the ones the providers (here: emulated) know:
    both gateways open an order, signed and verified both ways."""
    environ, sub_merchant, alipay_merchant = emulators
    gateways = configured_gateways(environ, require_https=False)
    native = gateways["wechatpay"].create_payment(_request(sub_merchant, Channel.WECHAT_NATIVE))
    assert native.kind is ActionKind.QR and native.qr_text
    precreate = gateways["alipay"].create_payment(_request(alipay_merchant, Channel.ALIPAY_QR))
    assert precreate.kind is ActionKind.QR and precreate.qr_text


def test_providers_find_legacy_providers_and_gateways_by_name(key_dir: Path) -> None:
    gateways = configured_gateways({**wechatpay_environ(key_dir), **alipay_environ(key_dir)},
                                   require_https=True)
    sandbox = SandboxProvider("test-sandbox-secret")
    providers = Providers(sandbox, gateways=gateways)
    assert providers.names == ["alipay", "sandbox", "wechatpay"]
    assert providers.gateway_names == ["alipay", "wechatpay"]
    assert providers.gateway("wechatpay") is gateways["wechatpay"]
    assert providers.get("sandbox") is sandbox
    for missing in (lambda: providers.gateway("sandbox"), lambda: providers.get("alipay"),
                    lambda: providers.gateway("paypal")):
        with pytest.raises(NotFound) as refused:
            missing()
        assert refused.value.code == "unknown_provider"
    assert Providers().names == Providers().gateway_names == []
    with pytest.raises(ValueError, match="registered as 'alipay'"):
        Providers(gateways={"alipay": gateways["wechatpay"]})


def _settings(tmp_path: Path) -> Settings:
    return Settings(environment="test", database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}",
                    secret_key="test-secret", sandbox_secret="test-sandbox-secret",
                    upload_dir=tmp_path / "uploads",
                    transparency_key_file=tmp_path / "transparency-ed25519.key")


def test_the_app_puts_the_configured_gateways_on_its_providers(
        key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert create_app(_settings(tmp_path)).state.providers.names == ["sandbox"]
    for name, value in wechatpay_environ(key_dir, "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    providers = create_app(_settings(tmp_path)).state.providers
    assert providers.names == ["sandbox", "wechatpay"]
    assert isinstance(providers.gateway("wechatpay"), WeChatPayGateway)


def test_the_app_leaves_out_a_half_configured_provider_and_says_so(
        key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in alipay_environ(key_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SHANJU_ALIPAY_PUBLIC_KEY_FILE")
    providers = create_app(_settings(tmp_path)).state.providers  # configures the log itself
    assert providers.names == ["sandbox"]
    [line] = [x for x in capsys.readouterr().out.splitlines() if "left out" in x]
    assert "payment provider left out" in line
    assert ("problem=\"Alipay: SHANJU_ALIPAY_PUBLIC_KEY_FILE is not set: the file of Alipay's "
            "public key\"") in line


def test_the_providers_variables_are_read_from_the_env_file_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SHANJU_ALIPAY_APP_ID=2021000000000001\n"
                                   "SHANJU_ALIPAY_GATEWAY=https://from-the-file/gateway.do\n"
                                   "SHANJU_OTHER=x\n")
    monkeypatch.setenv("SHANJU_ALIPAY_GATEWAY", "https://from-the-environment/gateway.do")
    assert _settings(tmp_path).environ_with(("SHANJU_ALIPAY_",)) == {
        "SHANJU_ALIPAY_APP_ID": "2021000000000001",
        "SHANJU_ALIPAY_GATEWAY": "https://from-the-environment/gateway.do",
    }
