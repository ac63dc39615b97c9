"""API keys: created and shown once, hashed, scoped, revocable; the deliveries and health endpoints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from app.apikeys import create_key, hash_key, revoke_key
from models import ApiKey
from tests import factories
from tests.conftest import drain


def test_cli_prints_the_key_once_alone_on_the_last_line(sqlite_url: str, tmp_path) -> None:
    """`slipway keys create` prints the key last on stdout, the warning on stderr; only a hash is stored."""
    env = {**os.environ, "DATABASE_URL": sqlite_url, "REDIS_URL": "", "LOG_FORMAT": "text"}
    run = subprocess.run([sys.executable, "-m", "slipway.cli", "keys", "create", "--name", "jenkins",
                          "--scope", "deploy", "--environment", "staging", "--rate", "30/minute"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    key = run.stdout.strip().splitlines()[-1]
    assert key.startswith("slw_") and len(key) > 40
    assert "will not be shown again" in run.stderr and key not in run.stderr
    listed = subprocess.run([sys.executable, "-m", "slipway.cli", "keys", "list"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert "jenkins" in listed and "staging" in listed and "30/minute" in listed and key not in listed
    from models.db import make_engine

    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_key")) for v in row)
        stored = conn.execute(select(ApiKey.key_hash)).scalar()
    engine.dispose()
    assert key not in dump and stored == hash_key(key)
    revoked = subprocess.run([sys.executable, "-m", "slipway.cli", "keys", "revoke", "1"], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert revoked.returncode == 0 and "revoked key 1" in revoked.stderr


def test_cli_rejects_a_bad_rate(sqlite_url: str, tmp_path) -> None:
    """A malformed --rate is refused with a clear message."""
    env = {**os.environ, "DATABASE_URL": sqlite_url, "REDIS_URL": ""}
    run = subprocess.run([sys.executable, "-m", "slipway.cli", "keys", "create", "--name", "x", "--rate", "lots"],
                         env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2 and "N/minute" in run.stderr


@pytest.mark.parametrize("header", ["Authorization", "X-Workspace-Key"])
def test_admin_key_reads_the_inbox_with_either_header(rt, client, deliveries, header: str) -> None:
    """Both header forms are accepted."""
    _, key = create_key(rt.engine, "ops", "admin")
    deliveries.post("ping", factories.ping(), guid="g-1")
    drain(rt)
    value = f"Bearer {key}" if header == "Authorization" else key
    resp = client.get("/api/v1/deliveries", headers={header: value})
    assert resp.status_code == 200
    (item,) = resp.get_json()["items"]
    assert item["guid"] == "g-1" and item["event"] == "ping" and item["state"] == "done"
    assert set(item) >= {"guid", "event", "action", "state", "attempts", "error", "received_at", "repository",
                         "installation_id"}


def test_bad_missing_and_revoked_keys_get_the_same_401(rt, client) -> None:
    """Unknown, revoked and absent keys are indistinguishable."""
    row, key = create_key(rt.engine, "old", "admin")
    revoke_key(rt.engine, row.id)
    bodies = [client.get("/api/v1/deliveries", headers=h) for h in
              ({}, {"Authorization": "Bearer slw_nope"}, {"Authorization": f"Bearer {key}"}, {"X-Workspace-Key": "x" * 500})]
    assert {r.status_code for r in bodies} == {401}
    assert len({r.data for r in bodies}) == 1


def test_scopes_are_enforced(rt, client) -> None:
    """A deploy or read key cannot read the admin inbox."""
    for scope in ("deploy", "read"):
        _, key = create_key(rt.engine, scope, scope)
        resp = client.get("/api/v1/deliveries", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"


def test_inbox_filters_and_pagination(rt, client, deliveries) -> None:
    """state/event filters; cursors walk every row once, newest first, while new rows arrive."""
    _, key = create_key(rt.engine, "ops", "admin")
    auth = {"Authorization": f"Bearer {key}"}
    for i in range(5):
        deliveries.post("ping", factories.ping(str(i)), guid=f"p-{i}")
        deliveries.post("issues", factories.event("opened", n=i), guid=f"i-{i}")
    drain(rt)
    ignored = client.get("/api/v1/deliveries?state=ignored&limit=100", headers=auth).get_json()["items"]
    assert sorted(i["guid"] for i in ignored) == [f"i-{i}" for i in range(5)]
    pings = client.get("/api/v1/deliveries?event=ping", headers=auth).get_json()["items"]
    assert [i["guid"] for i in pings] == [f"p-{i}" for i in reversed(range(5))]
    seen, cursor = [], None
    while True:
        url = "/api/v1/deliveries?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth).get_json()
        seen += [i["guid"] for i in page["items"]]
        deliveries.post("ping", factories.ping(f"late {len(seen)}"))  # arrives mid-walk
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 10 and len(set(seen)) == 10
    one = client.get("/api/v1/deliveries/p-3", headers=auth)
    assert one.status_code == 200 and one.get_json()["guid"] == "p-3"
    assert client.get("/api/v1/deliveries/unknown", headers=auth).status_code == 404


@pytest.mark.parametrize("query,field", [("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"),
                                         ("cursor=zzz", "cursor"), ("state=lost", "state")])
def test_bad_query_parameters_are_422(rt, client, query: str, field: str) -> None:
    """Invalid filters name the field."""
    _, key = create_key(rt.engine, "ops", "admin")
    resp = client.get(f"/api/v1/deliveries?{query}", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]


def test_health_and_readiness(rt, client) -> None:
    """/healthz always; /readyz checks the database and the queue."""
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": True, "queue": True}


def test_readiness_fails_when_the_database_is_down(make_runtime) -> None:
    """/readyz answers 503 naming what is down."""
    from app import create_app

    rt = make_runtime("embedded", database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")
    resp = create_app(rt=rt).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["checks"]["database"] is False
