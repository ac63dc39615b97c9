"""The read API: deployments, environments, decisions and DORA figures, in both modes.

Every answer is held against the OpenAPI document (tests/test_openapi.py's check_answer); pages are walked
while deployments keep arriving; every filter is tried, bad ones must be refused naming the parameter;
keys need the read or admin scope.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert

from app.apikeys import create_key, revoke_key
from models import Decision, Deployment
from models.base import utcnow
from tests.test_openapi import check_answer
from workers.record import ensure_environment, record_status

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
H, D, M = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)
SHA = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"
LIST, ONE, ENVS, DECISIONS, DORA = ("/api/v1/deployments", "/api/v1/deployments/{id}", "/api/v1/environments",
                                    "/api/v1/decisions", "/api/v1/metrics/dora")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def key(rt: Any) -> str:
    """A read key with a rate no test reaches."""
    return create_key(rt.engine, "reader", "read", rate="100000/minute")[1]


def auth(key: str) -> dict[str, str]:
    """The key as a bearer token."""
    return {"Authorization": f"Bearer {key}"}


def add(rt: Any, environment: str = "production", repository: str | None = "o/r", *, sha: str | None = None,
        created: datetime | None = None, statuses: tuple[tuple[str, datetime, int | None], ...] = (),
        service: str | None = None, kind: str = "static", **columns: Any) -> int:
    """Store a deployment and its statuses the way the workers do; returns its id."""
    values = {"repository": repository, "service": service, "environment": environment, "sha": sha,
              "created_at": created or utcnow(), "updated_at": utcnow(), "status": "pending", "task": "deploy",
              "source": "github", "transient": False, "production": False, **columns}
    with rt.engine.begin() as conn:
        dep_id = conn.execute(insert(Deployment).values(**values).returning(Deployment.id)).scalar()
        ensure_environment(conn, repository or service or "", environment, kind)
        for state, at, gh_id in statuses:
            record_status(conn, dep_id, state=state, created_at=at, github_status_id=gh_id)
    return int(dep_id)


def get(client: Any, key: str, path: str, template: str | None = None, **params: Any) -> Any:
    """GET with the key; the answer is held against the document; returns (status, body)."""
    resp = client.get(path, query_string=params, headers=auth(key))
    return resp.status_code, check_answer("GET", template or path, resp)


def walk(client: Any, key: str, path: str, between: Any = None, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, page by page; `between()` runs after each page."""
    items, cursor = [], None
    for _ in range(1000):
        status, body = get(client, key, path, **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200
        items += body["items"]
        if between:
            between()
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk did not end")


# --------------------------------------------------------------------------- deployments


def test_list_shape_newest_first(rt: Any, client: Any, key: str) -> None:
    """The SPEC's fields, newest first, times in UTC with a Z."""
    first = add(rt, sha=SHA, ref="main", version="v1", deployer={"name": "ana", "id": 7}, environment_url="https://x",
                statuses=(("success", T0, 1),))
    second = add(rt, environment="staging", statuses=(("failure", T0 + H, 2),))
    status, body = get(client, key, LIST)
    assert status == 200 and [d["id"] for d in body["items"]] == [second, first]
    item = body["items"][1]
    assert {k: item[k] for k in ("repository", "environment", "sha", "ref", "version", "status", "source", "deployer",
                                 "environment_url", "deployed_at")} == {
        "repository": "o/r", "environment": "production", "sha": SHA, "ref": "main", "version": "v1",
        "status": "success", "source": "github", "deployer": {"name": "ana", "id": 7},
        "environment_url": "https://x", "deployed_at": "2026-03-01T00:00:00Z"}
    assert body["items"][0]["status"] == "failure" and body["items"][0]["deployed_at"] is None


def test_filters(rt: Any, client: Any, key: str) -> None:
    """Each filter alone and together."""
    a = add(rt, "production", "o/a", created=T0, source="jenkins", statuses=(("success", T0, None),))
    b = add(rt, "staging", "o/a", created=T0 + D, statuses=(("failure", T0 + D, None),))
    c = add(rt, "production", "o/b", created=T0 + 2 * D, statuses=(("error", T0 + 2 * D, None),))
    d = add(rt, "production", None, service="cart", created=T0 + 3 * D, source="jenkins")
    cases = [
        ({"repository": "o/a"}, [b, a]), ({"environment": "production"}, [d, c, a]),
        ({"status": "failure"}, [b]), ({"status": "failed"}, [b]), ({"status": "pending"}, [d]),
        ({"source": "jenkins"}, [d, a]), ({"service": "cart"}, [d]),
        ({"since": "2026-03-02T00:00:00Z"}, [d, c, b]), ({"until": "2026-03-02"}, [a]),
        ({"since": "2026-03-02T00:00:00+01:00", "until": "2026-03-03T00:00:00Z"}, [b]),
        ({"repository": "o/a", "environment": "production"}, [a]), ({"repository": "o/zzz"}, []),
    ]
    for params, expected in cases:
        status, body = get(client, key, LIST, **params)
        assert status == 200 and [x["id"] for x in body["items"]] == expected, params


def test_period_filter_ends_now(rt: Any, client: Any, key: str) -> None:
    """`period=24h` is the last 24 hours."""
    add(rt, created=utcnow() - 2 * D)
    recent = add(rt, created=utcnow() - H)
    assert [x["id"] for x in get(client, key, LIST, period="24h")[1]["items"]] == [recent]


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "exploded"}, "status"), ({"since": "last tuesday"}, "since"), ({"until": "2026-13-01"}, "until"),
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"envronment": "production"}, "envronment"),
    ({"period": "2d"}, "period"), ({"period": "24h", "since": "2026-03-01"}, "period"),
    ({"since": "2026-03-02", "until": "2026-03-01"}, "until"), ({"environment": "x" * 256}, "environment"),
    ({"repository": ""}, "repository"), ({"repository": "o/\x00"}, "repository"),
    ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
])
def test_bad_filters_are_422_naming_the_field(client: Any, key: str, params: dict[str, str], field: str) -> None:
    """A bad filter never silently matches everything."""
    status, body = get(client, key, LIST, **params)
    assert status == 422 and field in body["error"]["fields"], body


def test_limit_and_cursor(rt: Any, client: Any, key: str) -> None:
    """`limit` rows per page; the default is 20; the last page has no cursor."""
    ids = [add(rt) for _ in range(23)]
    status, body = get(client, key, LIST)
    assert len(body["items"]) == 20 and body["next_cursor"]
    status, rest = get(client, key, LIST, cursor=body["next_cursor"])
    assert [x["id"] for x in body["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None
    assert [x["id"] for x in get(client, key, LIST, limit=23)[1]["items"]] == ids[::-1]


def test_walk_never_skips_or_repeats_while_deployments_arrive(rt: Any, client: Any, key: str) -> None:
    """New deployments (even ones GitHub dated in the past) land before the walk's cursor, never inside it."""
    env1 = [add(rt, f"env{i % 3}") for i in range(40)]
    before = list(env1)
    env1 = env1[1::3]

    def arrive() -> None:
        for i in range(3):
            new = add(rt, f"env{i}", created=T0 - 300 * D)  # late arrivals with old timestamps, too
            env1.extend([new] if i == 1 else [])

    seen = [x["id"] for x in walk(client, key, LIST, arrive, limit=7)]
    assert seen == sorted(before, reverse=True)
    expected = sorted(env1, reverse=True)  # env1 as the second walk begins
    filtered = [x["id"] for x in walk(client, key, LIST, arrive, limit=4, environment="env1")]
    assert filtered == expected


def test_walk_with_a_concurrent_writer(rt: Any, client: Any, key: str) -> None:
    """A writer thread inserting all along: the walk is strictly newest-first, without repeats, and complete."""
    before = {add(rt) for _ in range(30)}
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            add(rt)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = [x["id"] for x in walk(client, key, LIST, limit=5)]
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(set(seen), reverse=True)  # strictly decreasing: nothing twice
    assert before <= set(seen)  # nothing that existed when the walk began was skipped


def test_one_deployment_with_its_statuses_in_history_order(rt: Any, client: Any, key: str) -> None:
    """Statuses oldest first by GitHub's time, then GitHub's id (none = 0), then ours."""
    dep = add(rt, statuses=(("success", T0 + 2 * M, 30), ("pending", T0, 10), ("in_progress", T0 + M, 21),
                            ("in_progress", T0 + M, 20), ("queued", T0 + M, None)))
    status, body = get(client, key, f"{LIST}/{dep}", ONE)
    assert status == 200 and body["status"] == "success" and body["deployed_at"] == "2026-03-01T00:02:00Z"
    assert [(s["state"], s["github_status_id"]) for s in body["statuses"]] == [
        ("pending", 10), ("queued", None), ("in_progress", 20), ("in_progress", 21), ("success", 30)]


@pytest.mark.parametrize("ident", ["999999", "abc", "0", "99999999999999999999999"])
def test_unknown_deployment_is_404(client: Any, key: str, ident: str) -> None:
    """Unknown or impossible ids: 404 in the JSON error shape."""
    status, body = get(client, key, f"{LIST}/{ident}", ONE)
    assert status == 404 and body["error"]["code"] == "not_found"


# --------------------------------------------------------------------------- environments


def test_environments_show_what_runs_now(rt: Any, client: Any, key: str) -> None:
    """The last success per (repository, environment), with who deployed it; filters and service aliases."""
    add(rt, sha="a" * 40, statuses=(("success", T0, 1),))
    live = add(rt, sha="b" * 40, version="v2", deployer={"name": "ana"}, ref="main",
               statuses=(("success", T0 + H, 2),))
    add(rt, sha="c" * 40, statuses=(("failure", T0 + 2 * H, 3),))
    add(rt, "pr-7", kind="preview", statuses=(("success", T0, 4), ("inactive", T0 + H, 5)))
    add(rt, "production", None, service="cart", version="9", statuses=(("success", T0, None),))
    status, body = get(client, key, ENVS)
    assert status == 200 and len(body["items"]) == 3
    prod = next(e for e in body["items"] if e["repository"] == "o/r" and e["environment"] == "production")
    assert prod == {"repository": "o/r", "service": None, "environment": "production", "kind": "static",
                    "state": "active", "deployment_id": live, "sha": "b" * 40, "ref": "main", "version": "v2",
                    "status": "success", "url": None, "since": "2026-03-01T01:00:00Z", "deployer": {"name": "ana"},
                    "source": "github", "updated_at": prod["updated_at"]}
    cart = next(e for e in body["items"] if e["service"] == "cart")
    assert cart["repository"] is None and cart["version"] == "9"
    for params, names in [({"kind": "preview"}, ["pr-7"]), ({"state": "destroyed"}, ["pr-7"]),
                          ({"repository": "cart"}, ["production"]), ({"environment": "pr-7"}, ["pr-7"]),
                          ({"repository": "o/r", "state": "active"}, ["production"])]:
        assert [e["environment"] for e in get(client, key, ENVS, **params)[1]["items"]] == names, params


def test_environments_page_and_refuse_bad_filters(rt: Any, client: Any, key: str) -> None:
    """Pages while environments appear; 422 for unknown kinds and states."""
    for i in range(9):
        add(rt, f"env-{i}")
    names = [e["environment"] for e in walk(client, key, ENVS, lambda: add(rt, f"new-{utcnow().timestamp()}"),
                                            limit=2)]
    assert names == [f"env-{i}" for i in range(8, -1, -1)]
    for params, field in [({"kind": "permanent"}, "kind"), ({"state": "gone"}, "state"), ({"sha": "x"}, "sha")]:
        status, body = get(client, key, ENVS, **params)
        assert status == 422 and field in body["error"]["fields"]


# --------------------------------------------------------------------------- decisions


def decide(rt: Any, verdict: str, *, sha: str = SHA, environment: str = "production", repository: str = "o/r",
           at: datetime = T0) -> None:
    """Store a gate decision."""
    with rt.engine.begin() as conn:
        conn.execute(insert(Decision).values(repository=repository, environment=environment, sha=sha,
                                             verdict=verdict, reasons=[f"because {verdict}"], delivery_guid="g-1",
                                             created_at=at))


def test_decisions(rt: Any, client: Any, key: str) -> None:
    """Newest first with reasons and the delivery; filters repository, environment, sha (prefix), verdict."""
    decide(rt, "wait")
    decide(rt, "deploy", environment="staging")
    decide(rt, "block", sha="f" * 40, repository="o/b")
    status, body = get(client, key, DECISIONS)
    assert status == 200 and [d["verdict"] for d in body["items"]] == ["block", "deploy", "wait"]
    assert body["items"][2] == {"id": body["items"][2]["id"], "repository": "o/r", "environment": "production",
                                "sha": SHA, "verdict": "wait", "reasons": ["because wait"], "delivery": "g-1",
                                "created_at": "2026-03-01T00:00:00Z"}
    for params, verdicts in [({"repository": "o/r"}, ["deploy", "wait"]), ({"environment": "staging"}, ["deploy"]),
                             ({"sha": SHA[:7]}, ["deploy", "wait"]), ({"sha": SHA.upper()}, ["deploy", "wait"]),
                             ({"verdict": "block"}, ["block"])]:
        assert [d["verdict"] for d in get(client, key, DECISIONS, **params)[1]["items"]] == verdicts, params
    assert len(walk(client, key, DECISIONS, lambda: decide(rt, "skip"), limit=1)) == 3
    for params, field in [({"sha": "xyz"}, "sha"), ({"sha": "abc"}, "sha"), ({"verdict": "maybe"}, "verdict")]:
        status, body = get(client, key, DECISIONS, **params)
        assert status == 422 and field in body["error"]["fields"]


# --------------------------------------------------------------------------- DORA


def dora_history(rt: Any) -> None:
    """tests/test_dora.py's week, stored: baseline before it, a redeploy of an old commit, a restore after it."""
    ok = "success"
    add(rt, sha="z", created=T0 - 5 * D, statuses=((ok, T0 - 5 * D, None),))  # z: only _same_commits finds it
    add(rt, sha="a", created=T0 - 2 * D, statuses=((ok, T0 - 2 * D + 5 * M, None),))  # the last success before
    add(rt, sha="b", created=T0 + H, statuses=((ok, T0 + H + 30 * M, None),),
        extra={"commit": {"sha": "b", "date": "2026-03-01T00:00:00Z"}})  # lead 1h30 from the CI's commit date
    add(rt, sha="c", created=T0 + D, statuses=(("failure", T0 + D + 10 * M, None),))
    decide(rt, "deploy", sha="d", at=T0 + D)  # first seen by the gate: d's lead time is 2h
    add(rt, sha="d", created=T0 + D + H, statuses=((ok, T0 + D + 2 * H, None),))
    add(rt, sha="e", created=T0 + 2 * D - 5 * M, statuses=((ok, T0 + 2 * D, None),),
        extra={"extra_data": {"commit_timestamp": "2026-03-02T01:00:00+01:00"}})  # lead 1 day
    add(rt, sha="d", created=T0 + 2 * D + 20 * M, statuses=((ok, T0 + 2 * D + 30 * M, None),))  # rollback of e
    add(rt, sha="z", created=T0 + 3 * D, statuses=((ok, T0 + 3 * D, None),))  # redeploy of z
    add(rt, sha="f", created=T0 + 3 * D)  # pending
    add(rt, sha="g", created=T0 + 6 * D, statuses=(("failure", T0 + 6 * D + 5 * M, None),))
    add(rt, sha="h", created=T0 + 8 * D, statuses=((ok, T0 + 8 * D, None),))  # restores g after the period
    add(rt, "production", "o/other", sha="q", statuses=((ok, T0 + D, None),))  # another repository
    add(rt, "staging", sha="s", statuses=((ok, T0 + D, None),))  # another environment


def test_dora_from_the_record(rt: Any, client: Any, key: str) -> None:
    """The endpoint finds the rows the definitions need: baseline, redeploys, commit times, later restores."""
    dora_history(rt)
    status, got = get(client, key, DORA, repository="o/r", environment="production", since="2026-03-01T00:00:00Z",
                      until="2026-03-08T00:00:00Z")
    assert status == 200
    assert (got["repository"], got["environment"], got["period"], got["since"], got["until"]) == (
        "o/r", "production", None, "2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z")
    assert got["deployment_frequency"] == {"deployments": 5, "per_day": round(5 / 7, 4), "days_with_deployments": 4}
    assert got["lead_time_for_changes"] == {"count": 3, "median_seconds": 7200.0, "p90_seconds": 70560.0,
                                            "excluded": {"baseline": 0, "redeploys": 2, "without_commit_time": 0}}
    assert got["change_failure_rate"] == {"rate": round(3 / 7, 4), "failed": 2, "rolled_back": 1, "deployments": 7}
    # c: 1h50 until d; e: 30 min until the rollback; g: from T0+6d5m to h at T0+8d.
    assert got["time_to_restore"] == {"count": 3, "median_seconds": 6600.0, "p90_seconds": 139320.0,
                                      "unrestored": 0}
    assert [s["deployments"] for s in got["series"]] == [1, 1, 2, 1, 0, 0, 0]


def test_dora_scope_and_defaults(rt: Any, client: Any, key: str) -> None:
    """Without filters every environment counts; the default period is the last 30 days."""
    add(rt, statuses=(("success", utcnow() - 2 * D, None),))
    add(rt, "staging", statuses=(("success", utcnow() - D, None),))
    add(rt, statuses=(("success", utcnow() - 40 * D, None),))
    status, got = get(client, key, DORA)
    assert status == 200 and got["period"] == "30d" and len(got["series"]) == 31
    assert got["deployment_frequency"]["deployments"] == 2
    assert get(client, key, DORA, environment="staging")[1]["deployment_frequency"]["deployments"] == 1
    assert get(client, key, DORA, period="90d")[1]["deployment_frequency"]["deployments"] == 3


def test_dora_answers_are_reused_for_a_while(client: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dashboard polling every 5 seconds gets the figures computed once per 30 seconds per parameter set."""
    from app import queries

    calls: list[Any] = []
    real = queries.dora_metrics
    monkeypatch.setattr(queries, "dora_metrics", lambda *a: calls.append(a) or real(*a))
    first = [get(client, key, DORA, period="7d")[1] for _ in range(3)]
    get(client, key, DORA, period="24h")
    assert len(calls) == 2 and first[0] == first[2]


@pytest.mark.parametrize(("params", "field"), [
    ({"period": "2d"}, "period"), ({"since": "soon"}, "since"), ({"period": "7d", "until": "2026-03-01"}, "period"),
    ({"since": "2026-03-02", "until": "2026-03-01"}, "until"), ({"since": "2020-01-01", "until": "2026-01-01"}, "since"),
    ({"limit": "5"}, "limit"), ({"status": "success"}, "status"), ({"until": "0001-01-05"}, "until"),
])
def test_dora_refuses_bad_parameters(client: Any, key: str, params: dict[str, str], field: str) -> None:
    """422 naming the parameter."""
    status, body = get(client, key, DORA, **params)
    assert status == 422 and field in body["error"]["fields"], body


# --------------------------------------------------------------------------- keys and scopes


READ_PATHS = [(LIST, LIST), (f"{LIST}/1", ONE), (ENVS, ENVS), (DECISIONS, DECISIONS), (DORA, DORA)]


@pytest.mark.parametrize(("path", "template"), READ_PATHS)
def test_scopes(rt: Any, client: Any, path: str, template: str) -> None:
    """No key or a revoked one: 401; a deploy key: 403; read and admin keys, either header: 200."""
    add(rt)
    keys = {scope: create_key(rt.engine, scope, scope)[1] for scope in ("deploy", "read", "admin")}
    revoked_row, revoked = create_key(rt.engine, "old", "read")
    revoke_key(rt.engine, revoked_row.id)
    answers = [(None, 401), (revoked, 401), ("slw_nonsense", 401), (keys["deploy"], 403), (keys["read"], 200),
               (keys["admin"], 200)]
    for value, expected in answers:
        resp = client.get(path, headers=auth(value) if value else {})
        assert resp.status_code == expected, (value, resp.get_json())
        check_answer("GET", template, resp)
    resp = client.get(path, headers={"X-Workspace-Key": keys["read"]})
    assert resp.status_code == 200


def test_dashboard_session_reads_without_a_header(rt: Any, client: Any) -> None:
    """The dashboard's JavaScript calls the API with its session cookie; its polling is not rate limited."""
    row, _ = create_key(rt.engine, "viewer", "read", rate="2/minute")
    with client.session_transaction() as sess:
        sess["key_id"] = row.id
    assert all(client.get(LIST).status_code == 200 for _ in range(5))
    revoke_key(rt.engine, row.id)
    assert client.get(LIST).status_code == 401


def test_header_keys_are_rate_limited(rt: Any, client: Any) -> None:
    """A key over its own rate gets 429 with Retry-After."""
    _, limited = create_key(rt.engine, "slow", "read", rate="2/minute")
    answers = [client.get(ENVS, headers=auth(limited)) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    check_answer("GET", ENVS, answers[2])
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
