"""deployment and deployment_status events: one record each, statuses ordered by GitHub, any arrival order."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import Deployment, DeploymentStatus, Environment
from slipway.transport import InlineTransport
from tests import factories
from tests.conftest import Deliveries, drain
from workers.history import StatusFact, deployment_view


def deployments(rt) -> list:
    """Every recorded deployment."""
    with rt.engine.connect() as conn:
        return list(conn.execute(select(Deployment).order_by(Deployment.id)))


def environment(rt, name: str = "staging"):  # noqa: ANN201
    """The recorded environment."""
    with rt.engine.connect() as conn:
        return conn.execute(select(Environment).where(Environment.name == name)).one()


def test_other_tools_deployment_and_statuses_are_recorded(rt, deliveries) -> None:
    """A deployment made by GitHub Actions and its statuses: one deployment, its history, the environment's state."""
    dep = factories.deployment_obj(501, app_slug="github-actions")
    deliveries.post("deployment", factories.deployment_event(dep))
    deliveries.post("deployment_status", factories.deployment_status_event(dep, 1, "in_progress", "2026-01-01T10:01:00Z"))
    deliveries.post("deployment_status", factories.deployment_status_event(
        dep, 2, "success", "2026-01-01T10:05:00Z", environment_url="https://staging.example.com",
        log_url="https://github.com/o/r/actions/runs/1"))
    drain(rt)
    (row,) = deployments(rt)
    assert (row.github_deployment_id, row.source, row.status, row.environment_url) == (
        501, "github_actions", "success", "https://staging.example.com")
    assert row.deployed_at.isoformat() == "2026-01-01T10:05:00+00:00"
    env = environment(rt)
    assert (env.deployment_id, env.status, env.sha, env.url, env.state) == (
        row.id, "success", "b" * 40, "https://staging.example.com", "active")


def test_status_before_its_deployment_event_records_one_deployment(rt, deliveries) -> None:
    """A status that arrives first creates the deployment from its embedded object; the late event adds nothing."""
    dep = factories.deployment_obj(502)
    deliveries.post("deployment_status", factories.deployment_status_event(dep, 3, "success", "2026-01-01T10:05:00Z"))
    drain(rt)
    deliveries.post("deployment", factories.deployment_event(dep))
    drain(rt)
    assert [(d.github_deployment_id, d.status) for d in deployments(rt)] == [(502, "success")]


def test_echo_of_slipways_own_deployment_is_matched_by_its_key(rt, deliveries) -> None:
    """The deployment event for a deployment Slipway made joins the existing row instead of adding one."""
    from models.base import utcnow

    with rt.engine.begin() as conn:
        conn.execute(Deployment.__table__.insert().values(
            key="slipway-key-1", repository=factories.REPO, environment="staging", status="queued", source="slipway",
            created_at=utcnow(), updated_at=utcnow()))
    dep = factories.deployment_obj(503, payload={"slipway": {"key": "slipway-key-1"}}, app_slug="slipway")
    deliveries.post("deployment", factories.deployment_event(dep))
    deliveries.post("deployment_status", factories.deployment_status_event(dep, 4, "queued", "2026-01-01T10:00:01Z"))
    drain(rt)
    (row,) = deployments(rt)
    assert (row.key, row.github_deployment_id, row.source) == ("slipway-key-1", 503, "slipway")


def test_redelivered_status_is_recorded_once(rt, deliveries) -> None:
    """The same status in two deliveries (another GUID, e.g. a second hook) is one row."""
    dep = factories.deployment_obj(504)
    payload = factories.deployment_status_event(dep, 5, "success", "2026-01-01T10:05:00Z")
    deliveries.post("deployment_status", payload)
    payload["sender"] = {"login": "other", "id": 3}  # different bytes, same status
    deliveries.post("deployment_status", payload)
    drain(rt)
    with rt.engine.connect() as conn:
        assert conn.execute(select(DeploymentStatus.github_status_id)).scalars().all() == [5]


def test_newer_success_becomes_current_and_preview_teardown_destroys(rt, deliveries) -> None:
    """The environment points at the latest success; all inactive means destroyed."""
    a, b = factories.deployment_obj(601, sha="1" * 40, environment="pr-3", transient=True), \
        factories.deployment_obj(602, sha="2" * 40, environment="pr-3", transient=True,
                                 created_at="2026-01-01T11:00:00Z")
    for payload in (factories.deployment_status_event(a, 11, "success", "2026-01-01T10:05:00Z"),
                    factories.deployment_status_event(b, 12, "success", "2026-01-01T11:05:00Z"),
                    factories.deployment_status_event(a, 13, "inactive", "2026-01-01T11:05:01Z")):
        deliveries.post("deployment_status", payload)
    drain(rt)
    env = environment(rt, "pr-3")
    assert (env.sha, env.kind, env.state) == ("2" * 40, "preview", "active")
    deliveries.post("deployment_status", factories.deployment_status_event(b, 14, "inactive", "2026-01-01T12:00:00Z"))
    drain(rt)
    assert environment(rt, "pr-3").state == "destroyed"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_deployment_view_ignores_arrival_order(order: tuple[int, ...]) -> None:
    """The pure derivation: the same statuses in any order give the same view."""
    from datetime import datetime, timezone

    t = lambda m: datetime(2026, 1, 1, 10, m, tzinfo=timezone.utc)  # noqa: E731
    facts = [StatusFact("queued", t(0), 1, 1), StatusFact("success", t(5), 3, 2, "https://x"),
             StatusFact("in_progress", t(5), 2, 3)]  # same second: GitHub's id breaks the tie
    view = deployment_view([facts[i] for i in order])
    assert (view.status, view.environment_url, view.deployed_at) == ("success", "https://x", t(5))


def _final_state(make_runtime, template, events: list[tuple[str, dict]]) -> tuple:  # noqa: ANN001
    """Feed events into a fresh embedded runtime (a new SQLite copy) and read the outcome."""
    import shutil
    import tempfile
    import uuid

    from app import create_app

    path = f"{tempfile.gettempdir()}/slipway-order-{uuid.uuid4().hex}.db"
    shutil.copy(template, path)
    rt = make_runtime("embedded", transport=InlineTransport(), database_url=f"sqlite:///{path}")
    poster = Deliveries(create_app(rt=rt).test_client())
    for name, payload in events:
        assert poster.post(name, payload).status_code == 202
    with rt.engine.connect() as conn:
        deps = sorted((d.github_deployment_id, d.status, d.environment_url, d.deployed_at)
                      for d in conn.execute(select(Deployment)))
        envs = sorted((e.name, e.sha, e.status, e.state, e.url) for e in conn.execute(select(Environment)))
    rt.close()
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    return deps, envs


STREAM = [
    ("deployment", factories.deployment_event(factories.deployment_obj(701, sha="1" * 40))),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(701, sha="1" * 40), 21, "queued", "2026-01-01T10:00:00Z")),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(701, sha="1" * 40), 22, "in_progress", "2026-01-01T10:01:00Z")),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(701, sha="1" * 40), 23, "success", "2026-01-01T10:02:00Z", environment_url="https://one")),
    ("deployment", factories.deployment_event(factories.deployment_obj(702, sha="2" * 40, created_at="2026-01-01T11:00:00Z"))),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(702, sha="2" * 40), 24, "in_progress", "2026-01-01T11:01:00Z")),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(702, sha="2" * 40), 25, "failure", "2026-01-01T11:02:00Z")),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(703, sha="3" * 40, created_at="2026-01-01T12:00:00Z"), 26, "success", "2026-01-01T12:02:00Z", environment_url="https://three")),
    ("deployment_status", factories.deployment_status_event(factories.deployment_obj(701, sha="1" * 40), 27, "inactive", "2026-01-01T12:02:00Z")),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_any_arrival_order_reaches_the_same_final_state(make_runtime, sqlite_template, rnd: random.Random) -> None:
    """Property: a deployment stream fed in a random order ends exactly as the in-order stream does."""
    expected = _final_state(make_runtime, sqlite_template, STREAM)
    shuffled = STREAM[:]
    rnd.shuffle(shuffled)
    assert _final_state(make_runtime, sqlite_template, shuffled) == expected
    assert expected[1] == [("staging", "3" * 40, "success", "active", "https://three")]


_STATES = ("pending", "queued", "in_progress", "success", "failure", "inactive")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(_STATES), st.integers(0, 5),
                          st.one_of(st.none(), st.integers(1, 3))), min_size=1, max_size=12))
@example([(0, "failure", 0, None), (1, "inactive", 1, None)])  # 'destroyed' must see the failed one
@example([(0, "success", 3, 2), (1, "success", 3, 1), (2, "failure", 0, None)])  # ties on status_at
def test_environment_from_its_deciding_deployments_equals_the_whole_history(make_runtime, mode, deployments) -> None:
    """refresh_environment reads three deployments, not all: it must give environment_view's answer on all."""
    from datetime import datetime, timedelta, timezone

    from workers.history import DeploymentFact, environment_view
    from workers.record import refresh_environment

    rt = make_runtime(mode)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    facts = []
    with rt.engine.begin() as conn:
        conn.execute(Environment.__table__.delete())  # hypothesis runs every example on this one database
        conn.execute(Deployment.__table__.delete())
        for created, state, status_at, gh in deployments:
            # ties in time and GitHub id on purpose: the order must still match environment_view's
            row = {"repository": factories.REPO, "environment": "staging", "status": state, "source": "webhook",
                   "created_at": t0 + timedelta(minutes=created), "updated_at": t0,
                   "status_at": t0 + timedelta(minutes=status_at), "github_deployment_id": gh and gh * 1000 + len(facts),
                   "sha": f"{len(facts):040x}"}
            dep_id = conn.execute(Deployment.__table__.insert().values(**row)).inserted_primary_key[0]
            facts.append(DeploymentFact(dep_id, row["created_at"], state, row["status_at"], row["sha"], None, None,
                                        row["github_deployment_id"]))
        refresh_environment(conn, factories.REPO, "staging")
        env = conn.execute(select(Environment)).one()
    want = environment_view(facts)
    assert (env.state, env.deployment_id, env.status, env.sha) == (want.state, want.deployment_id, want.status, want.sha)
