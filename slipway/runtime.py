"""The process's shared services (settings, database engine, transport, Redis), built on first use."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from slipway.transport import Transport


@dataclass
class Runtime:
    """Everything a request or a job needs from its process."""

    settings: Settings
    engine: Engine
    transport: Transport
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def redis(self) -> Any:
        """The Redis client of the production transport, or None in embedded mode."""
        return getattr(self.transport, "redis", None)

    def github(self) -> Any:
        """The GitHub App client (workers.github.GitHubApp), built on first use; raises NotConfigured without APP_ID."""
        app = self.extras.get("github")
        if app is None:
            from workers.github import GitHubApp, MemoryTokens, RedisTokens

            tokens = RedisTokens(self.redis, self.settings.app_id or 0) if self.redis is not None else MemoryTokens()
            app = self.extras["github"] = GitHubApp(self.settings, tokens, on_response=self.extras.get("on_github_response"))
        return app

    def close(self) -> None:
        """Release connections (tests and shutdown)."""
        stop = getattr(self.transport, "stop", None)
        if stop:
            stop()
        self.engine.dispose()


_lock = threading.Lock()
_current: Runtime | None = None


def build(settings: Settings | None = None, *, transport: Transport | None = None) -> Runtime:
    """Create the services for these settings (the engine connects lazily)."""
    from models.db import make_engine
    from slipway.transport import EmbeddedTransport, RQTransport

    settings = settings or load_settings()
    if transport is None:
        transport = EmbeddedTransport() if settings.embedded else RQTransport(settings.redis_url or "")
    return Runtime(settings=settings, engine=make_engine(settings.database_url), transport=transport)


def install(rt: Runtime | None) -> Runtime | None:
    """Make `rt` the process's runtime (None clears it); returns the previous one."""
    global _current
    with _lock:
        previous, _current = _current, rt
    return previous


def current() -> Runtime:
    """The process's runtime, built from the environment on first use (RQ worker processes)."""
    global _current
    with _lock:
        if _current is None:
            _current = build()
        return _current
