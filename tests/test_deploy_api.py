"""The generic deploy webhook: four endpoints, keys, limits, dedup, move-along, matching and GitHub mirroring."""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app import create_app
from app.apikeys import create_key, revoke_key
from app.deploy_api import decode_json, is_json_type
from models import Delivery, Deployment, DeploymentStatus, Installation, InstallationRepository
from models.base import utcnow
from slipway.settings import API_BODY_LIMIT
from tests import factories
from tests.conftest import drain
from workers.handlers.mirror import github_ref, github_state
from workers.reports import Target, deployment_key, mirror_skip_reason, status_time

SHA = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"
SHA2 = "0123456789abcdef0123456789abcdef01234567"
FAST = "100000/minute"  # keys in tests that are not about rate limits

CANONICAL = "/api/v1/deployments"
VIBE = "/api/v1/deployments/webhook"
PULSE = "/api/deployments"
OPSLEVEL = "/integrations/deploy/"  # + key

# Each shape's smallest valid body.
MINIMAL = {
    CANONICAL: {"environment": "production", "repository": "octo-org/hello"},
    VIBE: {"environment": "production", "repository": "octo-org/hello"},
    PULSE: {"environment": "production", "version": "v1", "commit": SHA, "build_date": "2025-01-15T10:30:00Z"},
    OPSLEVEL: {"service": "cart", "description": "Deploy #1", "deployed_at": "2019-02-01 13:28:33"},
}
SHAPES = list(MINIMAL)
SHAPE_IDS = ["canonical", "vibe", "pulse", "opslevel"]
# Each shape's one and only 401 body.
UNAUTHORIZED = {
    CANONICAL: {"error": {"code": "unauthorized", "message": "missing or invalid API key"}},
    VIBE: {"detail": "Invalid API key"},
    PULSE: {"error": "Unauthorized"},
    OPSLEVEL: {"errors": [{"status": 401, "title": "Unauthorized", "detail": "missing or invalid API key"}]},
}


# --------------------------------------------------------------------------- helpers


def send(client: Any, path: str, body: Any = None, *, key: str | None = None, header: str = "bearer",
         raw: bytes | None = None, content_type: str = "application/json", extra: dict[str, str] | None = None) -> Any:
    """POST a deploy report; the key travels in a header, or in the URL for OpsLevel."""
    headers = dict(extra or {})
    url = path
    if path == OPSLEVEL:
        url = OPSLEVEL + (key or "none")
    elif key is not None:
        headers.update({"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-Workspace-Key": key})
    data = raw if raw is not None else json.dumps(body).encode()
    if content_type:
        headers["Content-Type"] = content_type
    return client.post(url, data=data, headers=headers)


def deployments(rt: Any) -> list[Any]:
    """Every stored deployment, oldest first."""
    with rt.engine.connect() as conn:
        return list(conn.execute(select(Deployment).order_by(Deployment.id)))


def statuses(rt: Any, deployment_id: int | None = None) -> list[Any]:
    """Stored statuses (of one deployment), in history order."""
    query = select(DeploymentStatus).order_by(DeploymentStatus.created_at, DeploymentStatus.id)
    if deployment_id is not None:
        query = query.where(DeploymentStatus.deployment_id == deployment_id)
    with rt.engine.connect() as conn:
        return list(conn.execute(query))


def mirror_jobs(rt: Any) -> list[Any]:
    """Mirror jobs stored in the inbox."""
    with rt.engine.connect() as conn:
        return list(conn.execute(select(Delivery).where(Delivery.event == "slipway.mirror")))


def install(rt: Any, repo: str = factories.REPO, installation_id: int = factories.INSTALLATION_ID,
            repo_id: int = 555, **installation: Any) -> None:
    """Record that the App is installed on a repository."""
    with rt.engine.begin() as conn:
        conn.execute(Installation.__table__.insert().values(
            id=installation_id, account=repo.split("/")[0], created_at=utcnow(), updated_at=utcnow(), **installation))
        conn.execute(InstallationRepository.__table__.insert().values(
            id=repo_id, installation_id=installation_id, full_name=repo, updated_at=utcnow()))


@pytest.fixture
def key(rt: Any) -> str:
    """A deploy key with a rate no test reaches."""
    return create_key(rt.engine, "ci", "deploy", rate=FAST)[1]


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_every_bad_key_gets_the_same_401(rt: Any, client: Any, path: str) -> None:
    """Missing, unknown, revoked, mangled or absurdly long keys: one body per shape, nothing stored."""
    row, revoked = create_key(rt.engine, "old", "deploy")
    revoke_key(rt.engine, row.id)
    attempts = [None, "slw_unknown", revoked, "x" * 5000, revoked + " "]
    bodies = []
    for bad in attempts:
        resp = send(client, path, MINIMAL[path], key=bad)
        assert resp.status_code == 401
        bodies.append(resp.get_json())
    if path != OPSLEVEL:
        for header in ({"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"X-Workspace-Key": ""}):
            resp = send(client, path, MINIMAL[path], extra=header)
            assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            bodies.append(resp.get_json())
    assert all(b == UNAUTHORIZED[path] for b in bodies)
    assert deployments(rt) == []


@pytest.mark.parametrize("header", ["bearer", "workspace"])
def test_both_key_headers_are_accepted(rt: Any, client: Any, key: str, header: str) -> None:
    """Authorization: Bearer and X-Workspace-Key both work."""
    resp = send(client, CANONICAL, MINIMAL[CANONICAL], key=key, header=header)
    assert resp.status_code == 201, resp.get_json()


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_read_key_is_forbidden_and_admin_key_allowed(rt: Any, client: Any, path: str) -> None:
    """Only deploy and admin scopes may report."""
    read = create_key(rt.engine, "dash", "read")[1]
    admin = create_key(rt.engine, "ops", "admin")[1]
    refused = send(client, path, MINIMAL[path], key=read)
    assert refused.status_code == 403
    assert "does not allow deploy" in json.dumps(refused.get_json())
    assert deployments(rt) == []
    assert send(client, path, MINIMAL[path], key=admin).status_code in (201, 202)


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_key_limited_to_environments(rt: Any, client: Any, path: str) -> None:
    """A key for staging may not report production (403, nothing stored), and may report staging."""
    staging = create_key(rt.engine, "stg", "deploy", ["staging"], rate=FAST)[1]
    resp = send(client, path, MINIMAL[path], key=staging)
    assert resp.status_code == 403
    assert "may report: staging" in json.dumps(resp.get_json())
    assert deployments(rt) == []
    ok = send(client, path, {**MINIMAL[path], "environment": "staging"}, key=staging)
    assert ok.status_code in (201, 202)
    assert [d.environment for d in deployments(rt)] == ["staging"]


# --------------------------------------------------------------------------- content type and size


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("content_type", ["", "text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_415_when_not_json(rt: Any, client: Any, key: str, path: str, content_type: str) -> None:
    """Only JSON is accepted; the refusal is in the shape's words."""
    resp = send(client, path, MINIMAL[path], key=key, content_type=content_type)
    assert resp.status_code == 415
    assert "application/json" in json.dumps(resp.get_json())
    assert deployments(rt) == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.slipway+json",
                                          "Application/JSON"])
def test_json_variants_are_accepted(rt: Any, client: Any, key: str, content_type: str) -> None:
    """Parameters, +json types and any case are JSON too."""
    assert send(client, CANONICAL, MINIMAL[CANONICAL], key=key, content_type=content_type).status_code == 201


def test_json_types() -> None:
    """is_json_type: the rule on its own."""
    assert is_json_type("application/json") and is_json_type("application/problem+json")
    assert not is_json_type("text/json+xml") and not is_json_type("application/jsonp") and not is_json_type("")


def padded(body: dict[str, Any], size: int) -> bytes:
    """The body as JSON padded with whitespace to exactly `size` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_413_over_one_mib(rt: Any, client: Any, key: str, path: str) -> None:
    """Exactly 1 MiB is accepted; one byte more is 413 in the shape's words, nothing stored."""
    over = send(client, path, key=key, raw=padded(MINIMAL[path], API_BODY_LIMIT + 1))
    assert over.status_code == 413
    assert "larger than 1 MiB" in json.dumps(over.get_json())
    assert deployments(rt) == []
    exact = send(client, path, key=key, raw=padded(MINIMAL[path], API_BODY_LIMIT))
    assert exact.status_code in (201, 202)


@pytest.mark.parametrize(("size", "status"), [(API_BODY_LIMIT - 1, 201), (API_BODY_LIMIT + 1, 413),
                                            (3 * API_BODY_LIMIT, 413)])
def test_chunked_body_over_one_mib_is_413_not_cut_short(rt: Any, client: Any, key: str, size: int,
                                                        status: int) -> None:
    """A body without Content-Length (chunked through gunicorn) is measured as it is read, never truncated."""
    resp = client.post(CANONICAL, input_stream=io.BytesIO(padded(MINIMAL[CANONICAL], size)),
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == status, resp.get_json()
    assert len(deployments(rt)) == (1 if status == 201 else 0)


# --------------------------------------------------------------------------- validation and hostile input


def test_422_names_every_invalid_field(rt: Any, client: Any, key: str) -> None:
    """All invalid fields at once, each with its reason; nothing stored."""
    body = {"environment": "", "repository": "not a repo", "commit_sha": "xyz", "status": "done",
            "deployed_at": "yesterday", "deploy_url": "ftp://x", "extra_data": [1], "deployer": "me"}
    resp = send(client, CANONICAL, body, key=key)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"environment", "repository", "commit_sha", "status", "deployed_at",
                                    "deploy_url", "extra_data", "deployer"}
    assert error["fields"]["commit_sha"] == "must be 7 to 40 hex characters"
    assert deployments(rt) == []


DEEP = b'{"environment": "production", "repository": "o/r", "extra_data": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001
HOSTILE = [
    # (name, raw body, status, words the answer must contain)
    ("not an object", b"[1, 2]", 422, "must be a JSON object"),
    ("a scalar", b'"production"', 422, "must be a JSON object"),
    ("empty body", b"", 400, "not valid JSON"),
    ("truncated", b'{"environment": "production"', 400, "not valid JSON"),
    ("bad UTF-8", b'{"environment": "prod\xff\xfe", "repository": "o/r"}', 400, "not valid UTF-8"),
    ("latin-1 text", '{"environment": "café", "repository": "o/r"}'.encode("latin-1"), 400, "not valid UTF-8"),
    ("deep nesting", DEEP, 400, "too deeply"),
    ("NaN", b'{"environment": "p", "repository": "o/r", "extra_data": {"x": NaN}}', 400, "NaN"),
    ("huge integer", b'{"environment": "p", "repository": "o/r", "extra_data": {"x": ' + b"9" * 5000 + b"}}", 400,
     "too many digits"),
    ("wrong types", json.dumps({"environment": 5, "repository": ["o/r"], "status": True, "commit_sha": 12345678,
                                "deployer": [], "build_id": {"a": 1}}).encode(), 422, "must be a string"),
    ("huge strings", json.dumps({"environment": "p" * 200_000, "repository": "o/" + "r" * 200_000,
                                 "description": "d" * 200_000}).encode(), 422, "at most"),
    ("bad dates", json.dumps({"environment": "p", "repository": "o/r", "deployed_at": "2025-02-30T10:00:00Z",
                              "build_date": "9999-99-99"}).encode(), 422, "ISO 8601"),
    ("year zero", json.dumps({"environment": "p", "repository": "o/r", "deployed_at": "0000-01-01T00:00:00Z"})
     .encode(), 422, "ISO 8601"),
    ("lone surrogate", b'{"environment": "p\\ud800", "repository": "o/r"}', 422, "surrogates"),
    ("NUL in text", json.dumps({"environment": "p", "repository": "o/r", "description": "a\x00b"}).encode(), 422,
     "control characters"),
    ("NUL in extra_data", json.dumps({"environment": "p", "repository": "o/r", "extra_data": {"k": "\x00"}})
     .encode(), 422, "NUL"),
    ("extra_data too big", json.dumps({"environment": "p", "repository": "o/r", "extra_data": {"k": "x" * 20000}})
     .encode(), 422, "16 KiB"),
    ("javascript URL", json.dumps({"environment": "p", "repository": "o/r", "deploy_url": "javascript:alert(1)"})
     .encode(), 422, "http or https"),
    ("credentials in URL", json.dumps({"environment": "p", "repository": "o/r",
                                       "deploy_url": "https://u:p@ci.example.com/1"}).encode(), 422, "password"),
    ("dedup_id too long", json.dumps({"environment": "p", "repository": "o/r", "dedup_id": "d" * 101}).encode(), 422,
     "at most 100"),
]


@pytest.mark.parametrize(("name", "raw", "status", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_a_precise_4xx_and_stores_nothing(rt: Any, client: Any, key: str, name: str, raw: bytes,
                                                           status: int, words: str) -> None:
    """Whatever a client sends, the answer is a 4xx that says what is wrong, and nothing is stored."""
    resp = send(client, CANONICAL, key=key, raw=raw)
    assert resp.status_code == status, resp.get_json()
    assert words in json.dumps(resp.get_json(), ensure_ascii=False)
    assert deployments(rt) == [] and statuses(rt) == []


@pytest.mark.parametrize("path", [VIBE, PULSE, OPSLEVEL], ids=SHAPE_IDS[1:])
@pytest.mark.parametrize(("name", "raw"), [(h[0], h[1]) for h in HOSTILE[:9]], ids=[h[0] for h in HOSTILE[:9]])
def test_hostile_input_on_compatible_shapes(rt: Any, client: Any, key: str, path: str, name: str, raw: bytes) -> None:
    """Compatible endpoints refuse undecodable bodies with a 4xx in their own shape."""
    resp = send(client, path, key=key, raw=raw)
    assert 400 <= resp.status_code < 500
    body = resp.get_json()
    shape_key = {VIBE: "detail", PULSE: "message", OPSLEVEL: "errors"}[path]
    assert shape_key in body
    assert deployments(rt) == []


@pytest.mark.parametrize("mode", ["embedded"])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(
    st.sampled_from(["environment", "repository", "service", "commit_sha", "commit", "status", "deployed_at",
                     "build_id", "dedup_id", "deployer", "deploy_url", "extra_data", "version", "branch"]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
                 lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                 max_leaves=8)))
def test_fuzzed_bodies_never_cause_a_server_error(rt: Any, client: Any, key: str, body: dict[str, Any]) -> None:
    """Random field values: 201, 200 or a 4xx, never a 5xx."""
    resp = send(client, CANONICAL, body, key=key)
    assert resp.status_code < 500, resp.get_json()


def test_decode_json_tolerates_a_bom_and_refuses_constants() -> None:
    """A UTF-8 BOM is skipped (PowerShell writes one); Infinity is refused."""
    assert decode_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    with pytest.raises(Exception, match="NaN or Infinity"):
        decode_json(b'{"a": -Infinity}')


def test_a_failure_midway_leaves_nothing_half_stored(rt: Any, client: Any, key: str, monkeypatch: Any) -> None:
    """The deployment row and its status are one transaction: a crash after the insert rolls both back."""
    import workers.reports

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(workers.reports, "record_status", crash)
    resp = send(client, CANONICAL, MINIMAL[CANONICAL], key=key)
    assert resp.status_code == 500
    assert deployments(rt) == [] and statuses(rt) == []


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_database_outage_is_503_in_the_shape(rt: Any, client: Any, key: str, path: str, monkeypatch: Any) -> None:
    """An unreachable database is the server's problem: 503 with Retry-After, never a 500."""
    from sqlalchemy.exc import OperationalError

    import app.deploy_api

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("connection refused"))

    monkeypatch.setattr(app.deploy_api, "find_key", down)
    resp = send(client, path, MINIMAL[path], key=key)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert "database is unavailable" in json.dumps(resp.get_json())


# --------------------------------------------------------------------------- answers of each shape


def test_canonical_answer_and_record(rt: Any, client: Any, key: str) -> None:
    """201 with the stored deployment; every reported field lands in the record."""
    body = {"environment": "staging", "repository": "octo-org/hello", "version": "v1.2.3", "commit_sha": SHA.upper(),
            "branch": "main", "status": "failed", "source": "jenkins", "deployed_at": "2025-01-15T10:30:00+02:00",
            "build_id": "77", "deployer": {"name": "Ann", "email": "ann@example.com"}, "description": "nightly",
            "deploy_url": "https://ci.example.com/job/77", "extra_data": {"job": "deploy"}}
    resp = send(client, CANONICAL, body, key=key)
    assert resp.status_code == 201
    got = resp.get_json()
    assert {k: got[k] for k in ("repository", "environment", "version", "sha", "ref", "status", "source",
                                "build_id", "deploy_url", "description", "outcome", "duplicate")} == {
        "repository": "octo-org/hello", "environment": "staging", "version": "v1.2.3", "sha": SHA, "ref": "main",
        "status": "failure", "source": "jenkins", "build_id": "77", "deploy_url": "https://ci.example.com/job/77",
        "description": "nightly", "outcome": "created", "duplicate": False}
    assert got["deployer"] == {"name": "Ann", "email": "ann@example.com", "id": None}
    assert got["deployed_at"] is None  # not deployed: it failed
    assert got["status_at"] == "2025-01-15T08:30:00Z"
    (row,) = deployments(rt)
    assert row.id == got["id"] and row.extra["extra_data"] == {"job": "deploy"} and row.log_url == body["deploy_url"]
    assert row.extra["reported_by"]["key_name"] == "ci"
    (status,) = statuses(rt)
    assert (status.state, status.source, status.log_url) == ("failure", "jenkins", body["deploy_url"])


def test_pulse_documented_example(rt: Any, client: Any, key: str) -> None:
    """Laravel Pulse's request: 201 {"status": "recorded"}; the key's name stands for the application."""
    body = {"environment": "production", "version": "v1.2.3", "commit": "abc123def456",
            "build_date": "2025-01-15T10:30:00Z", "build_id": "12345"}
    resp = send(client, PULSE, body, key=key)
    assert resp.status_code == 201
    assert resp.get_json() == {"status": "recorded", "matched": False, "suggestion": None}
    (row,) = deployments(rt)
    assert (row.service, row.repository, row.version, row.sha, row.build_id, row.status) == (
        "ci", None, "v1.2.3", "abc123def456", "12345", "success")
    assert row.deployed_at == datetime(2025, 1, 15, 10, 30, tzinfo=timezone.utc)
    again = send(client, PULSE, body, key=key)
    assert again.status_code == 200 and again.get_json() == {"status": "recorded", "matched": False,
                                                             "suggestion": None, "duplicate": True}
    later = send(client, PULSE, {**body, "build_id": "12346"}, key=key)
    assert later.get_json() == {"status": "recorded", "matched": True}
    assert len(deployments(rt)) == 2


def test_pulse_errors(rt: Any, client: Any) -> None:
    """Laravel's 422 body names each missing field; 429 is Laravel's throttle body."""
    key = create_key(rt.engine, "pulse", "deploy", rate="1/minute")[1]
    resp = send(client, PULSE, {"environment": "production"}, key=key)
    assert resp.status_code == 422
    assert resp.get_json() == {
        "message": "The version field is required. (and 2 more errors)",
        "errors": {"version": ["The version field is required."], "commit": ["The commit field is required."],
                   "build_date": ["The build date field is required."]}}
    limited = send(client, PULSE, MINIMAL[PULSE], key=key)
    assert limited.status_code == 429 and limited.get_json() == {"message": "Too Many Attempts."}


def test_vibe_documented_example(rt: Any, client: Any, key: str) -> None:
    """Vibe Monitor's request: 201 with exactly its documented fields (plus matched)."""
    body = {"environment": "production", "repository": "owner/repo", "branch": "main", "commit_sha": SHA,
            "status": "success", "source": "github_actions", "deployed_at": "2024-01-15T10:30:00Z",
            "extra_data": {"workflow_run_id": "12345"}}
    resp = send(client, VIBE, body, key=key, header="workspace")
    assert resp.status_code == 201
    got = resp.get_json()
    (row,) = deployments(rt)
    assert got == {"id": row.id, "environment_id": got["environment_id"], "repo_full_name": "owner/repo",
                   "branch": "main", "commit_sha": SHA, "status": "success", "source": "github_actions",
                   "deployed_at": "2024-01-15T10:30:00Z", "created_at": got["created_at"], "matched": False,
                   "suggestion": None}
    assert isinstance(got["environment_id"], int)


def test_vibe_failed_and_pending_spellings(rt: Any, client: Any, key: str) -> None:
    """Vibe's `failed` is stored as failure and answered as failed; a pending report echoes its time."""
    failed = send(client, VIBE, {**MINIMAL[VIBE], "status": "failed"}, key=key).get_json()
    assert failed["status"] == "failed" and deployments(rt)[0].status == "failure"
    pending = send(client, VIBE, {**MINIMAL[VIBE], "status": "pending", "deployed_at": "2024-01-15T10:30:00Z"},
                   key=key).get_json()
    assert pending["deployed_at"] == "2024-01-15T10:30:00Z"


def test_vibe_errors(rt: Any, client: Any, key: str) -> None:
    """FastAPI-style 422 items; a 40-character SHA is required as Vibe documents."""
    resp = send(client, VIBE, {"environment": "production", "commit_sha": "abc123"}, key=key)
    assert resp.status_code == 422
    detail = resp.get_json()["detail"]
    assert {tuple(d["loc"]) for d in detail} == {("body", "repository"), ("body", "commit_sha")}
    assert {d["type"] for d in detail} == {"missing", "string_pattern_mismatch"}
    assert send(client, VIBE, {"environment": "x", "repository": "o/r", "source": "gitlab"}, key=key).status_code == 422


OPSLEVEL_EXAMPLE = {
    "dedup_id": "9ae54794-dfc5-4ac8-b1b5-78789f20f3f8", "service": "shopping_cart",
    "deployer": {"id": "1a9f841f-9a3d-4423-a05a-7e9c31a02b16", "email": "[email protected]", "name": "Michael Scott"},
    "deployed_at": "2019-02-01 13:28:33", "environment": "Production",
    "description": "Deployed by CI Pipeline: Deploy #234", "deploy_url": "https://heroku.deploys.com",
    "deploy_number": "234",
    "commit": {"sha": "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5", "message": "Merge branch 'fix-tax-rate' into 'master'",
               "branch": "master", "date": "2019-02-01 09:23:43", "committer_name": "Michael Scott",
               "committer_email": "[email protected]", "author_name": "Michael Scott",
               "author_email": "[email protected]", "authoring_date": "2019-02-01 09:23:43"},
}


def test_opslevel_documented_example(rt: Any, client: Any, key: str) -> None:
    """OpsLevel's request: recorded even for an unknown service; ok once known; duplicate_deploy on a repeat."""
    first = send(client, OPSLEVEL, OPSLEVEL_EXAMPLE, key=key)
    assert first.status_code == 202
    assert first.get_json() == {
        "result": "no_service_found",
        "message": "No service found matching alias 'shopping_cart'. Recording 'shopping_cart' as a suggestion."}
    (row,) = deployments(rt)
    assert (row.service, row.environment, row.sha, row.ref, row.dedup_id, row.extra["deploy_number"]) == (
        "shopping_cart", "Production", SHA, "master", OPSLEVEL_EXAMPLE["dedup_id"], 234)
    assert row.deployed_at == datetime(2019, 2, 1, 13, 28, 33, tzinfo=timezone.utc)  # read as UTC
    assert row.production is True and row.deployer["name"] == "Michael Scott"
    repeat = send(client, OPSLEVEL, OPSLEVEL_EXAMPLE, key=key)
    assert repeat.status_code == 202 and repeat.get_json() == {
        "result": "duplicate_deploy", "message": "Deploy not created due to existing deploy with identical dedup_id"}
    second = send(client, OPSLEVEL, {**OPSLEVEL_EXAMPLE, "dedup_id": "another"}, key=key)
    assert second.status_code == 202 and second.get_json() == {"result": "ok"}
    assert len(deployments(rt)) == 2


def test_opslevel_suggests_a_known_service(rt: Any, client: Any, key: str) -> None:
    """An unknown alias close to a known one gets a did-you-mean."""
    send(client, OPSLEVEL, {**MINIMAL[OPSLEVEL], "service": "shopping_cart"}, key=key)
    resp = send(client, OPSLEVEL, {**MINIMAL[OPSLEVEL], "service": "shoping_cart"}, key=key)
    assert resp.get_json()["result"] == "no_service_found"
    assert resp.get_json()["message"].endswith("Did you mean 'shopping_cart'?")


def test_opslevel_errors_as_documented(rt: Any, client: Any, key: str) -> None:
    """A missing required field is OpsLevel's 400 with Rails' wording; a bad key is 401 in its shape."""
    resp = send(client, OPSLEVEL, {"service": "cart", "description": "x"}, key=key)
    assert resp.status_code == 400
    assert resp.get_json() == {"errors": [{"status": 400, "title": "Deployed at Error",
                                           "detail": "param is missing or the value is empty: deployed_at"}]}
    assert send(client, OPSLEVEL, MINIMAL[OPSLEVEL], key="slw_wrong").get_json() == UNAUTHORIZED[OPSLEVEL]
    assert deployments(rt) == []


def test_opslevel_deploy_numbers_follow_in_sequence(rt: Any, client: Any, key: str) -> None:
    """A deploy without deploy_number gets the service's next number; each service counts on its own."""
    send(client, OPSLEVEL, {**MINIMAL[OPSLEVEL], "deploy_number": 41}, key=key)
    send(client, OPSLEVEL, MINIMAL[OPSLEVEL], key=key)
    send(client, OPSLEVEL, MINIMAL[OPSLEVEL], key=key)
    send(client, OPSLEVEL, {**MINIMAL[OPSLEVEL], "service": "billing"}, key=key)
    numbers = [(d.service, d.extra.get("deploy_number")) for d in deployments(rt)]
    assert numbers == [("cart", 41), ("cart", 42), ("cart", 43), ("billing", 1)]


def test_opslevel_numbers_stay_distinct_under_concurrency(rt: Any, key: str) -> None:
    """Eight deploys at once without deploy_number get eight different numbers."""
    app = create_app(rt=rt)
    codes = run_concurrently(8, lambda i: send(app.test_client(), OPSLEVEL, MINIMAL[OPSLEVEL], key=key).status_code)
    assert codes == [202] * 8
    assert sorted(d.extra["deploy_number"] for d in deployments(rt)) == list(range(1, 9))


# --------------------------------------------------------------------------- dedup and move-along


def test_a_deployment_moves_along(rt: Any, client: Any, key: str) -> None:
    """pending, in_progress, success with one build_id: one deployment, one status each; a repeat adds nothing."""
    body = {**MINIMAL[CANONICAL], "build_id": "b-1", "commit_sha": SHA}
    answers = [send(client, CANONICAL, {**body, "status": s}, key=key) for s in ("pending", "in_progress", "success")]
    assert [a.status_code for a in answers] == [201, 200, 200]
    assert [a.get_json()["outcome"] for a in answers] == ["created", "moved", "moved"]
    assert len({a.get_json()["id"] for a in answers}) == 1
    (row,) = deployments(rt)
    assert row.status == "success" and row.deployed_at is not None
    assert [s.state for s in statuses(rt)] == ["pending", "in_progress", "success"]
    repeat = send(client, CANONICAL, {**body, "status": "success"}, key=key)
    assert repeat.status_code == 200 and repeat.get_json()["duplicate"] is True
    assert len(statuses(rt)) == 3 and len(deployments(rt)) == 1


def test_dedup_id_matches_and_answers_duplicate(rt: Any, client: Any, key: str) -> None:
    """The same dedup_id twice: 200 with duplicate true, same deployment."""
    body = {**MINIMAL[CANONICAL], "dedup_id": "d-1"}
    first, second = (send(client, CANONICAL, body, key=key) for _ in range(2))
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json()["duplicate"] is True and second.get_json()["id"] == first.get_json()["id"]
    assert second.get_json()["mirror"] == {"queued": False, "reason": "duplicate report: nothing new to mirror"}


def test_what_keys_a_deployment(rt: Any, client: Any, key: str) -> None:
    """Separate deployments for another environment, another target, a build_id equal to a dedup_id, no id."""
    base = MINIMAL[CANONICAL]
    for body in ({**base, "build_id": "1"}, {**base, "dedup_id": "1"}, {**base, "build_id": "1", "environment": "qa"},
                 {**base, "build_id": "1", "repository": "octo-org/other"},
                 {"environment": "production", "service": "octo-org/hello", "build_id": "1"}, base, base):
        assert send(client, CANONICAL, body, key=key).status_code == 201
    assert len(deployments(rt)) == 7
    # GitHub names are case-insensitive: another spelling is the same deployment.
    again = send(client, CANONICAL, {**base, "build_id": "1", "repository": "Octo-Org/Hello"}, key=key)
    assert again.get_json()["duplicate"] is True


def test_later_report_fills_what_was_missing(rt: Any, client: Any, key: str) -> None:
    """A success report that knows the sha and version completes the deployment started without them."""
    send(client, CANONICAL, {**MINIMAL[CANONICAL], "build_id": "7", "status": "in_progress"}, key=key)
    done = send(client, CANONICAL, {**MINIMAL[CANONICAL], "build_id": "7", "commit_sha": SHA, "version": "v2"},
                key=key).get_json()
    assert (done["sha"], done["version"], done["status"]) == (SHA, "v2", "success")


def test_clock_skew_never_moves_a_deployment_backwards(rt: Any, client: Any, key: str) -> None:
    """A success stamped before the in_progress report (CI clock behind) still ends the deployment."""
    body = {**MINIMAL[CANONICAL], "build_id": "9"}
    send(client, CANONICAL, {**body, "status": "in_progress"}, key=key)
    early = (utcnow() - timedelta(minutes=5)).isoformat()
    done = send(client, CANONICAL, {**body, "status": "success", "deployed_at": early}, key=key).get_json()
    assert done["status"] == "success"
    assert [s.state for s in statuses(rt)] == ["in_progress", "success"]


def run_concurrently(n: int, work: Any) -> list[Any]:
    """Run work(i) in n threads released at the same moment; results in thread order."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("ident", ["dedup_id", "build_id"])
def test_eight_concurrent_copies_make_one_deployment(rt: Any, key: str, ident: str) -> None:
    """Eight copies of one report at the same moment: one deployment, one status, one 201."""
    app = create_app(rt=rt)
    body = {**MINIMAL[CANONICAL], ident: "same", "status": "in_progress"}
    answers = run_concurrently(8, lambda i: send(app.test_client(), CANONICAL, body, key=key))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 7 + [201], [a.get_json() for a in answers]
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert len(deployments(rt)) == 1 and len(statuses(rt)) == 1


def test_reports_without_ids_are_separate_deployments(rt: Any, client: Any, key: str) -> None:
    """No build_id and no dedup_id: each report is a deployment of its own."""
    for _ in range(3):
        assert send(client, CANONICAL, MINIMAL[CANONICAL], key=key).status_code == 201
    assert len(deployments(rt)) == 3


# --------------------------------------------------------------------------- matching


def test_unknown_repository_is_recorded_with_a_suggestion(rt: Any, client: Any, key: str) -> None:
    """Nothing matches: still recorded, matched false, the closest installed name suggested."""
    install(rt)
    resp = send(client, CANONICAL, {**MINIMAL[CANONICAL], "repository": "octo-org/helo"}, key=key).get_json()
    assert (resp["matched"], resp["suggestion"]) == (False, "octo-org/hello")
    assert [d.repository for d in deployments(rt)] == ["octo-org/helo"]
    known = send(client, CANONICAL, {**MINIMAL[CANONICAL], "repository": "octo-org/helo"}, key=key).get_json()
    assert (known["matched"], known["suggestion"]) == (True, None)  # recorded before now


def test_installed_repository_matches_in_any_case(rt: Any, client: Any, key: str) -> None:
    """An installed repository matches whatever its case, and is stored under GitHub's spelling."""
    install(rt)
    resp = send(client, CANONICAL, {**MINIMAL[CANONICAL], "repository": "OCTO-ORG/Hello"}, key=key).get_json()
    assert (resp["matched"], resp["repository"]) == (True, "octo-org/hello")


def test_removed_repository_no_longer_matches(rt: Any, client: Any, key: str) -> None:
    """A repository removed from the installation is not known through it."""
    install(rt)
    with rt.engine.begin() as conn:
        conn.execute(InstallationRepository.__table__.update().values(removed_at=utcnow()))
    resp = send(client, CANONICAL, MINIMAL[CANONICAL], key=key).get_json()
    assert resp["matched"] is False


def test_unknown_service_then_known(rt: Any, client: Any, key: str) -> None:
    """A service alias is known once deployments were recorded for it."""
    first = send(client, CANONICAL, {"environment": "qa", "service": "payments"}, key=key).get_json()
    assert (first["matched"], first["suggestion"], first["service"]) == (False, None, "payments")
    near = send(client, CANONICAL, {"environment": "qa", "service": "payment"}, key=key).get_json()
    assert (near["matched"], near["suggestion"]) == (False, "payments")
    again = send(client, CANONICAL, {"environment": "qa", "service": "payments"}, key=key).get_json()
    assert again["matched"] is True


# --------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize("path", SHAPES, ids=SHAPE_IDS)
def test_429_with_retry_after_per_key(rt: Any, client: Any, path: str, caplog: Any) -> None:
    """Over the key's own rate: 429 in the shape's words with Retry-After; another key is unaffected."""
    slow = create_key(rt.engine, "slow", "deploy", rate="2/minute")[1]
    other = create_key(rt.engine, "other", "deploy", rate="2/minute")[1]
    first = [send(client, path, MINIMAL[path], key=slow) for _ in range(2)]
    assert all(r.status_code in (201, 202) for r in first)
    assert all("Retry-After" not in r.headers for r in first)
    refused = send(client, path, MINIMAL[path], key=slow)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.is_json
    assert send(client, path, MINIMAL[path], key=other).status_code in (201, 202)
    assert len(deployments(rt)) == 3
    # The limit is only evaluated once the view knows the key; flask-limiter's own hook must never trip on it.
    assert [r.getMessage() for r in caplog.records if r.name == "flask-limiter" and r.levelname != "INFO"] == []


def test_keys_without_a_rate_use_the_server_default(make_runtime: Any, mode: str) -> None:
    """KEY_RATE applies to keys created without --rate."""
    rt = make_runtime(mode, key_rate="1/minute")
    client = create_app(rt=rt).test_client()
    plain = create_key(rt.engine, "plain", "deploy")[1]
    assert send(client, CANONICAL, MINIMAL[CANONICAL], key=plain).status_code == 201
    assert send(client, CANONICAL, MINIMAL[CANONICAL], key=plain).status_code == 429


@pytest.mark.parametrize("mode", ["production"])
def test_web_processes_share_a_key_bucket_in_redis(rt: Any) -> None:
    """Two apps (two web processes) count against one bucket, stored under the key's hash only."""
    from redis import Redis

    row, plaintext = create_key(rt.engine, "shared", "deploy", rate="2/minute")
    one, two = create_app(rt=rt).test_client(), create_app(rt=rt).test_client()
    assert send(one, CANONICAL, MINIMAL[CANONICAL], key=plaintext).status_code == 201
    assert send(two, CANONICAL, MINIMAL[CANONICAL], key=plaintext).status_code == 201
    assert send(one, CANONICAL, MINIMAL[CANONICAL], key=plaintext).status_code == 429
    names = [k.decode() for k in Redis.from_url(rt.settings.redis_url).keys("*")]
    assert any(row.key_hash in n for n in names)
    assert not any(plaintext in n for n in names)


# --------------------------------------------------------------------------- mirroring into GitHub


@pytest.fixture
def installed(gh_rt: Any, fake_github: Any) -> Any:
    """The fake GitHub's repository, installed in Slipway's record too."""
    install(gh_rt, repo_id=fake_github.repo_id(factories.REPO))
    return gh_rt


@pytest.fixture
def gh_key(gh_rt: Any) -> str:
    """A deploy key on the GitHub-enabled runtime."""
    return create_key(gh_rt.engine, "jenkins", "deploy", rate=FAST)[1]


def test_mirror_end_to_end(installed: Any, gh_client: Any, gh_key: str, fake_github: Any) -> None:
    """pending, in_progress, success: one GitHub deployment, a status each with the CI's URL; a rerun calls nothing."""
    rt = installed
    body = {"environment": "production", "repository": factories.REPO, "commit_sha": SHA, "build_id": "42",
            "source": "jenkins", "version": "v9", "deploy_url": "https://jenkins.example.com/job/app/42/"}
    for state in ("pending", "in_progress", "success"):
        answer = send(gh_client, CANONICAL, {**body, "status": state}, key=gh_key).get_json()
        assert answer["mirror"]["queued"] is True
        drain(rt)
    (row,) = deployments(rt)
    created = fake_github.calls_to("POST", r"/repos/octo-org/hello/deployments$")
    assert len(created) == 1
    sent = created[0].json
    assert (sent["environment"], sent["ref"], sent["production_environment"], sent["transient_environment"]) == (
        "production", SHA, True, False)
    assert sent["payload"]["slipway"]["key"] == row.key
    posted = fake_github.calls_to("POST", r"/deployments/\d+/statuses$")
    assert [c.json["state"] for c in posted] == ["pending", "in_progress", "success"]
    assert all(c.json["log_url"] == body["deploy_url"] for c in posted)
    (gh_deployment,) = fake_github.deployments[factories.REPO]
    assert row.github_deployment_id == gh_deployment["id"] and row.status == "success"
    assert all(s.github_status_id for s in statuses(rt)) and len(statuses(rt)) == 3
    assert {j.state for j in mirror_jobs(rt)} == {"done"}
    before = len(fake_github.calls)
    from workers.inbox import submit_internal

    submit_internal(rt.engine, rt.transport, "slipway.mirror", {"deployment_id": row.id,
                                                               "repository": factories.REPO})
    drain(rt)
    assert len(fake_github.calls) == before  # nothing new, not even a read
    assert len(statuses(rt)) == 3


def test_mirror_maps_states_and_uses_the_branch(installed: Any, gh_client: Any, gh_key: str,
                                                fake_github: Any) -> None:
    """failure stays failure, cancelled becomes inactive; without a sha the branch is deployed."""
    for build, state in (("1", "failed"), ("2", "cancelled")):
        send(gh_client, CANONICAL, {"environment": "staging", "repository": factories.REPO, "branch": "main",
                                    "build_id": build, "status": state}, key=gh_key)
    drain(installed)
    created = fake_github.calls_to("POST", r"/deployments$")
    assert [c.json["ref"] for c in created] == ["main", "main"]
    assert [c.json["production_environment"] for c in created] == [False, False]
    assert [c.json["state"] for c in fake_github.calls_to("POST", r"/statuses$")] == ["failure", "inactive"]
    assert [d.status for d in deployments(installed)] == ["failure", "cancelled"]


@pytest.mark.parametrize(("setup", "reason"), [
    ("not_installed", "not a repository the GitHub App is installed on"),
    ("suspended", "not a repository the GitHub App is installed on"),
    ("no_ref", "no commit_sha or branch"),
])
def test_no_mirror_when_it_cannot_be(gh_rt: Any, gh_client: Any, gh_key: str, fake_github: Any, setup: str,
                                     reason: str) -> None:
    """Not installed, installation suspended, nothing to deploy: recorded, not mirrored, and the answer says why."""
    if setup == "suspended":
        install(gh_rt, suspended_at=utcnow())
    elif setup == "no_ref":
        install(gh_rt)
    body = {"environment": "production", "repository": factories.REPO}
    if setup != "no_ref":
        body["commit_sha"] = SHA
    answer = send(gh_client, CANONICAL, body, key=gh_key).get_json()
    assert answer["mirror"]["queued"] is False and reason in answer["mirror"]["reason"]
    drain(gh_rt)
    assert mirror_jobs(gh_rt) == [] and fake_github.calls_to("POST", r"/deployments") == []
    assert len(deployments(gh_rt)) == 1


def test_no_mirror_without_github_configured(rt: Any, client: Any, key: str) -> None:
    """Installed but APP_ID unset: recorded, and the answer says GitHub is not configured."""
    install(rt)
    answer = send(client, CANONICAL, {**MINIMAL[CANONICAL], "commit_sha": SHA}, key=key).get_json()
    assert answer["mirror"] == {"queued": False, "reason": "the GitHub App is not configured (APP_ID and PRIVATE_KEY)"}
    assert mirror_jobs(rt) == []


def test_mirror_ignores_deployments_that_came_from_github(installed: Any, fake_github: Any) -> None:
    """A job for a deployment recorded from GitHub (no key of Slipway's) creates nothing."""
    from workers.inbox import submit_internal

    with installed.engine.begin() as conn:
        dep_id = conn.execute(Deployment.__table__.insert().values(
            repository=factories.REPO, environment="production", sha=SHA, github_deployment_id=77,
            created_at=utcnow(), updated_at=utcnow()).returning(Deployment.id)).scalar()
    submit_internal(installed.engine, installed.transport, "slipway.mirror", {"deployment_id": dep_id})
    drain(installed)
    (job,) = mirror_jobs(installed)
    assert job.state == "ignored" and "came from GitHub" in job.note
    assert len(deployments(installed)) == 1 and fake_github.calls_to("POST", r"/deployments") == []


def test_mirror_skips_an_installation_suspended_since(installed: Any, gh_client: Any, gh_key: str,
                                                      fake_github: Any) -> None:
    """The job re-checks the installation when it runs: suspended meanwhile, it is ignored with the reason."""
    with installed.engine.begin() as conn:
        conn.execute(Installation.__table__.update().values(suspended_at=utcnow()))
    from workers.inbox import submit_internal

    dep = send(gh_client, CANONICAL, {**MINIMAL[CANONICAL], "commit_sha": SHA}, key=gh_key).get_json()
    submit_internal(installed.engine, installed.transport, "slipway.mirror", {"deployment_id": dep["id"]})
    drain(installed)
    (job,) = mirror_jobs(installed)
    assert job.state == "ignored" and "not a repository the App is installed on" in job.note
    assert fake_github.calls_to("POST", r"/deployments") == []


def test_workers_know_the_mirror_job() -> None:
    """A fresh worker process (which imports only workers.handlers) has a handler for slipway.mirror."""
    import subprocess
    import sys

    code = "from workers.registry import get_handler; import sys; sys.exit(get_handler('slipway.mirror', None) is None)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# --------------------------------------------------------------------------- pure decisions


def test_deployment_key_rules() -> None:
    """Keys: none without ids; dedup and build ids never collide; repositories case-insensitive; bounded length."""
    repo = Target("repository", "Octo/App")
    assert deployment_key(repo, "prod", None, None) is None
    assert deployment_key(repo, "prod", "1", None) != deployment_key(repo, "prod", None, "1")
    assert deployment_key(repo, "prod", "1", None) == deployment_key(Target("repository", "octo/app"), "prod", "1", None)
    assert deployment_key(Target("service", "Cart"), "p", "1", None) != deployment_key(Target("service", "cart"), "p",
                                                                                        "1", None)
    # Separators inside names cannot make two reports collide.
    assert deployment_key(Target("service", "a"), "b:c", "d", None) != deployment_key(Target("service", "a"), "b",
                                                                                      "c:d", None)
    assert len(deployment_key(Target("repository", "o/" + "r" * 138), "e" * 50, "d" * 100, "b" * 50) or "") <= 300


T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("reported", "state", "history", "expected"), [
    (T0, "success", [], T0),
    (T0, "success", [("in_progress", T0 - timedelta(minutes=1))], T0),
    (T0 - timedelta(minutes=5), "success", [("in_progress", T0)], T0 + timedelta(milliseconds=1)),
    (T0, "pending", [("success", T0 - timedelta(minutes=1))], T0 - timedelta(minutes=1, milliseconds=1)),
    (T0, "failure", [("success", T0 - timedelta(minutes=1))], T0),  # two outcomes: the reported times decide
    (T0, "inactive", [("success", T0 + timedelta(minutes=1))], T0 + timedelta(minutes=1, milliseconds=1)),
])
def test_status_time(reported: datetime, state: str, history: list[Any], expected: datetime) -> None:
    """A reported status keeps its time unless that would put it before an earlier stage or after a later one."""
    assert status_time(reported, state, history) == expected


def test_mirror_rules() -> None:
    """Why a report is not mirrored, in order; GitHub's names for states and refs."""
    assert mirror_skip_reason("duplicate", 1, True, True) == "duplicate report: nothing new to mirror"
    assert mirror_skip_reason("created", None, True, True).startswith("not a repository")
    assert mirror_skip_reason("moved", 1, False, True).startswith("the GitHub App is not configured")
    assert mirror_skip_reason("created", 1, True, False).startswith("no commit_sha")
    assert mirror_skip_reason("created", 1, True, True) is None
    assert [github_state(s) for s in ("failure", "cancelled", "in_progress")] == ["failure", "inactive", "in_progress"]
    assert github_ref(SHA, "main") == (SHA, "main")
    assert github_ref("abc1234", None) == ("", "abc1234")
    assert github_ref("abc1234", "main") == ("", "main")
    assert github_ref(None, None) == ("", "")
