"""The one place that reads configuration: environment variables and a `.env` file."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

GITHUB_BODY_LIMIT = 25 * 1024 * 1024  # GitHub never sends more than 25 MB
API_BODY_LIMIT = 1024 * 1024


def _default_log_format() -> str:
    """Text on a terminal, JSON anywhere else (log shippers)."""
    return "text" if sys.stderr.isatty() else "json"


class Settings(BaseSettings):
    """Slipway's configuration; SPEC section 2 names every variable."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite:///slipway.db"
    redis_url: str | None = None
    app_id: int | None = None
    private_key: SecretStr | None = None
    private_key_path: Path | None = None
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    github_api_url: str = "https://api.github.com"
    host: str = "127.0.0.1"
    port: int = 3000
    web_concurrency: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1))
    slipway_config: Path | None = None
    log_level: str = "info"
    log_format: str = Field(default_factory=_default_log_format)
    metrics_enabled: bool = True

    # Operational knobs: sensible defaults, overridable for tests and large installs.
    github_timeout: float = 10.0
    job_lease_seconds: int = 120          # a job not finished by then is assumed crashed (RQ kills it at 110 s)
    sweep_interval: float = 5.0           # how often workers look for stranded deliveries
    requeue_after_seconds: int = 60       # a 'queued' delivery untouched this long is queued again
    max_attempts: int = 6                 # retryable failures before a delivery is failed
    key_rate: str = "120/minute"          # default per-key rate limit of the deploy and read APIs
    allow_private_urls: bool = False      # SSRF rule for URLs Slipway fetches (provisioner http)
    secret_key: SecretStr | None = None   # signs dashboard sessions; default: derived from WEBHOOK_SECRET
    provisioner_secret: SecretStr | None = None  # signs http provisioner requests; default: the first WEBHOOK_SECRET

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        """Accept a comma-separated list so a secret can be rotated without downtime."""
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("redis_url", "app_id", "private_key", "private_key_path", "slipway_config", "provisioner_secret",
                     "secret_key",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """Treat `VAR=` as unset, as shells and .env files commonly do."""
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _lower_level(cls, value: str) -> str:
        """Accept INFO as well as info."""
        return value.lower()

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: SQLite-friendly single process with an in-process queue."""
        return self.redis_url is None

    @cached_property
    def private_key_pem(self) -> str | None:
        """The App's PEM key, inline (with literal \\n escapes allowed) or read from its path."""
        if self.private_key is not None:
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_path is not None:
            return self.private_key_path.read_text()
        return None

    @property
    def github_enabled(self) -> bool:
        """GitHub actions need both the App id and its key."""
        return self.app_id is not None and self.private_key_pem is not None

    @property
    def session_secret(self) -> bytes:
        """The key that signs dashboard session cookies; the same in every process of one deployment."""
        import hashlib
        import hmac

        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        seed = (self.secrets or [""])[0] or self.database_url
        return hmac.new(seed.encode(), b"slipway dashboard session", hashlib.sha256).digest()

    @property
    def provisioner_secret_bytes(self) -> bytes:
        """The key of the Standard Webhooks signature on http provisioner requests."""
        if self.provisioner_secret is not None:
            return self.provisioner_secret.get_secret_value().encode()
        return (self.secrets or [""])[0].encode()

    @property
    def secrets(self) -> list[str]:
        """Webhook secrets in the order they are tried."""
        return [s.get_secret_value() for s in self.webhook_secret]


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and .env) now, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
