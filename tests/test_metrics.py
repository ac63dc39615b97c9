"""GET /metrics: scraped after real deliveries and GitHub calls against the fake; numbers checked (both modes)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from models import Decision, Delivery
from models.base import utcnow
from tests import factories as f
from tests.conftest import Deliveries, drain

STAGING = """
environments:
  staging:
    on: push
"""


def scrape(client) -> dict[tuple[str, frozenset], float]:  # noqa: ANN001
    """GET /metrics and index every sample by (name, labels)."""
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    """One sample's value, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    """label value → sample value, for samples of `name` with only that label."""
    return {dict(k[1])[label]: v for k, v in samples.items() if k[0] == name and set(dict(k[1])) == {label}}


def test_deliveries_decisions_and_github_calls_match_the_truth(gh_rt, gh_client, fake_github) -> None:  # noqa: ANN001
    """After a push that deploys, a ping and an ignored event, every number agrees with the DB and the fake."""
    fake_github.set_file(f.REPO, ".github/slipway.yml", STAGING)
    fake_github.add_check_run(f.REPO, f.sha("m1"), "test", conclusion="success")  # the default gate passes
    hooks = Deliveries(gh_client)
    for event, payload in (("ping", f.ping()), ("push", f.push(after=f.sha("m1"))), ("issues", f.event("opened")),
                           ("issues", f.event("closed"))):
        assert hooks.post(event, payload).status_code in (200, 202)
    drain(gh_rt)
    gh_rt.github().repo(f.INSTALLATION_ID, f.REPO).list_deployments()  # the last GitHub answer is known

    samples = scrape(gh_client)

    with gh_rt.engine.connect() as conn:
        truth = {(e, s): n for e, s, n in conn.execute(
            select(Delivery.event, Delivery.state, func.count()).group_by(Delivery.event, Delivery.state))}
        verdicts = dict(conn.execute(select(Decision.verdict, func.count()).group_by(Decision.verdict)).all())
    assert truth[("issues", "ignored")] == 2 and truth[("push", "done")] == 1
    assert {(dict(k[1])["event"], dict(k[1])["state"]): v for k, v in samples.items()
            if k[0] == "slipway_deliveries"} == truth
    assert verdicts.get("deploy") == 1
    assert by_label(samples, "slipway_decisions_total", "verdict") == verdicts

    answered = Counter(str(c.status) for c in fake_github.calls)
    assert by_label(samples, "slipway_github_api_calls_total", "status") == answered
    assert answered["201"] >= 2  # the installation token and the deployment, at least
    used = fake_github._rate_used[f"installation:{f.INSTALLATION_ID}"]
    assert value(samples, "slipway_github_ratelimit_remaining", resource="core") == fake_github.rate_limit - used
    for source in ("database", "queue", "github"):
        assert value(samples, "slipway_metrics_source_up", source=source) == 1


def test_job_durations_are_the_last_hour_of_finished_deliveries(gh_rt, gh_client) -> None:  # noqa: ANN001
    """finished_at - started_at of deliveries finished in the last hour, bucketed by event."""
    hooks = Deliveries(gh_client)
    guids = [f"dur-{n}" for n in range(4)]
    for guid in guids:
        hooks.post("ping", f.ping(), guid=guid)
    drain(gh_rt)
    now = utcnow()
    with gh_rt.engine.begin() as conn:
        for guid, seconds, finished in (("dur-0", 0.2, now), ("dur-1", 3.0, now - timedelta(minutes=10)),
                                        ("dur-2", 45.0, now - timedelta(minutes=59)),
                                        ("dur-3", 7.0, now - timedelta(hours=2))):  # outside the window
            conn.execute(update(Delivery).where(Delivery.guid == guid).values(
                started_at=finished - timedelta(seconds=seconds), finished_at=finished))

    samples = scrape(gh_client)

    bucket = lambda le: value(samples, "slipway_job_duration_seconds_bucket", event="ping", le=le)  # noqa: E731
    assert (bucket("0.1"), bucket("0.25"), bucket("2.5"), bucket("5.0"), bucket("30.0"), bucket("60.0")) == (
        0, 1, 1, 2, 2, 3)
    assert bucket("+Inf") == 3
    assert value(samples, "slipway_job_duration_seconds_gcount", event="ping") == 3
    assert value(samples, "slipway_job_duration_seconds_gsum", event="ping") == pytest.approx(48.2, abs=0.01)


def test_queue_depth_and_age_of_the_oldest_waiting_delivery(make_runtime, mode: str) -> None:  # noqa: ANN001
    """Jobs not yet run count in the depth; the age is the oldest due one's wait (scheduled retries excluded)."""
    from app import create_app

    rt = make_runtime(mode)  # the embedded worker thread is not started: jobs wait in the queue
    client = create_app(rt=rt).test_client()
    hooks = Deliveries(client)
    for n in range(3):
        assert hooks.post("deployment", f.deployment_event(f.deployment_obj(900 + n)), guid=f"q-{n}").status_code == 202
    now = utcnow()
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.guid == "q-0").values(
            received_at=now - timedelta(seconds=120), queued_at=now - timedelta(seconds=120)))
        conn.execute(update(Delivery).where(Delivery.guid == "q-1").values(  # a retry due in the future
            received_at=now - timedelta(hours=1), queued_at=None, next_attempt_at=now + timedelta(minutes=5)))

    samples = scrape(client)

    assert value(samples, "slipway_queue_depth") == 3
    assert 120 <= value(samples, "slipway_queue_oldest_age_seconds") < 150
    drain(rt) if mode == "production" else rt.transport.start()
    drain(rt)
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.guid == "q-1").values(state="done", next_attempt_at=None))
    after = scrape(client)
    assert value(after, "slipway_queue_depth") == 0 and value(after, "slipway_queue_oldest_age_seconds") == 0


def test_github_calls_from_other_processes_add_up_in_redis(make_runtime, github_settings, fake_github) -> None:  # noqa: ANN001
    """Production: two worker runtimes count into Redis; two web processes report the same totals."""
    from app import create_app
    from app.metrics import install_hooks

    web_a = create_app(rt=make_runtime("production")).test_client()
    web_b = create_app(rt=make_runtime("production")).test_client()
    for _ in range(2):  # two "worker processes", each with its own client and hook
        worker = make_runtime("production", **github_settings)
        install_hooks(worker)
        worker.github().repo(f.INSTALLATION_ID, f.REPO).list_deployments()
    fake_github.fail("GET", r"/deployments$", 502)
    with pytest.raises(Exception):  # noqa: B017, PT011
        worker.github().repo(f.INSTALLATION_ID, f.REPO).list_deployments()

    a, b = scrape(web_a), scrape(web_b)
    calls = by_label(a, "slipway_github_api_calls_total", "status")
    assert calls == Counter(str(c.status) for c in fake_github.calls)
    assert calls["502"] == 1 and calls["201"] == 1  # one token, shared through Redis by both workers
    assert calls["200"] == 2  # one listing by each worker: the counts of both processes added up
    assert by_label(b, "slipway_github_api_calls_total", "status") == calls


def test_metrics_can_be_switched_off(make_runtime, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """METRICS_ENABLED=false → 404; the setting is read from the environment."""
    from app import create_app
    from slipway.settings import load_settings

    monkeypatch.setenv("METRICS_ENABLED", "false")
    assert load_settings(_env_file=None).metrics_enabled is False
    assert create_app(rt=make_runtime()).test_client().get("/metrics").status_code == 404
    monkeypatch.delenv("METRICS_ENABLED")
    off = create_app(rt=make_runtime(metrics_enabled=False)).test_client()
    assert off.get("/metrics").status_code == 404
    on = create_app(rt=make_runtime()).test_client()
    assert on.get("/metrics").status_code == 200  # and no API key is needed


def test_a_failing_source_is_reported_not_fatal(make_runtime) -> None:  # noqa: ANN001
    """Database unreachable: /metrics still answers, saying which source failed."""
    from app import create_app
    from models.db import make_engine

    rt = make_runtime()
    client = create_app(rt=rt).test_client()
    rt.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    samples = scrape(client)
    assert value(samples, "slipway_metrics_source_up", source="database") == 0
    assert value(samples, "slipway_metrics_source_up", source="queue") == 1
    assert value(samples, "slipway_queue_depth") == 0


def test_the_hook_never_breaks_a_github_call() -> None:
    """A Redis that is down makes the counter skip, not the GitHub call fail."""
    import time

    import httpx
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from app.metrics import GitHubCalls

    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    hook = GitHubCalls(down)
    response = httpx.Response(200, headers={"x-ratelimit-remaining": "10"})
    hook(response)  # fails inside, swallowed
    started = time.monotonic()
    hook(response)  # skipped while Redis is marked down: no new connection attempt
    assert time.monotonic() - started < 0.05
    local = GitHubCalls()
    local(response)
    local(httpx.Response(404))
    assert local.snapshot() == ({"200": 1.0, "404": 1.0}, {"core": 10.0})
