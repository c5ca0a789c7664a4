"""The payment providers' variables for tests: the emulators' locally generated keys as files,
named the way an operator sets them (``SHANJU_WECHATPAY_*``, ``SHANJU_ALIPAY_*``)."""

from __future__ import annotations

from pathlib import Path

from shanju.payments import alipay, wechatpay
from shanju.payments.emulators.keys import key_pair_in
from shanju.payments.emulators.wechatpay import WeChatPayEmulatorKeys


def wechatpay_environ(key_dir: Path,
                      base_url: str = wechatpay.DEFAULT_BASE_URL) -> dict[str, str]:
    """Every ``SHANJU_WECHATPAY_*`` variable, for the emulator's keys kept in ``key_dir``."""
    config = WeChatPayEmulatorKeys.in_directory(key_dir).config(base_url)
    return {
        wechatpay.ENV_SP_MCHID: config.sp_mchid,
        wechatpay.ENV_SP_APPID: config.sp_appid,
        wechatpay.ENV_CERT_SERIAL_NO: config.cert_serial_no,
        wechatpay.ENV_PRIVATE_KEY_FILE: str(config.private_key_file),
        wechatpay.ENV_APIV3_KEY: config.apiv3_key,
        wechatpay.ENV_PUBLIC_KEY_FILE: str(config.public_key_file),
        wechatpay.ENV_PUBLIC_KEY_ID: config.public_key_id,
        wechatpay.ENV_BASE_URL: base_url,
    }


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
