"""Fuzzing the generic deploy endpoints (canonical, Vibe, Pulse, OpsLevel) through the Flask test client.

Arbitrary JSON documents, documents with each shape's own field names holding arbitrary values, valid
documents with one field replaced, and arbitrary bytes under arbitrary content types; with a valid key,
a wrong key and none. Properties: never a 5xx; every answer (2xx and 4xx) is a JSON document; a 4xx
refuses without storing anything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import Deployment
from tests.fuzz.test_receiver import Recorder

pytestmark = [pytest.mark.postgres]

SHA = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"
PATHS = ["/api/v1/deployments", "/api/v1/deployments/webhook", "/api/deployments", "/integrations/deploy/{key}"]
VALID = {
    "/api/v1/deployments": {"environment": "production", "repository": "octo-org/hello", "commit_sha": SHA,
                            "status": "success", "version": "v1.2.3", "deployed_at": "2026-01-01T10:00:00Z"},
    "/api/v1/deployments/webhook": {"environment": "production", "repository": "octo-org/hello", "status": "success",
                                    "commit_sha": SHA, "source": "github_actions"},
    "/api/deployments": {"environment": "production", "version": "v1", "commit": SHA,
                         "build_date": "2025-01-15T10:30:00Z"},
    "/integrations/deploy/{key}": {"service": "cart", "description": "Deploy #1", "deployed_at": "2019-02-01 13:28:33",
                                   "environment": "production", "commit": {"sha": SHA, "message": "fix"}},
}
# Every field name any shape reads (app/deploy_formats.py), so values reach each shape's validators.
FIELDS = ["environment", "repository", "service", "sha", "commit_sha", "commit", "version", "status", "source",
          "deployed_at", "deploy_url", "description", "deployer", "dedup_id", "build_id", "build_date", "branch",
          "extra_data", "deploy_number", "name", "id", "email", "message", "ref", "repo_full_name", "environment_id",
          "author_name", "author_email", "committer_name", "committer_email", "authoring_date", "date", "created_at",
          "title", "type", "url"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=60), st.text(max_size=3000),
    st.sampled_from(["", " ", "\x00", "\ud800", "production", SHA, SHA[:7], "2026-01-01T10:00:00Z",
                     "2026-02-30T25:61:00+99:00", "1e309", "https://example.com/x", "javascript:alert(1)",
                     "success", "failed", "in_progress", "octo-org/hello", "../../etc/passwd", "💥" * 100]))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) |
                      st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), kids, max_size=5),
                      max_leaves=15)


@st.composite
def documents(draw: Any, path: str) -> tuple[bytes, str]:
    """(body, content type) for one endpoint."""
    kind = draw(st.sampled_from(["shaped", "mutated", "mutated", "any-json", "bytes", "deep", "wide"]))
    if kind == "shaped":
        doc: Any = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=10))
    elif kind == "mutated":
        doc = dict(VALID[path])
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(FIELDS + list(doc)))
            if draw(st.booleans()) and field in doc:
                del doc[field]
            else:
                doc[field] = draw(values)
    elif kind == "any-json":
        doc = draw(values)
    elif kind == "deep":
        depth = draw(st.integers(30, 20_000))
        inner = '{"a": ' * depth + "1" + "}" * depth
        return (json.dumps(VALID[path])[:-1] + f', "extra_data": {inner}}}').encode(), "application/json"
    elif kind == "wide":
        doc = dict(VALID[path], extra_data={str(i): "x" * 50 for i in range(draw(st.integers(100, 600)))})
    else:
        return draw(st.binary(max_size=400)), draw(st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]))
    ctype = draw(st.sampled_from(["application/json", "application/json", "application/json; charset=utf-8",
                                  "application/vnd.api+json", "text/plain"]))
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"), ctype


@pytest.fixture
def deploy_api(make_runtime) -> tuple[Any, Any, str]:  # noqa: ANN001
    """(runtime, client, deploy key) on PostgreSQL; the mirror jobs are recorded, not run."""
    from app import create_app
    from app.apikeys import create_key
    from models import Installation, InstallationRepository
    from models.base import utcnow

    rt = make_runtime("production", transport=Recorder())
    with rt.engine.begin() as conn:  # the App is installed on the repository, so mirror jobs get queued
        conn.execute(Installation.__table__.insert().values(
            id=4242, account="octo-org", created_at=utcnow(), updated_at=utcnow()))
        conn.execute(InstallationRepository.__table__.insert().values(
            id=555, installation_id=4242, full_name="octo-org/hello", updated_at=utcnow()))
    key = create_key(rt.engine, "fuzz", "deploy", rate="1000000/minute")[1]
    return rt, create_app(rt=rt).test_client(), key


def stored(rt: Any) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Deployment)).scalar_one()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_deploy_endpoints_answer_json_and_never_5xx(deploy_api: tuple[Any, Any, str], data: Any) -> None:
    """Any body to any of the four endpoints, with a valid key, a wrong one or none."""
    rt, client, key = deploy_api
    path = data.draw(st.sampled_from(PATHS), label="path")
    body, ctype = data.draw(documents(path), label="body")
    auth = data.draw(st.sampled_from(["valid", "valid", "valid", "wrong", "none"]), label="auth")
    presented = {"valid": key, "wrong": "slw_" + "x" * 43, "none": ""}[auth]
    headers = {"Content-Type": ctype} if ctype else {}
    if "{key}" in path:
        url = path.format(key=presented or "none")
    else:
        url = path
        if presented and data.draw(st.booleans(), label="bearer"):
            headers["Authorization"] = f"Bearer {presented}"
        elif presented:
            headers["X-Workspace-Key"] = presented
    before = stored(rt)
    resp = client.post(url, data=body, headers=headers)
    after = stored(rt)
    assert resp.status_code < 500, (resp.status_code, resp.get_data()[:400])
    event(f"{path} {resp.status_code}")
    assert resp.is_json, (resp.status_code, resp.content_type, resp.get_data()[:200])
    answer = resp.get_json()
    assert isinstance(answer, dict | list), answer
    if 400 <= resp.status_code < 500:
        assert answer, "an empty error body"
        assert after == before, "a refused report stored a deployment"
    if auth != "valid":
        assert resp.status_code == 401 and after == before
