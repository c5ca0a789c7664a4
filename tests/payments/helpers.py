"""The payment providers' variables for tests: the emulators' locally generated keys as files,
named the way an operator sets them (``SHANJU_WECHATPAY_*``, ``SHANJU_ALIPAY_*``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shanju.payments import alipay, wechatpay
from shanju.payments.emulators.keys import key_pair_in
from shanju.payments.emulators.wechatpay import WeChatPayEmulatorKeys


def wechatpay_environ(key_dir: Path,
                      base_url: str = wechatpay.DEFAULT_BASE_URL) -> dict[str, str]:
    """Every ``SHANJU_WECHATPAY_*`` variable, for the emulator's keys kept in ``key_dir``."""
    return WeChatPayEmulatorKeys.in_directory(key_dir).environ(base_url)


def alipay_environ(key_dir: Path, gateway_url: str = alipay.DEFAULT_GATEWAY, *,
                   app_id: str = "2021000000000001") -> dict[str, str]:
    """Every ``SHANJU_ALIPAY_*`` variable, for the emulator's keys kept in ``key_dir`` (the
    files ``shanju.payments.emulators.alipay.setup`` makes and reads there)."""
    key_pair_in(key_dir, "alipay-app")
    key_pair_in(key_dir, "alipay-gateway")
    return {
        alipay.ENV_APP_ID: app_id,
        alipay.ENV_PRIVATE_KEY_FILE: str(key_dir / "alipay-app.key.pem"),
        alipay.ENV_PUBLIC_KEY_FILE: str(key_dir / "alipay-gateway.pub.pem"),
        alipay.ENV_GATEWAY: gateway_url,
    }


def configure_wechatpay(monkeypatch: pytest.MonkeyPatch, key_dir: Path,
                        base_url: str = wechatpay.DEFAULT_BASE_URL) -> dict[str, str]:
    """Make WeChat Pay the one real provider the process's environment configures (no other
    provider's and no sandbox variable): what a production app needs to start."""
    for name in [n for n in os.environ
                 if n.startswith(("SHANJU_WECHATPAY_", "SHANJU_ALIPAY_", "SHANJU_SANDBOX_"))]:
        monkeypatch.delenv(name)
    environ = wechatpay_environ(key_dir, base_url)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ
