"""Fuzzing the worker: mangled payloads of every event Slipway handles, through the real job function.

Each example stores a validly signed delivery (production mode: PostgreSQL, Redis token cache, the fake
GitHub with the App installed) and runs `workers.jobs.process_delivery` on it, as an RQ worker would.
Property: the job never raises (an exception that escapes leaves the row `processing` until its lease
ends, with the cause nowhere but a log line), and the delivery ends `done`, `ignored` or `failed` with
the error recorded, or is re-scheduled (`queued`) with the error recorded.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import Delivery
from tests import factories as f
from tests.conftest import Deliveries
from tests.fuzz.test_receiver import Recorder

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SHA = f.sha("fuzz")
BASES: dict[tuple[str, str | None], Any] = {
    ("check_run", "completed"): lambda: f.check_run(SHA),
    ("check_suite", "completed"): lambda: f.event("completed", check_suite={"id": 1, "head_sha": SHA,
                                                                             "conclusion": "success"}),
    ("create", None): lambda: f.ref_event("feature/fuzz"),
    ("delete", None): lambda: f.ref_event("feature/fuzz"),
    ("deployment", "created"): lambda: f.deployment_event(f.deployment_obj(91)),
    ("deployment_protection_rule", "requested"): lambda: f.protection_rule("staging", SHA),
    ("deployment_status", "created"): lambda: f.deployment_status_event(f.deployment_obj(92), 93, "failure",
                                                                         "2026-01-01T10:00:00Z"),
    ("installation_repositories", "added"): lambda: f.installation_repositories("added", [(5, f.REPO)]),
    ("installation_repositories", "removed"): lambda: f.installation_repositories("removed", [(5, f.REPO)]),
    ("ping", None): f.ping,
    ("push", None): lambda: f.push(after=SHA),
    ("status", None): lambda: f.status(SHA, "ci/test", "success"),
}
for _action in ("created", "deleted", "suspend", "unsuspend", "new_permissions_accepted"):
    BASES[("installation", _action)] = lambda a=_action: f.installation(a)
for _action in ("opened", "closed", "synchronize", "reopened", "labeled", "unlabeled", "ready_for_review",
                "converted_to_draft"):
    BASES[("pull_request", _action)] = lambda a=_action: f.pull_request(a, label="preview")
for _action in ("published", "released", "prereleased"):
    BASES[("release", _action)] = lambda a=_action: f.release(a)
for _action in ("requested", "in_progress", "completed"):
    BASES[("workflow_run", _action)] = lambda a=_action: f.workflow_run(a, SHA)

CONFIG = """\
previews:
  required_checks: []
environments:
  staging:
    on: push
    required_checks: []
    rollback_on_failure: true
  production:
    on: release
    required_checks: []
branches:
  - pattern: "feature/*"
provisioner:
  kind: deployment
"""

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 5, max_value=2**64),
                    st.floats(allow_nan=False), st.text(max_size=30), st.text(max_size=500),
                    st.sampled_from(["", "\x00", "null", SHA, "0" * 40, "refs/heads/main", "main", "x" * 300,
                                     "2026-13-45T99:99:99Z", "octo-org/hello", "../hello", "💥"]))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) |
                      st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=6)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a payload."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mangled(draw: Any) -> tuple[str, dict[str, Any]]:
    """(event, payload): a handled event's payload with 1-4 values deleted or replaced by anything."""
    (name, action) = draw(st.sampled_from(sorted(BASES, key=str)))
    payload = BASES[(name, action)]()
    for _ in range(draw(st.integers(1, 4))):
        found = paths(payload)
        if not found:
            break
        path = draw(st.sampled_from(found))
        if path[:1] == ("action",) and draw(st.booleans()):
            continue  # mostly keep the action: otherwise the delivery is simply ignored
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return name, payload


@pytest.fixture
def worker_rt(make_runtime, fake_github, github_settings, monkeypatch):  # noqa: ANN001, ANN201
    """A production runtime on the fake GitHub whose config deploys pushes, PRs, releases and branches."""
    from pathlib import Path

    certs = sorted(Path("/etc/ssl/certs").glob("*.pem"))[:1]
    if certs:  # a one-certificate bundle: httpx clients are built per GitHub call (see tests/faults/conftest.py)
        monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    fake_github.set_file(f.REPO, ".github/slipway.yml", CONFIG)
    fake_github.set_branch(f.REPO, "feature/fuzz", SHA)
    return make_runtime("production", transport=Recorder(), **{**github_settings, "github_timeout": 1.0})


OUTCOMES: Counter[str] = Counter()


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=mangled())
def test_no_payload_makes_the_job_raise_or_end_unrecorded(worker_rt: Any, case: tuple[str, dict[str, Any]]) -> None:
    """Every mangled delivery ends terminal (or re-scheduled) with any error recorded; the job never raises."""
    from app import create_app
    from workers import jobs

    name, payload = case
    resp = Deliveries(create_app(rt=worker_rt).test_client()).post(name, payload, guid=str(uuid.uuid4()))
    assert resp.status_code in (200, 202), resp.get_json()
    guid = resp.get_json()["delivery"]
    if resp.status_code == 200:
        return  # a byte-identical payload drawn twice: refused as a replay, nothing to run
    result = jobs.process_delivery(guid)  # must not raise
    with worker_rt.engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.guid == guid)).one()
    OUTCOMES[f"{name}: {row.state}"] += 1
    event(f"{row.state}")
    assert row.state in ("done", "ignored", "failed", "queued"), (row.state, result)
    if result == "not-claimed":  # the mangled action is one Slipway does not act on: ignored on arrival
        assert row.state == "ignored" and row.note and row.attempts == 0, row
    else:
        assert result == row.state, (result, row.state)
    if row.state == "failed":
        assert row.error, "failed without the reason"
        if row.error.split(":")[0] in ("KeyError", "TypeError", "AttributeError", "ValueError", "IndexError"):
            event(f"crash {name}: {row.error.split(':')[0]}")
    if row.state == "queued":
        assert row.error and row.next_attempt_at is not None, "re-scheduled without the reason"
