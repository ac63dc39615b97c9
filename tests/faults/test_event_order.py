"""Scenario 15 (reliability.md section 6), process level: random arrival orders of a deployment and
deployment-status stream through gunicorn and real RQ workers reach the in-order final state.

tests/test_deployment_record.py checks the same property in one process (40 examples); here the
events also race each other in two worker processes, which the unit version cannot do.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import Deployment, Environment
from tests import factories as f
from tests.faults.conftest import TERMINAL, Cluster, report

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.postgres]

EXAMPLES = 20
_runs = itertools.count(1)


def event_stream(run: int) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(environment, events) of one run: 3 deployments, 9 events, ids unique to the run."""
    env, base = f"order-{run}", 10_000_000 + run * 100

    def dep(n: int, sha: str, created: str) -> dict[str, Any]:
        return f.deployment_obj(base + n, sha=sha * 40, environment=env, created_at=created)

    one, two, three = dep(1, "1", "2026-01-01T10:00:00Z"), dep(2, "2", "2026-01-01T11:00:00Z"), \
        dep(3, "3", "2026-01-01T12:00:00Z")
    s = lambda d, i, state, at, **kw: ("deployment_status", f.deployment_status_event(d, base + 50 + i, state, at, **kw))  # noqa: E731
    return env, [
        ("deployment", f.deployment_event(one)),
        s(one, 1, "queued", "2026-01-01T10:00:00Z"),
        s(one, 2, "in_progress", "2026-01-01T10:01:00Z"),
        s(one, 3, "success", "2026-01-01T10:02:00Z", environment_url="https://one.example.com"),
        ("deployment", f.deployment_event(two)),
        s(two, 4, "in_progress", "2026-01-01T11:01:00Z"),
        s(two, 5, "failure", "2026-01-01T11:02:00Z"),
        s(three, 6, "success", "2026-01-01T12:02:00Z", environment_url="https://three.example.com"),
        s(one, 7, "inactive", "2026-01-01T12:02:00Z"),
    ]


def final_state(cluster: Cluster, env: str, run: int) -> tuple:
    """The run's deployments and environment, with the run's id offset taken out."""
    base = 10_000_000 + run * 100
    with cluster.engine.connect() as conn:
        deps = sorted((d.github_deployment_id - base, d.sha[:1], d.status, d.environment_url,
                       d.deployed_at.isoformat() if d.deployed_at else None)
                      for d in conn.execute(select(Deployment).where(Deployment.environment == env)))
        envs = [(e.sha[:1] if e.sha else None, e.status, e.state, e.url)
                for e in conn.execute(select(Environment).where(Environment.name == env))]
    return deps, envs


def run_stream(cluster: Cluster, order: list[int], *, one_at_a_time: bool = False) -> tuple[tuple, list]:
    """POST the stream in `order`; return (final state, delivery rows)."""
    run = next(_runs)
    env, events = event_stream(run)
    guids = []
    for i in order:
        name, payload = events[i]
        posted = cluster.post(name, payload)
        assert posted.status == 202, posted.body
        guids.append(posted.guid)
        if one_at_a_time:
            cluster.wait_terminal([posted.guid], timeout=15)
    rows = cluster.wait_terminal(guids, timeout=30)
    return final_state(cluster, env, run), list(rows.values())


@pytest.mark.timeout(150)
def test_random_arrival_orders_reach_the_in_order_state(make_cluster) -> None:  # noqa: ANN001
    """Scaled down from 200 orderings to 20 (hypothesis, derandomized) plus the reverse order; each
    ordering's 9 events are posted back to back and race in 2 worker processes.

    Pass: every ordering ends exactly as the in-order stream processed one event at a time does
    (deployments, their statuses and URLs, the environment's current deployment); every delivery `done`.
    """
    cluster = make_cluster().start(workers=2)
    expected, rows = run_stream(cluster, list(range(9)), one_at_a_time=True)
    assert all(r.state == "done" for r in rows), [(r.state, r.error) for r in rows]
    assert expected[1] == [("3", "success", "active", "https://three.example.com")], expected
    outcomes: list[bool] = []
    bad: list[Any] = []
    seen: list[Any] = []  # every delivery row of the random orderings

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.permutations(list(range(9))))
    def ordering(order: list[int]) -> None:
        state, rows = run_stream(cluster, order)
        seen.extend(rows)
        ok = state == expected and all(r.state == "done" for r in rows)
        outcomes.append(ok)
        if not ok:
            bad.append((order, state, [(r.state, r.error) for r in rows if r.state != "done"]))
        assert ok

    started = time.monotonic()
    try:
        ordering()
        reverse, rows = run_stream(cluster, list(range(8, -1, -1)))
        seen.extend(rows)
        outcomes.append(reverse == expected and all(r.state == "done" for r in rows))
    finally:
        terminal = sum(r.state in TERMINAL for r in seen)
        report("15-event-orders", sent=9 * len(outcomes), accepted=len(seen), terminal=terminal, duplicated=0,
               lost=len(seen) - terminal, orderings=len(outcomes), same_final_state=sum(outcomes),
               seconds=f"{time.monotonic() - started:.1f}")
    assert all(outcomes), bad[:1]
    assert cluster.leaks() == []
