"""Settings read from the environment (prefix ``SHANJU_``) and a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused in production below


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
    sandbox_secret: str = "sandbox-signing-secret"  # noqa: S105 - the sandbox provider's key
    base_url: str = "http://127.0.0.1:8000"
    upload_dir: Path = Path("var/uploads")
    default_locale: str = "zh_CN"
    platform_name: str = "善举"
    log_json: bool = False
    # The transparency log's Ed25519 signing key (PKCS#8 PEM, created 0600 on first use), the
    # log's origin line / key name (empty: "<host[:port] of base_url>/transparency") and how
    # often a checkpoint is signed while the app runs (0 or less: never in the background).
    transparency_key_file: Path = Path("var/transparency-ed25519.key")
    transparency_origin: str = ""
    transparency_checkpoint_seconds: float = 5.0
    # The summit's live rooms: the broker that carries their messages between server
    # processes (memory:// for one process; redis://… or postgresql://… for several) and how
    # often each room broadcasts its coalesced updates.
    summit_broker_url: str = "memory://"
    summit_tick_ms: int = 250
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

    def check_production(self) -> None:
        """Refuse to run in production with development secrets."""
        if self.environment == "production" and DEV_SECRET == self.secret_key:
            raise RuntimeError("SHANJU_SECRET_KEY must be set in production")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (read once)."""
    return Settings()
