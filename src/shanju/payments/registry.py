"""The installation's real payment gateways, built from the environment, and what production
refuses to run without.

A provider is *configured* as soon as any of its variables is set (``SHANJU_WECHATPAY_*``,
``SHANJU_ALIPAY_*``): then every one of them must be right (its configuration's
``problems()``), or it is reported — never half-built. A provider none of whose variables is
set is simply absent. :func:`read_gateways` returns both, the gateways it built and the
problems it found; the app puts the gateways on ``app.state.providers``
(:class:`~shanju.payments.providers.Providers`, ``providers.gateway(name)``).

In production (:func:`production_problems`, :func:`check_production`, called by
``create_app`` and ``shanju serve``) the settings' own refusals (secrets, the sandbox's
variables: :meth:`~shanju.core.config.Settings.production_problems`) come with the providers':
a provider partly set or invalid (an http base URL included), or no real provider at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shanju.core.config import ProductionRefused, Settings
from shanju.payments import alipay, wechatpay
from shanju.payments.gateway import Gateway

NO_PROVIDER = ("no real payment provider is configured: set every SHANJU_WECHATPAY_* variable "
               "(docs/payments-wechatpay.md) or every SHANJU_ALIPAY_* one "
               "(docs/payments-alipay.md)")


@dataclass(frozen=True, slots=True)
class _Provider:
    """One real provider: its label for people, its variables, and how to build its gateway."""

    label: str
    prefix: str
    variables: frozenset[str]
    # (environ, require_https) -> (gateway or None, problems)
    build: Callable[[Mapping[str, str], bool], tuple[Gateway | None, list[str]]]


def _wechatpay(environ: Mapping[str, str], require_https: bool) -> tuple[Gateway | None,
                                                                        list[str]]:
    config = wechatpay.WeChatPayConfig.from_env(environ)
    if problems := config.problems(require_https=require_https):
        return None, problems
    try:
        return wechatpay.WeChatPayGateway(config), []
    except wechatpay.WeChatPayConfigError as exc:
        return None, exc.problems


def _alipay(environ: Mapping[str, str], require_https: bool) -> tuple[Gateway | None,
                                                                     list[str]]:
    config = alipay.AlipayConfig.from_env(environ)
    if problems := config.problems(require_https=require_https):
        return None, problems
    try:
        return alipay.AlipayGateway(config), []
    except alipay.AlipayConfigError as exc:
        return None, [str(exc)]


PROVIDERS: Mapping[str, _Provider] = MappingProxyType({
    wechatpay.PROVIDER: _Provider(
        "WeChat Pay", "SHANJU_WECHATPAY_",
        frozenset({wechatpay.ENV_SP_MCHID, wechatpay.ENV_SP_APPID, wechatpay.ENV_CERT_SERIAL_NO,
                   wechatpay.ENV_PRIVATE_KEY_FILE, wechatpay.ENV_APIV3_KEY,
                   wechatpay.ENV_PUBLIC_KEY_FILE, wechatpay.ENV_PUBLIC_KEY_ID,
                   wechatpay.ENV_BASE_URL}),
        _wechatpay),
    alipay.PROVIDER: _Provider(
        "Alipay", "SHANJU_ALIPAY_",
        frozenset({alipay.ENV_APP_ID, alipay.ENV_PRIVATE_KEY_FILE, alipay.ENV_PUBLIC_KEY_FILE,
                   alipay.ENV_GATEWAY}),
        _alipay),
})
# Every variable a provider reads starts with one of these.
PREFIXES = tuple(p.prefix for p in PROVIDERS.values())


class GatewayConfigError(ValueError):
    """A provider is partly configured or misconfigured: ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class GatewaySetup:
    """What :func:`read_gateways` found: the gateways it built, by name, and the problems of
    the providers it could not build (one line each, naming the provider and the variable)."""

    gateways: Mapping[str, Gateway] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def production_problems(self) -> list[str]:
        """Why these providers may not take money in production, one line each."""
        if not self.gateways and not self.problems:
            return [NO_PROVIDER]
        return list(self.problems)


def read_gateways(environ: Mapping[str, str] | None = None, *,
                  require_https: bool) -> GatewaySetup:
    """Build the gateway of every provider whose variables are present in ``environ`` (the
    process's environment by default); report each provider partly set or invalid.

    ``require_https``: the provider's base URL must be https (production); outside it a
    development set-up may point at a local emulator over plain http.
    """
    env = os.environ if environ is None else environ
    gateways: dict[str, Gateway] = {}
    problems: list[str] = []
    for name, provider in PROVIDERS.items():
        present = {k for k, v in env.items() if k.startswith(provider.prefix) and v.strip()}
        if not present:
            continue
        found = [f"{k} is not one of {provider.label}'s variables (misspelt?)"
                 for k in sorted(present - provider.variables)]
        gateway, config_problems = provider.build(env, require_https)
        found += config_problems
        if found:
            problems += [f"{provider.label}: {line}" for line in found]
        elif gateway is not None:
            gateways[name] = gateway
    return GatewaySetup(gateways, tuple(problems))


def configured_gateways(environ: Mapping[str, str] | None = None, *,
                        require_https: bool) -> dict[str, Gateway]:
    """The gateways :func:`read_gateways` builds, or :class:`GatewayConfigError` listing every
    problem when a provider is partly set or invalid."""
    setup = read_gateways(environ, require_https=require_https)
    if setup.problems:
        raise GatewayConfigError(list(setup.problems))
    return dict(setup.gateways)


def gateway_setup(settings: Settings) -> GatewaySetup:
    """The gateways of ``settings``' installation: its payment variables, https in production."""
    return read_gateways(settings.environ_with(PREFIXES),
                         require_https=settings.environment == "production")


def production_problems(settings: Settings, setup: GatewaySetup | None = None) -> list[str]:
    """Every reason not to run ``settings`` in production, one line each (none outside it):
    the settings' own (weak or default secrets, sandbox variables), then the payment
    providers' (``setup``, read from the settings when not given)."""
    if settings.environment != "production":
        return []
    setup = setup if setup is not None else gateway_setup(settings)
    return [*settings.production_problems(), *setup.production_problems()]


def check_production(settings: Settings, setup: GatewaySetup | None = None) -> None:
    """Refuse to run in production with any of :func:`production_problems`
    (:class:`~shanju.core.config.ProductionRefused` lists them all at once)."""
    if problems := production_problems(settings, setup):
        raise ProductionRefused(problems)
