"""Logs never carry a secret, and lines about a delivery carry its GUID (a real flow at DEBUG, JSON lines)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from slipway import logs
from slipway.logs import Redactor
from tests import factories as f
from tests.conftest import SECRET, Deliveries, drain

LEAKS = {
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9_]{8,}"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}"),
    "PEM": re.compile(r"PRIVATE KEY"),
    "API key": re.compile(r"slw_[A-Za-z0-9_-]{8,}"),
}
STAGING = "environments:\n  staging:\n    on: push\n"
FAKE_TOKEN = "ghs_" + "A1b2C3d4E5" * 4
FAKE_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0NSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the root logger writes through slipway.logs.setup(debug, json), in a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "rq.worker", "rq.queue", "alembic")})
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # setup() binds its handler to sys.stderr as it is now
    logs.setup("debug", "json", [SECRET, "second-rotated-secret"])
    yield stream
    root.handlers = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def lines_of(stream: io.StringIO) -> list[dict]:
    """Every captured line, each of which must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_representative_flow_leaks_nothing_and_tags_deliveries(gh_rt, gh_client, fake_github, captured,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks (good and forged), GitHub calls with a JWT and a token, API keys, a crashing handler."""
    from app.apikeys import create_key
    from workers import jobs

    hooks = Deliveries(gh_client)
    sha = f.sha("logs")
    fake_github.set_file(f.REPO, ".github/slipway.yml", STAGING)
    fake_github.add_check_run(f.REPO, sha, "test", conclusion="success")

    # Signed webhooks that make the worker call GitHub (JWT → installation token → deployments).
    guids = {"ping-1": ("ping", f.ping()), "push-1": ("push", f.push(after=sha))}
    for guid, (event, payload) in guids.items():
        assert hooks.post(event, payload, guid=guid).status_code in (200, 202)
    assert hooks.post("push", f.push(), guid="forged-1", signature="sha256=" + "0" * 64).status_code == 401
    drain(gh_rt)
    assert fake_github.deployments.get(f.REPO), "the flow should have reached GitHub"
    tokens = list(fake_github._tokens)
    assert tokens and all(t.startswith("ghs_") for t in tokens)
    jwts = [c.headers["authorization"].split()[1] for c in fake_github.calls if
            c.headers.get("authorization", "").startswith("Bearer ey")]
    assert jwts

    # API keys: created, used (header and URL), a wrong one refused.
    _, key = create_key(gh_rt.engine, "ci", "deploy", [], "100000/minute")
    body = {"environment": "production", "repository": f.REPO}
    assert gh_client.post("/api/v1/deployments", json=body, headers={"Authorization": f"Bearer {key}"}).status_code < 300
    assert gh_client.post("/api/v1/deployments", json=body, headers={"X-Workspace-Key": key}).status_code < 300
    assert gh_client.post(f"/integrations/deploy/{key}", json={
        "service": "cart", "description": "Deploy #1", "deployed_at": "2019-02-01 13:28:33"}).status_code < 300
    wrong = "slw_" + "x" * 43
    assert gh_client.post("/api/v1/deployments", json=body, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401

    # A handler that crashes with every kind of secret in its exception (as a careless library might).
    pem_line = fake_github.private_key_pem.decode().splitlines()[1]

    def crash(event):  # noqa: ANN001, ANN202
        raise RuntimeError(f"boom token={tokens[0]} jwt={jwts[0]} key={key} secret={SECRET} "
                           f"pem={fake_github.private_key_pem.decode()}")

    original = jobs.get_handler
    monkeypatch.setattr(jobs, "get_handler", lambda e, a: crash if e == "deployment" else original(e, a))
    assert hooks.post("deployment", f.deployment_event(f.deployment_obj(77)), guid="crash-1").status_code == 202
    drain(gh_rt)
    logging.getLogger("slipway.test").debug("request headers", extra={
        "headers": {"Authorization": f"token {tokens[0]}", "X-Workspace-Key": key}, "attempts": [jwts[0]]})

    text = captured.getvalue()
    records = lines_of(captured)
    assert len(records) >= 5
    secrets = [SECRET, "second-rotated-secret", key, pem_line, *tokens, *jwts]
    for line in text.splitlines():
        for name, pattern in LEAKS.items():
            assert not pattern.search(line), f"{name} leaked: {line[:300]}"
        for secret in secrets:
            assert secret not in line, f"secret leaked: {line[:300]}"

    # The crash was logged (with its traceback, scrubbed) and names its delivery.
    (crashed,) = [r for r in records if r["message"] == "handler crashed"]
    assert crashed["delivery"] == "crash-1" and "[redacted]" in crashed["exception"]
    assert "boom" in crashed["exception"] and "RuntimeError" in crashed["exception"]
    (debug,) = [r for r in records if r["message"] == "request headers"]
    assert debug["level"] == "debug" and "[redacted]" in json.dumps(debug)

    # Lines about a delivery carry its GUID.
    about = [r for r in records if r["logger"] in ("workers.jobs", "app.webhooks")
             or "delivery" in r["message"].lower()]
    assert about and all(r.get("delivery") for r in about), [r for r in about if not r.get("delivery")]
    for r in records:
        for guid in (*guids, "crash-1", "forged-1"):
            if guid in r["message"]:
                assert r.get("delivery") == guid
    tagged = {r["delivery"] for r in records if r.get("delivery")}
    assert {"push-1", "ping-1", "crash-1", "forged-1"} <= tagged


# ---------------------------------------------------------------- the Redactor, pattern by pattern


@pytest.mark.parametrize(("text", "secret"), [
    ("token ghs_16C7e42F292c6912E7710c838347Ae178B4a here", "ghs_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("stateless ghs_12345_eyJhbGciOiJSUzI1NiJ9abcdEFGH", "ghs_12345_eyJhbGciOiJSUzI1NiJ9abcdEFGH"),
    ("pat ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("oauth gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("user-to-server ghu_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ghu_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("refresh ghr_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ghr_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    (f"jwt {FAKE_JWT}", FAKE_JWT),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
    ("key slw_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0", "slw_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"),
    ("Authorization: Bearer opaque-value-123", "opaque-value-123"),
    ("{'authorization': 'token opaque-value-123'}", "opaque-value-123"),
    ('{"X-Workspace-Key": "opaque-value-123"}', "opaque-value-123"),
    ("webhook secret is test-secret", SECRET),
    ("rotated: second-rotated-secret,test-secret", "second-rotated-secret"),
])
def test_redactor_scrubs_each_pattern(text: str, secret: str) -> None:
    """Each secret shape, and each configured webhook secret, becomes [redacted]."""
    scrubbed = Redactor([SECRET, "second-rotated-secret"]).scrub(text)
    assert secret not in scrubbed and "[redacted]" in scrubbed


def test_redactor_leaves_ordinary_text_alone() -> None:
    """GUIDs, shas, event names and short words are not secrets."""
    text = "delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958 push a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0 ok"
    assert Redactor([SECRET, "ab"]).scrub(text) == text


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    """A log record with extra fields, as logging builds it."""
    rec = logging.LogRecord("slipway.test", logging.INFO, __file__, 1, msg, args or None, None)
    rec.__dict__.update(extra)
    return rec


def test_redactor_scrubs_arguments_extras_nested_values_and_tracebacks() -> None:
    """%-arguments, string extras, extras inside dicts and lists, exceptions and stack info."""
    redactor = Redactor([SECRET])
    rec = record("calling with %s", FAKE_TOKEN, error=f"bad {FAKE_JWT}", count=3,
                 headers={"Authorization": f"token {FAKE_TOKEN}", "nested": [f"secret {SECRET}"]})
    try:
        raise ValueError(f"failed with {FAKE_TOKEN}")
    except ValueError:
        rec.exc_info = sys.exc_info()
    rec.stack_info = f"Stack (most recent call last):\n  value = {FAKE_JWT}"
    assert redactor.filter(rec) is True
    out = logs.JsonFormatter().format(rec)
    assert FAKE_TOKEN not in out and FAKE_JWT not in out and SECRET not in out
    doc = json.loads(out)
    assert doc["message"] == "calling with [redacted]" and doc["count"] == 3
    assert doc["headers"]["nested"] == ["secret [redacted]"]
    assert "ValueError: failed with [redacted]" in doc["exception"]
    text = logs.TextFormatter("%(message)s").format(rec)
    assert FAKE_TOKEN not in text and FAKE_JWT not in text and SECRET not in text
