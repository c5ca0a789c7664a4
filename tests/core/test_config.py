"""Production settings: the rule for signing secrets, and no sandbox in production — not even
its variables. (What production needs of the payment providers: tests/payments/
test_production.py and tests/cli/test_serve_production.py.)"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from shanju.core.config import (
    DEFAULT_SANDBOX_SECRET,
    DEV_SECRET,
    Settings,
    estimated_entropy_bits,
    secret_problem,
)

STRONG = secrets.token_urlsafe(48)


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read only what each test gives: no SHANJU_* variable, no .env file."""
    for name in ("SHANJU_ENVIRONMENT", "SHANJU_SECRET_KEY", "SHANJU_SANDBOX_ENABLED",
                 "SHANJU_SANDBOX_SECRET", "SHANJU_RECEIPT_SALT_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("SHANJU_SANDBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def prod(**values: object) -> Settings:
    return Settings(environment="production", secret_key=STRONG, **values)  # type: ignore[arg-type]


# Fixed ids for the random values: every pytest-xdist worker must collect the same names.
@pytest.mark.parametrize("value", [
    pytest.param(secrets.token_urlsafe(32), id="token_urlsafe(32)"),
    pytest.param(secrets.token_urlsafe(48), id="token_urlsafe(48)"),
    pytest.param(secrets.token_hex(32), id="token_hex(32)"),
    pytest.param(secrets.token_hex(48), id="token_hex(48)"),
    "mG7#qL2!xV9$wR4&zT6*yB1^nK8@pJ3%",
])
def test_random_secrets_of_32_bytes_pass(value: str) -> None:
    assert secret_problem("SHANJU_SECRET_KEY", value) is None


@pytest.mark.parametrize(("value", "says"), [
    (DEV_SECRET, "published default"),
    (DEFAULT_SANDBOX_SECRET, "published default"),
    ("test-secret", "published default"),
    ("x", "is 1 byte long; a signing secret needs at least 32 random bytes"),
    pytest.param(secrets.token_urlsafe(20), "bytes long",  # 27 characters
                 id="token_urlsafe(20)-bytes long"),
    ("秘" * 10, "is 30 bytes long"),  # bytes, not characters
    ("x" * 64, "low entropy (about 0 bits"),
    ("ab" * 40, "low entropy (about 80 bits"),
    pytest.param(secrets.token_hex(16), "low entropy",  # 32 characters, 16 random bytes
                 id="token_hex(16)-low entropy"),
    ("a-real-secret-from-the-environment", "low entropy"),
])
def test_default_short_and_low_entropy_secrets_are_refused(value: str, says: str) -> None:
    problem = secret_problem("SHANJU_SECRET_KEY", value)
    assert problem is not None and problem.startswith("SHANJU_SECRET_KEY ")
    assert says in problem
    assert "\n" not in problem


def test_the_entropy_estimate() -> None:
    assert estimated_entropy_bits("") == 0
    assert estimated_entropy_bits("aaaa") == 0
    assert estimated_entropy_bits("abab") == 4  # 1 bit a character
    assert estimated_entropy_bits("0123456789abcdef") == 64  # 4 bits a character


def test_outside_production_nothing_is_refused_and_the_sandbox_runs() -> None:
    for environment in ("development", "test"):
        settings = Settings(environment=environment)  # type: ignore[arg-type]
        assert settings.secret_key == DEV_SECRET and settings.use_sandbox
        assert settings.production_problems() == []
        # Its variables are fine there; false turns it off (an installation without it).
        assert Settings(environment=environment, sandbox_enabled=True,  # type: ignore[arg-type]
                        sandbox_secret="x").production_problems() == []
        assert not Settings(environment=environment,  # type: ignore[arg-type]
                            sandbox_enabled=False).use_sandbox


def test_production_refuses_every_problem_at_once_one_line_each() -> None:
    settings = Settings(environment="production", sandbox_enabled=True,
                        receipt_salt_key="short")
    assert not settings.use_sandbox
    assert settings.production_problems() == [
        "SHANJU_SECRET_KEY is not set (the development default); set a secret of your own",
        "SHANJU_RECEIPT_SALT_KEY is 5 bytes long; a signing secret needs at least 32 random "
        "bytes",
        "SHANJU_SANDBOX_ENABLED is set, but production never runs the sandbox payment provider "
        "(its payments are not real money): remove it",
    ]
    assert settings.secret_problems() == settings.production_problems()[:2]


@pytest.mark.parametrize("values", [
    {"sandbox_enabled": True, "sandbox_secret": secrets.token_urlsafe(48)},
    {"sandbox_enabled": True}, {"sandbox_secret": secrets.token_urlsafe(48)},
    {"sandbox_enabled": False}, {"sandbox_secret": DEFAULT_SANDBOX_SECRET},
])
def test_production_never_runs_the_sandbox_and_refuses_its_variables(
        values: dict[str, object]) -> None:
    """No opt-in any more: whatever the sandbox's variables say, production has no sandbox,
    and any of them set is a refusal — the operator expects something that is not there."""
    settings = prod(**values)
    assert not settings.use_sandbox
    names = sorted(f"SHANJU_{k.upper()}" for k in values)
    [problem] = settings.production_problems()
    assert problem == (
        f"{' and '.join(names)} {'are' if len(names) > 1 else 'is'} set, but production never "
        "runs the sandbox payment provider (its payments are not real money): remove "
        f"{'them' if len(names) > 1 else 'it'}")
    assert prod().production_problems() == []


def test_a_sandbox_variable_in_the_environment_or_the_env_file_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHANJU_SANDBOX_ENABLED", "true")
    [problem] = prod().production_problems()
    assert problem.startswith("SHANJU_SANDBOX_ENABLED is set, but production never runs")
    monkeypatch.delenv("SHANJU_SANDBOX_ENABLED")
    # A misspelt one too (it would have meant nothing, silently).
    (tmp_path / ".env").write_text("SHANJU_SANDBOX_ENABLE=true\n")
    [problem] = prod().production_problems()
    assert problem.startswith("SHANJU_SANDBOX_ENABLE is set, but production never runs")


def test_the_receipt_salt_key_defaults_to_the_secret_key() -> None:
    assert prod().salt_key == STRONG
    other = secrets.token_urlsafe(48)
    assert prod(receipt_salt_key=other).salt_key == other
    assert prod(receipt_salt_key=other).production_problems() == []
