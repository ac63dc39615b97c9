"""Per-key rate limits (flask-limiter): one bucket per API key, shared by every web process.

The bucket is named by the key's SHA-256, never by the key itself (the storage would otherwise hold
live credentials). Production keeps the counters in Redis (REDIS_URL) so that all web processes and
machines share them; the embedded mode's single process keeps them in memory. A view calls
``enforce()`` after it has authenticated the key, so each endpoint answers a 429 in its own shape.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from slipway.ratelimit import parse_rate
from slipway.runtime import Runtime

__all__ = ["RateLimitExceeded", "enforce", "init_app", "rate_for", "storage_uri"]

EXTENSION = "slipway.limits"
SCOPE = "api-key"  # one bucket per key, whichever endpoint it calls


def storage_uri(settings: Any) -> str:
    """Redis in production (shared by every process), memory in the embedded mode's single process."""
    return settings.redis_url if settings.redis_url else "memory://"


def rate_for(key_rate: str | None, default: str) -> str:
    """The key's own rate when it is valid, else the server default (settings.key_rate)."""
    return key_rate if key_rate and parse_rate(key_rate) else default


def init_app(app: Flask, rt: Runtime) -> None:
    """Attach a limiter of this app's own (apps built for other runtimes keep their own counters)."""
    # Registered before the limiter's hook so that it runs after it (Flask runs after_request in reverse).
    app.after_request(_tidy_retry_after)
    limiter = Limiter(
        key_func=_bucket, app=app, storage_uri=storage_uri(rt.settings), strategy="moving-window",
        headers_enabled=True, key_prefix="slipway",
        # A Redis outage must not stop CI reports: the limit is skipped (and logged) until Redis is back.
        swallow_errors=True, storage_options={"socket_timeout": 2, "socket_connect_timeout": 1}
        if rt.settings.redis_url else {},
    )
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    app.extensions[EXTENSION] = limiter.shared_limit(lambda: _rate(rt), scope=SCOPE, key_func=_bucket)
    app.extensions[EXTENSION + ".limiter"] = limiter


def exempt(app: Flask, *blueprints: Any) -> None:
    """Keep the limiter's before_request hook off routes that have no key (the GitHub webhook, health).

    Flask-Limiter registers its hook for every request and checks exemptions inside it (a measurable
    cost per delivery); here the hook is moved to the other blueprints instead, so on the exempt
    ones it never runs. Call after every blueprint is registered.
    """
    limiter = app.extensions[EXTENSION + ".limiter"]
    hooks = app.before_request_funcs.get(None, [])
    mine = [f for f in hooks if getattr(f, "__self__", None) is limiter]
    for f in mine:
        hooks.remove(f)
    skip = {bp.name for bp in blueprints}
    for name in app.blueprints:
        if name not in skip:
            app.before_request_funcs.setdefault(name, []).extend(mine)


def enforce() -> None:
    """Count this request against `g.api_key`'s bucket; raise RateLimitExceeded (429) when it is over."""
    with current_app.extensions[EXTENSION]:
        pass


def _bucket() -> str:
    """The bucket of the authenticated key: its hash."""
    return g.api_key.key_hash


def _rate(rt: Runtime) -> str:
    """The authenticated key's rate (flask-limiter also asks before any view ran: then the default)."""
    key = g.get("api_key")
    return rate_for(key.rate if key else None, rt.settings.key_rate)


def _tidy_retry_after(response: Response) -> Response:
    """Drop the limiter's Retry-After from successes; on a 429 never below one second (zero invites a hammering)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return response
    if response.status_code < 300:
        del response.headers["Retry-After"]
    elif value.isdigit() and int(value) < 1:
        response.headers["Retry-After"] = "1"
    return response
