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
    # Security headers and sessions (ADR 0022). Origins (``https://cdn.example``, space
    # separated) the summit's stage may stream or embed from besides a session's own stream
    # and player hosts (e.g. a CDN serving HLS segments from another host than the playlist).
    csp_media_hosts: str = ""
    # How long a signed-in browser may sit idle before its session ends: platform staff
    # (organization and enterprise staff, reviewers, admins) and donors.
    session_idle_minutes_staff: int = Field(default=30, ge=1)
    session_idle_minutes_donor: int = Field(default=7 * 24 * 60, ge=1)

    @property
    def csp_media_origins(self) -> list[str]:
        """The extra origins of :attr:`csp_media_hosts`, as a list."""
        return self.csp_media_hosts.split()

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
