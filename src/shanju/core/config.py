"""Settings read from the environment (prefix ``SHANJU_``) and a ``.env`` file.

In production (:meth:`Settings.production_problems`) every signing secret must be strong — see
:func:`secret_problem` for the rule and ``docs/operations-secrets.md`` for what each secret
signs and how to rotate it — and no sandbox variable may be set: production never runs the
sandbox. What production needs of the payment providers is checked above this module, in
``shanju.payments.registry`` (which the app and ``shanju serve`` call).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused in production below
DEFAULT_SANDBOX_SECRET = "sandbox-signing-secret"  # noqa: S105 - published: refused in production

# A signing secret in production: at least this many bytes (UTF-8) ...
MIN_SECRET_BYTES = 32
# ... and at least this much estimated entropy (see secret_problem).
MIN_SECRET_BITS = 128
# Values published in this repository (defaults, examples): never a secret.
KNOWN_SECRETS = frozenset({DEV_SECRET, DEFAULT_SANDBOX_SECRET, "test-secret",
                           "test-sandbox-secret", "change-me", "changeme", "secret"})
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def estimated_entropy_bits(value: str) -> float:
    """Estimate a secret's entropy: its length times the Shannon entropy of its characters.

    Each character counts ``-log2(p)`` bits, ``p`` its frequency in the value itself: a
    repeated character counts nothing, a value of few distinct characters little. It cannot
    see that ``"abcdefgh…"`` is a sequence — it is a floor for mistakes, not a proof of
    randomness — but every value drawn from ``secrets`` of 32 bytes or more passes it easily
    (``token_urlsafe(32)``: about 200 bits; ``token_hex(32)``: about 240).
    """
    if not value:
        return 0.0
    n = len(value)
    return max(0.0, -sum(c * math.log2(c / n) for c in Counter(value).values()))


def secret_problem(name: str, value: str) -> str | None:
    """One line saying why ``value`` may not be the production secret ``name``, or None.

    The rule: not a value published in this repository (a default or an example), at least
    ``MIN_SECRET_BYTES`` (32) bytes in UTF-8, and an estimated entropy
    (:func:`estimated_entropy_bits`) of at least ``MIN_SECRET_BITS`` (128) bits.
    """
    if value in KNOWN_SECRETS:
        return f"{name} is a published default value; set a secret of your own"
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        unit = "byte" if size == 1 else "bytes"
        return (f"{name} is {size} {unit} long; a signing secret needs at least "
                f"{MIN_SECRET_BYTES} random bytes")
    bits = estimated_entropy_bits(value)
    if bits < MIN_SECRET_BITS:
        return (f"{name} has low entropy (about {bits:.0f} bits estimated as length x Shannon "
                f"entropy of its characters; at least {MIN_SECRET_BITS} needed): use random bytes")
    return None


class ProductionRefused(RuntimeError):
    """The settings are not safe for production; ``problems`` has one line per refusal."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("refusing to run in production: " + "; ".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """Everything the platform reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SHANJU_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default="sqlite:///var/shanju.sqlite3",
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; sqlite:///path or postgresql+psycopg://user@host/db",
    )
    secret_key: str = DEV_SECRET
    # The sandbox provider (payments that pay instantly, not real money): development, test
    # and the demo only. There it runs unless set to false (a test of an installation without
    # it); production never runs it, and refuses to start while either variable is set.
    sandbox_enabled: bool | None = None
    sandbox_secret: str = DEFAULT_SANDBOX_SECRET
    # The key donors' commitment salts in the transparency log derive from (empty: the
    # secret key). Set it to the old secret key before rotating SHANJU_SECRET_KEY, so that
    # receipts issued so far still open (docs/operations-secrets.md).
    receipt_salt_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    upload_dir: Path = Path("var/uploads")
    default_locale: str = "zh_CN"
    platform_name: str = "善举"
    # A CJK font file for share posters (empty: Debian's fonts-noto-cjk, then others; see
    # sharing/poster.py).
    poster_font: str = ""
    log_json: bool = False
    # Further sensitive words for donors' messages, one a line (docs/moderation.md).
    moderation_words_file: Path | None = None
    # The transparency log's Ed25519 signing key (PKCS#8 PEM, created 0600 on first use), the
    # log's origin line / key name (empty: "<host[:port] of base_url>/transparency") and how
    # often a checkpoint is signed while the app runs (0 or less: never in the background).
    transparency_key_file: Path = Path("var/transparency-ed25519.key")
    transparency_origin: str = ""
    transparency_checkpoint_seconds: float = 5.0
    # The payments job (reconciliation/job.py), while the app runs with a real provider: every
    # ``payments_job_seconds`` (0: never in the background) it asks the providers about orders
    # open and refunds pending for ``payments_sweep_after_minutes``, and once a day, from
    # ``reconcile_after_hour`` o'clock China time (the providers' bills are ready by then),
    # it reconciles the day before (docs/reconciliation.md).
    payments_job_seconds: float = Field(default=300.0, ge=0)
    payments_sweep_after_minutes: int = Field(default=10, ge=1, le=24 * 60)
    reconcile_after_hour: int = Field(default=10, ge=0, le=23)
    # The summit's live rooms: the broker that carries their messages between server
    # processes (memory:// for one process; redis://… or postgresql://… for several) and how
    # often each room broadcasts its coalesced updates.
    summit_broker_url: str = "memory://"
    # The giving day's writer in each server process (docs/campaigns/engine.md,
    # docs/locking.md): "group-commit" (one batch at a time per campaign across all processes,
    # the cheapest per gift) or "escrow" (each process spends a lease of the caps and pools,
    # so several write at once; about twice the CPU per gift: worth it only when the writers
    # have cores of their own).
    giving_day_writer: Literal["group-commit", "escrow"] = "group-commit"
    summit_tick_ms: int = 250
    # Where the rate limits' counters live (core/ratelimit.py): memory:// for one process,
    # redis://host:6379/0 (optionally ?namespace=NAME) to share them between processes.
    rate_limit_url: str = "memory://"
    # Live tokens' lifetime (a connection is sent a renewed one while its browser session
    # lasts) and how often each process checks the browser sessions and roles behind its
    # connections (sign-out, deactivation, a moderator's lost role act within this).
    summit_live_token_seconds: int = Field(default=300, ge=2, le=3600)
    summit_live_sweep_seconds: float = Field(default=2.0, gt=0, le=60)
    # Security headers and sessions (ADR 0022). Origins (``https://cdn.example``, space
    # separated) the summit's stage may stream or embed from besides a session's own stream
    # and player hosts (e.g. a CDN serving HLS segments from another host than the playlist).
    csp_media_hosts: str = ""
    # How long a signed-in browser may sit idle before its session ends: platform staff
    # (organization and enterprise staff, reviewers, admins) and donors.
    session_idle_minutes_staff: int = Field(default=30, ge=1)
    session_idle_minutes_donor: int = Field(default=7 * 24 * 60, ge=1)
    # Email by SMTP (core/mail.py, ADR 0033). Without a host, emails are written to the log
    # only (development and tests). ``smtp_security``: ``starttls`` (upgrade a plain
    # connection, port 587), ``tls`` (TLS from the start, port 465) or ``none`` (a local relay).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    mail_from: str = "善举 <no-reply@localhost>"
    # Sign-in by SMS code through Alibaba Cloud SMS (accounts/sms.py, ADR 0033): all four of
    # the key id, its secret, the approved signature (签名) and the code template (模板 Code,
    # with a ``${code}`` variable). Without them, phone sign-in is off in production and the
    # codes are written to the log elsewhere.
    sms_aliyun_access_key_id: str = ""
    sms_aliyun_access_key_secret: str = ""
    sms_aliyun_sign_name: str = ""
    sms_aliyun_template_code: str = ""
    sms_aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"

    @property
    def csp_media_origins(self) -> list[str]:
        """The extra origins of :attr:`csp_media_hosts`, as a list."""
        return self.csp_media_hosts.split()
    # PostgreSQL limits on the web application's transactions (requests, the giving-day
    # engine, the live rooms), in milliseconds, 0 for none: how long a statement waits for a
    # lock, how long one runs, how long a transaction may sit idle. A request that hits one is
    # answered 503 `database_busy` with Retry-After (a provider retries its callback). CLI jobs
    # (migrate, demo seeding, bench, checks) are not limited. See docs/locking.md, "Timeouts".
    db_lock_timeout_ms: int = Field(default=5_000, ge=0)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0)

    @property
    def cookie_secure(self) -> bool:
        """Send cookies over HTTPS only, outside development."""
        return self.environment == "production"

    @property
    def use_sandbox(self) -> bool:
        """Whether this installation runs the sandbox provider (and its routes): never in
        production."""
        return self.environment != "production" and self.sandbox_enabled is not False

    def environ_with(self, prefixes: tuple[str, ...]) -> dict[str, str]:
        """The variables whose names start with one of ``prefixes`` (e.g. the payment
        providers' ``SHANJU_WECHATPAY_``), read like every setting: from the ``.env`` file,
        then the environment, which wins. Names are matched exactly (upper case)."""
        found: dict[str, str] = {}
        env_file = self.model_config.get("env_file")
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            found.update({k: v for k, v in dotenv_values(env_file).items()
                          if v is not None and k.startswith(prefixes)})
        found.update({k: v for k, v in os.environ.items() if k.startswith(prefixes)})
        return found

    @property
    def salt_key(self) -> str:
        """The key the transparency log's donor salts derive from."""
        return self.receipt_salt_key or self.secret_key

    def secret_problems(self) -> list[str]:
        """Why the signing secrets are not good enough for production, one line each."""
        problems: list[str] = []
        if DEV_SECRET == self.secret_key:
            problems.append("SHANJU_SECRET_KEY is not set (the development default); set a "
                            "secret of your own")
        elif problem := secret_problem("SHANJU_SECRET_KEY", self.secret_key):
            problems.append(problem)
        if self.receipt_salt_key and (
            problem := secret_problem("SHANJU_RECEIPT_SALT_KEY", self.receipt_salt_key)
        ):
            problems.append(problem)
        return problems

    def production_problems(self) -> list[str]:
        """Every reason these settings may not run in production, one line each (none
        outside production): weak or default secrets, and any sandbox variable set.

        The payment providers' part (none configured, one partly set or invalid) is
        ``shanju.payments.registry.production_problems``, which includes these lines.
        """
        if self.environment != "production":
            return []
        problems = self.secret_problems()
        # Production never runs the sandbox (its payments are not real money, and its default
        # secret is published): a variable of it set there is a mistake to point out, not to
        # ignore — an operator who set it expects a sandbox that will not be there.
        sandbox = {name for name, field in (("SHANJU_SANDBOX_ENABLED", "sandbox_enabled"),
                                            ("SHANJU_SANDBOX_SECRET", "sandbox_secret"))
                   if field in self.model_fields_set}
        sandbox |= self.environ_with(("SHANJU_SANDBOX_",)).keys()
        if sandbox:
            names = sorted(sandbox)
            listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1
                                  else names)
            verb, pronoun = ("are", "them") if len(names) > 1 else ("is", "it")
            problems.append(f"{listed} {verb} set, but production never runs the sandbox "
                            f"payment provider (its payments are not real money): remove "
                            f"{pronoun}")
        return problems


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (read once)."""
    return Settings()
