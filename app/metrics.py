"""GET /metrics: Prometheus text, read at scrape time so every web process tells the same, global story.

Values come from the shared state, never from the answering process's memory: the database (deliveries,
job durations, decisions), the queue (depth), and, for GitHub API calls, Redis counters that every worker
process adds to through the `on_github_response` hook (embedded mode: one process, so in-process counters).
No auth (SPEC section 10); METRICS_ENABLED=false turns the endpoint off (404).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from sqlalchemy import func, or_, select

from models import Decision, Delivery
from models.base import utcnow
from slipway.runtime import Runtime

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

DURATION_WINDOW = timedelta(hours=1)
# Deliveries finished in the last hour were received at most this long before it (retries, rate-limit
# waits); the bound lets the received_at index limit the scan instead of reading the whole table.
RECEIVED_LOOKBACK = timedelta(days=1)
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REDIS_PREFIX = "slipway:metrics"


# ---------------------------------------------------------------- GitHub calls (the response hook)


class GitHubCalls:
    """Counts GitHub answers by status and keeps the last x-ratelimit-remaining, per resource."""

    def __init__(self, redis: Any = None) -> None:
        self.redis = redis
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._remaining: dict[str, float] = {}
        self._down_until = 0.0

    def __call__(self, response: Any) -> None:
        """The httpx response hook: never raises, never slows a call down for long."""
        try:
            status = str(response.status_code)
            remaining = response.headers.get("x-ratelimit-remaining")
            resource = response.headers.get("x-ratelimit-resource") or "core"
            if self.redis is not None:
                self._record_redis(status, resource, remaining)
            else:
                with self._lock:
                    self._calls[status] += 1
                    if remaining is not None:
                        self._remaining[resource] = float(remaining)
        except Exception:  # metrics must never break a GitHub call
            log.debug("could not count a GitHub answer", exc_info=True)

    def _record_redis(self, status: str, resource: str, remaining: str | None) -> None:
        """One round trip; skipped for a while after Redis failed, so calls do not keep waiting on it."""
        if time.monotonic() < self._down_until:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(f"{REDIS_PREFIX}:github_calls", status, 1)
                if remaining is not None:
                    pipe.hset(f"{REDIS_PREFIX}:github_remaining", resource, remaining)
                pipe.execute()
        except Exception:
            # redis-py retries with backoff (seconds) before failing: pay that once per 30 s, not per call.
            self._down_until = time.monotonic() + 30.0
            raise

    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        """(calls by status, last remaining by resource), from Redis or this process."""
        if self.redis is not None:
            calls = self.redis.hgetall(f"{REDIS_PREFIX}:github_calls")
            remaining = self.redis.hgetall(f"{REDIS_PREFIX}:github_remaining")
            return ({_s(k): float(v) for k, v in calls.items()}, {_s(k): float(v) for k, v in remaining.items()})
        with self._lock:
            return {k: float(v) for k, v in self._calls.items()}, dict(self._remaining)


def _s(value: Any) -> str:
    """Redis answers bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def install_hooks(rt: Runtime) -> GitHubCalls:
    """Make this runtime count GitHub answers; call before its first rt.github() (idempotent)."""
    calls = rt.extras.get("metrics_github_calls")
    if calls is None:
        calls = rt.extras["metrics_github_calls"] = GitHubCalls(rt.redis)
        if "github" in rt.extras:
            log.warning("metrics hook installed after the GitHub client was built; its calls are not counted")
    rt.extras.setdefault("on_github_response", calls)
    return calls


# ---------------------------------------------------------------- the collector


class SlipwayCollector:
    """Reads every value when Prometheus scrapes; a failing source is reported, not fatal."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        """All metric families; each source that fails sets slipway_metrics_source_up{source} to 0."""
        up = GaugeMetricFamily("slipway_metrics_source_up", "1 when the source answered this scrape.",
                               labels=["source"])
        for source, produce in (("database", self._database), ("queue", self._queue), ("github", self._github)):
            try:
                yield from list(produce())
                up.add_metric([source], 1)
            except Exception as exc:
                log.warning("metrics source failed", extra={"source": source, "error": f"{type(exc).__name__}: {exc}"})
                up.add_metric([source], 0)
        yield up

    def _database(self) -> Iterator[Metric]:
        """Deliveries by event and state, age of the oldest waiting delivery, job durations, decisions."""
        now = utcnow()
        waiting_since = func.coalesce(Delivery.next_attempt_at, Delivery.queued_at, Delivery.received_at)
        with self.rt.engine.connect() as conn:
            by_state = conn.execute(select(Delivery.event, Delivery.state, func.count())
                                    .group_by(Delivery.event, Delivery.state)).all()
            oldest = conn.execute(select(func.min(waiting_since).label("oldest")).where(
                Delivery.state.in_(("received", "queued")),
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now))).scalar()
            finished = conn.execute(select(Delivery.event, Delivery.started_at, Delivery.finished_at).where(
                Delivery.received_at >= now - DURATION_WINDOW - RECEIVED_LOOKBACK,
                Delivery.finished_at >= now - DURATION_WINDOW, Delivery.started_at.is_not(None))).all()
            verdicts = conn.execute(select(Decision.verdict, func.count()).group_by(Decision.verdict)).all()

        deliveries = GaugeMetricFamily("slipway_deliveries", "Stored GitHub deliveries by event and state.",
                                       labels=["event", "state"])
        for event, state, count in by_state:
            deliveries.add_metric([event, state], count)
        yield deliveries

        age = GaugeMetricFamily("slipway_queue_oldest_age_seconds",
                                "Seconds the oldest delivery due for processing has waited (0 when none).")
        age.add_metric([], max((now - _aware(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0)
        yield age

        yield _durations(finished)

        decisions = CounterMetricFamily("slipway_decisions", "Deploy decisions by verdict.", labels=["verdict"])
        for verdict, count in verdicts:
            decisions.add_metric([verdict], count)
        yield decisions

    def _queue(self) -> Iterator[Metric]:
        """Jobs waiting in the transport (RQ queue in production, the in-process queue in embedded mode)."""
        depth = GaugeMetricFamily("slipway_queue_depth", "Jobs waiting in the queue.")
        depth.add_metric([], self.rt.transport.depth())
        yield depth

    def _github(self) -> Iterator[Metric]:
        """GitHub API answers by status and the last rate-limit remaining seen."""
        calls, remaining = install_hooks(self.rt).snapshot()
        total = CounterMetricFamily("slipway_github_api_calls", "GitHub API answers by HTTP status.",
                                    labels=["status"])
        for status, count in sorted(calls.items()):
            total.add_metric([status], count)
        yield total
        gauge = GaugeMetricFamily("slipway_github_ratelimit_remaining",
                                  "The x-ratelimit-remaining of the last GitHub answer, by resource.",
                                  labels=["resource"])
        for resource, value in sorted(remaining.items()):
            gauge.add_metric([resource], value)
        yield gauge


def _aware(moment: Any) -> Any:
    """Treat a naive database value as UTC."""
    from datetime import timezone

    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _durations(rows: list[Any]) -> Metric:
    """Job durations of the last hour by event, as a gauge histogram (a window, not a running counter)."""
    family = GaugeHistogramMetricFamily(
        "slipway_job_duration_seconds", "Durations of jobs finished in the last hour (finished_at - started_at).",
        labels=["event"])
    by_event: dict[str, list[float]] = {}
    for event, started, finished in rows:
        by_event.setdefault(event, []).append(max((_aware(finished) - _aware(started)).total_seconds(), 0.0))
    for event, values in sorted(by_event.items()):
        buckets = [(_le(b), float(sum(1 for v in values if v <= b))) for b in BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([event], buckets, gsum_value=sum(values))
    return family


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it."""
    return repr(float(bound))


# ---------------------------------------------------------------- HTTP


def init_app(app: Flask, rt: Runtime) -> None:
    """Count GitHub answers in this process and serve /metrics, unless METRICS_ENABLED is false (then 404)."""
    install_hooks(rt)
    if not rt.settings.metrics_enabled:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SlipwayCollector(rt))  # type: ignore[arg-type]
    app.extensions["slipway_metrics"] = registry
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus text exposition."""
    from flask import current_app

    return Response(generate_latest(current_app.extensions["slipway_metrics"]), content_type=CONTENT_TYPE_LATEST)
