"""The read API: deployments, environments, gate decisions and DORA figures (SPEC section 3).

Views only parse and check the query string (422 naming each bad parameter) and call `app.queries`.
Keys need the read or admin scope; a key sent in a header counts against its rate limit, the
dashboard's own polling (signed-in session, no header) does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from app import limits, queries
from app.apikeys import authenticate, presented_key
from app.deploy_formats import STATUSES
from app.errors import ApiError
from app.openapi import bp as openapi_bp
from app.pagination import page_args
from app.state import runtime
from models.base import utcnow
from models.decisions import VERDICTS

bp = Blueprint("read_api", __name__)
bp.register_blueprint(openapi_bp)

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
           "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_DORA_PERIOD = "30d"
MAX_DORA_RANGE = timedelta(days=366)  # the figures are computed per request; a year is plenty for a chart
DORA_CACHE_SECONDS, DORA_CACHE_SIZE = 30.0, 256
KINDS, ENV_STATES = ("preview", "branch", "static"), ("active", "destroyed")
STATUS_ALIASES = {"failed": "failure"}  # the deploy webhook's spelling
LIMITS = {"repository": 140, "service": 100, "environment": 255, "source": 50}
PAGING = ("limit", "cursor")


def readable(view: Callable[..., Any]) -> Callable[..., Any]:
    """Require a read (or admin) key; count header keys against their rate."""

    @wraps(view)
    def inner(*args: Any, **kwargs: Any) -> Any:
        authenticate("read")
        if presented_key():
            try:
                limits.enforce()
            except limits.RateLimitExceeded:  # flask-limiter adds Retry-After to the answer
                raise ApiError(429, "rate_limited",
                               "rate limit of this key exceeded; retry after Retry-After seconds") from None
        return view(*args, **kwargs)

    return inner


# --------------------------------------------------------------------------- query-string parsing


def invalid(field: str, why: str) -> ApiError:
    """A 422 naming the parameter."""
    return ApiError(422, "invalid", "invalid query parameters", {field: why})


def allow(*names: str) -> None:
    """Refuse parameters the endpoint does not know: a misspelt filter must not silently match everything."""
    unknown = sorted(set(request.args) - set(names))
    why = f"unknown parameter; known: {', '.join(names)}" if names else "this endpoint takes no parameters"
    if unknown:
        raise ApiError(422, "invalid", "invalid query parameters", dict.fromkeys(unknown, why))


def text(name: str) -> str | None:
    """A text filter: present, not empty, not too long."""
    value = request.args.get(name)
    if value is None:
        return None
    if not value.strip() or len(value) > LIMITS.get(name, 255):
        raise invalid(name, f"must be 1 to {LIMITS.get(name, 255)} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; no stored name has one
        raise invalid(name, "must not contain NUL characters")
    return value


def choice(name: str, options: tuple[str, ...], aliases: dict[str, str] | None = None) -> str | None:
    """A filter with a fixed set of values."""
    value = request.args.get(name)
    if value is None:
        return None
    value = (aliases or {}).get(value, value)
    if value not in options:
        raise invalid(name, f"must be one of {', '.join(options)}")
    return value


def moment(name: str) -> datetime | None:
    """An ISO 8601 time (a date alone is midnight UTC; no offset means UTC)."""
    value = request.args.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: year 1 moved west of UTC
        raise invalid(name, "must be an ISO 8601 time such as 2026-01-31T12:00:00Z") from None


def time_range(default_period: str | None) -> tuple[datetime | None, datetime | None, str | None]:
    """(since, until, period name): `period` (ending now) or `since`/`until`; with neither, the default period."""
    period, since, until = choice("period", tuple(PERIODS)), moment("since"), moment("until")
    if period and (since or until):
        raise invalid("period", "give period, or since and until, not both")
    period = period or (None if since or until else default_period)
    if period:
        now = utcnow()
        return now - PERIODS[period], now, period
    if since and until and since >= until:
        raise invalid("until", "must be later than since")
    return since, until, None


def record_id(value: str) -> int:
    """A path id; 404 when it cannot be one of ours."""
    if not value.isdigit() or int(value) > 2**31 - 1:  # the id column is 32-bit: anything larger is not ours
        raise ApiError(404, "not_found", f"no deployment {value}")
    return int(value)


# --------------------------------------------------------------------------- endpoints


@bp.get("/api/v1/deployments")
@readable
def list_deployments() -> Any:
    """Newest first; filters repository, service, environment, status, source, since/until or period."""
    allow("repository", "service", "environment", "status", "source", "since", "until", "period", *PAGING)
    limit, after = page_args()
    since, until, _ = time_range(None)
    f = queries.DeploymentFilter(text("repository"), text("service"), text("environment"),
                                 choice("status", STATUSES, STATUS_ALIASES), text("source"), since, until)
    return jsonify(queries.list_deployments(runtime().engine, f, limit=limit, after=after))


@bp.get("/api/v1/deployments/<id>")
@readable
def get_deployment(id: str) -> Any:  # noqa: A002 - the path parameter's documented name
    """One deployment with its statuses, oldest first; 404 if unknown."""
    allow()
    found = queries.get_deployment(runtime().engine, record_id(id))
    if found is None:
        raise ApiError(404, "not_found", f"no deployment {id}")
    return jsonify(found)


@bp.get("/api/v1/environments")
@readable
def list_environments() -> Any:
    """What runs in each environment now; filters repository, environment, kind, state."""
    allow("repository", "environment", "kind", "state", *PAGING)
    limit, after = page_args()
    f = queries.EnvironmentFilter(text("repository"), text("environment"), choice("kind", KINDS),
                                  choice("state", ENV_STATES))
    return jsonify(queries.list_environments(runtime().engine, f, limit=limit, after=after))


@bp.get("/api/v1/decisions")
@readable
def list_decisions() -> Any:
    """CI-gate decisions newest first; filters repository, environment, sha (7 to 40 hex: a prefix), verdict."""
    allow("repository", "environment", "sha", "verdict", *PAGING)
    limit, after = page_args()
    sha = request.args.get("sha")
    if sha is not None and not (7 <= len(sha) <= 40 and all(c in "0123456789abcdef" for c in sha.lower())):
        raise invalid("sha", "must be 7 to 40 hexadecimal characters")
    f = queries.DecisionFilter(text("repository"), text("environment"), sha.lower() if sha else None,
                               choice("verdict", VERDICTS))
    return jsonify(queries.list_decisions(runtime().engine, f, limit=limit, after=after))


@bp.get("/api/v1/metrics/dora")
@readable
def dora_metrics() -> Any:
    """The four keys per repository/environment and period (default 30d), with a daily series."""
    allow("repository", "service", "environment", "period", "since", "until")
    since, until, period = time_range(DEFAULT_DORA_PERIOD)
    until = until or utcnow()
    try:
        since = since or until - PERIODS[DEFAULT_DORA_PERIOD]  # only `until` given: the 30 days before it
    except OverflowError:
        raise invalid("until", "is too early") from None
    if since >= until:
        raise invalid("since", "must be earlier than until")
    if until - since > MAX_DORA_RANGE:
        raise invalid("since", f"the range may span at most {MAX_DORA_RANGE.days} days")
    f = queries.DoraFilter(text("repository"), text("service"), text("environment"))
    key = (f, period) if period else (f, since, until)
    return jsonify(cached(key, lambda: {
        "repository": f.repository, "service": f.service, "environment": f.environment, "period": period,
        "since": queries.iso(since), "until": queries.iso(until),
        **queries.dora_metrics(runtime().engine, f, since, until)}))


def cached(key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The answer computed for `key` in the last DORA_CACHE_SECONDS by this process, else a fresh one.

    DORA reads every deployment of the period; a dashboard asks again every 5 seconds, and figures over
    days do not move in seconds. Each app keeps its own cache, so no process depends on another's memory.
    """
    cache = current_app.extensions.setdefault("slipway.read_api.dora", {})
    now = time.monotonic()
    hit = cache.get(key)
    if hit and hit[0] > now:
        return hit[1]
    value = compute()
    if len(cache) >= DORA_CACHE_SIZE:
        cache.clear()
    cache[key] = (now + DORA_CACHE_SECONDS, value)
    return value
