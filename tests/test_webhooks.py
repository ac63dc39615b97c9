"""POST /api/github/webhooks: every row of the SPEC's answer table, in both modes."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from sqlalchemy import func, select

from models import Delivery
from tests import factories
from tests.conftest import SECRET, Deliveries, drain, sign


def rows(rt) -> list[Delivery]:
    """Every stored delivery."""
    with rt.engine.connect() as conn:
        return list(conn.execute(select(Delivery).order_by(Delivery.id)))


def test_valid_delivery_is_stored_queued_and_processed(rt, deliveries: Deliveries) -> None:
    """A signed delivery is committed, answered 202 queued, and ends done."""
    resp = deliveries.post("installation", factories.installation("created"), guid="g-valid")
    assert resp.status_code == 202
    assert resp.get_json() == {"delivery": "g-valid", "state": "queued"}
    stored = rows(rt)
    assert [(r.guid, r.event, r.action, r.installation_id) for r in stored] == [
        ("g-valid", "installation", "created", factories.INSTALLATION_ID)]
    drain(rt)
    assert rows(rt)[0].state == "done"


def test_same_guid_is_a_duplicate_and_runs_once(rt, deliveries: Deliveries) -> None:
    """A redelivery with the same GUID answers 200 duplicate and stores nothing new."""
    payload = factories.installation("created")
    first = deliveries.post("installation", payload, guid="g-dup")
    drain(rt)
    second = deliveries.post("installation", payload, guid="g-dup")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.get_json() == {"delivery": "g-dup", "state": "done", "duplicate": True}
    assert len(rows(rt)) == 1 and rows(rt)[0].attempts == 1


def test_concurrent_copies_store_one_row(rt, client) -> None:
    """Eight copies of one delivery at the same moment: one 202, seven 200 duplicates, one row."""
    body = json.dumps(factories.installation("created")).encode()
    headers = {"X-GitHub-Event": "installation", "X-GitHub-Delivery": "g-race", "X-Hub-Signature-256": sign(body),
               "Content-Type": "application/json"}
    barrier, results = threading.Barrier(8), []

    def post() -> None:
        c = client.application.test_client()
        barrier.wait()
        results.append(c.post("/api/github/webhooks", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain(rt)
    assert sorted(results) == [200] * 7 + [202]
    assert len(rows(rt)) == 1 and rows(rt)[0].attempts == 1


def test_ping_answers_zen_and_is_stored(rt, deliveries: Deliveries) -> None:
    """ping: 200 with the zen, stored like any delivery."""
    resp = deliveries.post("ping", factories.ping("Speak like a human."), guid="g-ping")
    assert resp.status_code == 200
    assert resp.get_json()["zen"] == "Speak like a human."
    drain(rt)
    assert [(r.guid, r.state) for r in rows(rt)] == [("g-ping", "done")]


def test_replayed_body_under_new_guid_runs_nothing(rt, deliveries: Deliveries) -> None:
    """A captured body and signature sent under another GUID: 200 replay_of, nothing stored or run."""
    raw = json.dumps(factories.installation("created")).encode()
    deliveries.post("installation", raw=raw, guid="g-orig")
    resp = deliveries.post("installation", raw=raw, guid="g-replay")
    assert resp.status_code == 200
    assert resp.get_json() == {"delivery": "g-replay", "duplicate": True, "replay_of": "g-orig"}
    assert [r.guid for r in rows(rt)] == ["g-orig"]


@pytest.mark.parametrize("event,action", [("issues", "opened"), ("pull_request", "assigned"), ("star", "created")])
def test_events_slipway_does_not_act_on_are_stored_ignored(rt, deliveries: Deliveries, event: str, action: str) -> None:
    """Unhandled event or action: 202, stored as ignored with the reason, nothing queued."""
    resp = deliveries.post(event, factories.event(action))
    assert resp.status_code == 202
    assert resp.get_json()["state"] == "ignored"
    (row,) = rows(rt)
    assert row.state == "ignored" and f"{event}.{action}" in row.note


@pytest.mark.parametrize("case", ["missing", "wrong-secret", "sha1-only", "one-byte-changed", "no-guid", "truncated"])
def test_bad_signature_or_no_guid_is_401_and_stores_nothing(rt, client, case: str) -> None:
    """Tampered requests are refused before anything is stored or queued."""
    body = json.dumps(factories.installation("created")).encode()
    headers = {"X-GitHub-Event": "installation", "X-GitHub-Delivery": str(uuid.uuid4()),
               "Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    if case == "missing":
        del headers["X-Hub-Signature-256"]
    elif case == "wrong-secret":
        headers["X-Hub-Signature-256"] = sign(body, "not-the-secret")
    elif case == "sha1-only":
        del headers["X-Hub-Signature-256"]
        headers["X-Hub-Signature"] = "sha1=" + "0" * 40
    elif case == "one-byte-changed":
        body = body.replace(b"created", b"creates")
    elif case == "no-guid":
        del headers["X-GitHub-Delivery"]
    elif case == "truncated":
        headers["X-Hub-Signature-256"] = sign(body)[:-2]
    resp = client.post("/api/github/webhooks", data=body, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"
    assert rows(rt) == []
    assert rt.transport.depth() == 0


def test_rotated_secrets_both_verify(make_runtime) -> None:
    """WEBHOOK_SECRET=new,old accepts deliveries signed with either during a rotation."""
    from app import create_app

    rt = make_runtime("embedded", webhook_secret="new-secret,old-secret")
    client = create_app(rt=rt).test_client()
    for secret in ("new-secret", "old-secret"):
        assert Deliveries(client, secret).post("ping", factories.ping(secret)).status_code == 200
    assert Deliveries(client, "other").post("ping", factories.ping()).status_code == 401


def test_form_encoded_delivery_is_accepted(rt, deliveries: Deliveries) -> None:
    """application/x-www-form-urlencoded with the JSON in `payload`, verified over the raw form bytes."""
    resp = deliveries.post("installation", factories.installation("created"), form=True, guid="g-form")
    assert resp.status_code == 202
    drain(rt)
    (row,) = rows(rt)
    assert row.state == "done" and json.loads(row.body)["action"] == "created"


@pytest.mark.parametrize("raw,form,message", [
    (b"{not json", False, "not valid JSON"),
    (b"[1, 2, 3]", False, "JSON object"),
    (b"\xff\xfe\x00garbage", False, "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, False, "not valid JSON"),
    (b"{}", True, None),
])
def test_bad_bodies_are_400(rt, client, raw: bytes, form: bool, message: str | None) -> None:
    """Not JSON, not an object, or a form without `payload`: 400 with the reason, nothing stored."""
    body = b"something=else" if form else raw
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "g-bad", "X-Hub-Signature-256": sign(body),
               "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
    resp = client.post("/api/github/webhooks", data=body, headers=headers)
    assert resp.status_code == 400
    assert (message or "payload") in resp.get_json()["error"]["message"]
    assert rows(rt) == []


def test_body_over_25_mib_is_413_before_reading(rt, client) -> None:
    """A Content-Length over 25 MiB is refused from the header; the body is never read."""
    from io import BytesIO

    class Unreadable(BytesIO):
        """Fails the test if the server reads the body."""

        def read(self, *a):  # noqa: ANN001, ANN202
            raise AssertionError("body was read")

    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "g-big", "X-Hub-Signature-256": "sha256=" + "0" * 64,
               "Content-Type": "application/json"}
    resp = client.post("/api/github/webhooks", input_stream=Unreadable(), headers=headers,
                       environ_overrides={"CONTENT_LENGTH": str(25 * 1024 * 1024 + 1)})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"
    assert rows(rt) == []


def test_body_just_under_the_limit_is_accepted(rt, deliveries: Deliveries) -> None:
    """A 24 MiB legitimate delivery is stored."""
    payload = factories.event(None, padding="x" * (24 * 1024 * 1024))
    resp = deliveries.post("push", payload)
    assert resp.status_code == 202


def test_no_secret_configured_is_503(make_runtime) -> None:
    """Without WEBHOOK_SECRET the endpoint says so instead of accepting unverifiable deliveries."""
    from app import create_app

    rt = make_runtime("embedded", webhook_secret="")
    resp = Deliveries(create_app(rt=rt).test_client()).post("ping", factories.ping())
    assert resp.status_code == 503
    assert "WEBHOOK_SECRET" in resp.get_json()["error"]["message"]


def test_database_down_is_503(make_runtime) -> None:
    """A database that does not answer: 503, so GitHub records a failed delivery to redeliver."""
    from app import create_app

    rt = make_runtime("embedded", database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")
    resp = Deliveries(create_app(rt=rt).test_client()).post("ping", factories.ping())
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "unavailable"


def test_failed_delivery_redelivered_runs_again(rt, deliveries: Deliveries) -> None:
    """GitHub's redelivery of a delivery that failed here runs it once more."""
    from sqlalchemy import update

    payload = factories.installation("created")
    deliveries.post("installation", payload, guid="g-retry")
    drain(rt)
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(state="failed", error="boom"))
    resp = deliveries.post("installation", payload, guid="g-retry")
    assert resp.status_code == 200
    assert resp.get_json() == {"delivery": "g-retry", "state": "queued", "duplicate": True, "requeued": True}
    drain(rt)
    assert rows(rt)[0].state == "done"


def test_redis_down_still_accepts_and_sweeper_queues_later(make_runtime, redis_url: str) -> None:
    """Redis unreachable but the database fine: 202 with the row kept; the sweeper queues it when Redis is back."""
    from app import create_app
    from slipway.transport import RQTransport
    from workers.sweeper import sweep_once

    rt = make_runtime("production", transport=RQTransport("redis://127.0.0.1:9/0"))
    resp = Deliveries(create_app(rt=rt).test_client()).post("ping", factories.ping(), guid="g-noredis")
    assert resp.status_code == 200 and resp.get_json()["state"] == "received"
    with rt.engine.connect() as conn:
        assert conn.execute(select(Delivery.state)).scalar() == "received"
    rt.transport = RQTransport(redis_url)
    assert sweep_once(rt).queued == 1
    drain(rt)
    with rt.engine.connect() as conn:
        assert conn.execute(select(Delivery.state)).scalar() == "done"


def test_production_mode_enqueues_an_rq_job(make_runtime) -> None:
    """In production mode the 202 means a row in PostgreSQL and a job on the RQ queue."""
    from app import create_app

    rt = make_runtime("production")
    resp = Deliveries(create_app(rt=rt).test_client()).post("installation", factories.installation("created"))
    assert resp.status_code == 202
    assert rt.transport.depth() == 1
    job = rt.transport.queue.jobs[0]
    assert job.func_name == "workers.jobs.process_deliveries" and job.args == ([resp.get_json()["delivery"]],)
    with rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar() == 1


def test_web_processes_hand_over_to_rq_in_the_background(make_runtime) -> None:
    """Production web processes answer without waiting for Redis; the GUIDs reach RQ in batches."""
    from app import create_app
    from slipway.transport import JOB_BATCH, BackgroundEnqueuer
    from workers.inbox import mark_unqueued

    rt = make_runtime("production")
    inner = rt.transport
    rt.transport = BackgroundEnqueuer(inner, lambda guids: mark_unqueued(rt.engine, guids))
    poster = Deliveries(create_app(rt=rt).test_client())
    guids = [poster.post("ping", factories.ping(str(i))).get_json()["delivery"] for i in range(25)]
    assert rt.transport.flush()
    assert sorted(g for j in inner.queue.jobs for g in j.args[0]) == sorted(guids)
    assert all(len(j.args[0]) <= JOB_BATCH for j in inner.queue.jobs)
    drain(rt)
    assert {r.state for r in rows(rt)} == {"done"}


def test_background_hand_over_failure_leaves_rows_for_the_sweeper(make_runtime) -> None:
    """When Redis refuses the batch, the rows go back to 'received' and nothing is lost."""
    from app import create_app
    from slipway.transport import BackgroundEnqueuer, RQTransport
    from workers.inbox import mark_unqueued

    rt = make_runtime("production", transport=RQTransport("redis://127.0.0.1:9/0"))
    rt.transport = BackgroundEnqueuer(rt.transport, lambda guids: mark_unqueued(rt.engine, guids))
    resp = Deliveries(create_app(rt=rt).test_client()).post("ping", factories.ping())
    assert resp.status_code == 200
    assert rt.transport.flush()
    assert [r.state for r in rows(rt)] == ["received"]


def test_a_pooled_connection_killed_while_idle_is_replaced_once(rt, deliveries: Deliveries) -> None:
    """The database closed the pooled connection (a restart): the insert runs again on a fresh one, 202."""
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop the connection")
    import psycopg

    assert deliveries.post("installation", factories.installation("created"), guid="g-idle-1").status_code == 202
    url = rt.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:  # not from the pool: it must not kill itself
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname ="
                               " current_database() AND pid <> pg_backend_pid() AND state = 'idle'").fetchone()[0]
    assert killed >= 1
    resp = deliveries.post("installation", factories.installation("created", installation_id=77), guid="g-idle-2")
    assert resp.status_code == 202
    assert [r.guid for r in rows(rt)] == ["g-idle-1", "g-idle-2"]


def test_the_limiter_hook_and_the_cookie_session_stay_off_the_webhook(rt, client, deliveries: Deliveries) -> None:
    """No Flask-Limiter before_request hook on the webhook and health routes; no session without a cookie."""
    app = client.application
    limiter = app.extensions["slipway.limits.limiter"]

    def limiter_hooks(blueprint: str | None) -> list:
        return [f for f in app.before_request_funcs.get(blueprint, []) if getattr(f, "__self__", None) is limiter]

    assert limiter_hooks(None) == [] and limiter_hooks("webhooks") == [] and limiter_hooks("health") == []
    assert limiter_hooks("deploy_api") != []
    resp = deliveries.post("installation", factories.installation("created"), guid="g-nosession")
    assert resp.status_code == 202 and "Set-Cookie" not in resp.headers and "Cookie" not in resp.headers.get("Vary", "")


def test_background_hand_over_batches_a_burst_and_sends_a_lone_delivery_at_once() -> None:
    """A burst shares RQ jobs; a delivery that comes alone is not held back by the linger."""
    import threading
    import time

    from slipway.transport import BackgroundEnqueuer

    class Recorder:
        """Stands in for RQTransport: remembers each batch and when it came."""

        def __init__(self) -> None:
            self.batches: list[tuple[float, list[str]]] = []
            self.arrived = threading.Event()

        def enqueue(self, guids: list[str]) -> None:
            self.batches.append((time.monotonic(), list(guids)))
            self.arrived.set()

    inner = Recorder()
    enq = BackgroundEnqueuer(inner, lambda guids: None, linger=0.05)  # type: ignore[arg-type]
    enq.enqueue(["warm"])
    assert enq.flush()
    for i in range(20):  # a burst right after: the linger gathers it
        enq.enqueue([f"b{i}"])
        time.sleep(0.001)
    assert enq.flush()
    burst = [g for _, batch in inner.batches[1:] for g in batch]
    assert burst == [f"b{i}" for i in range(20)] and len(inner.batches) - 1 < 10
    time.sleep(0.3)  # quiet again: the next one goes at once
    inner.arrived.clear()
    sent = time.monotonic()
    enq.enqueue(["alone"])
    assert inner.arrived.wait(1)
    assert inner.batches[-1][1] == ["alone"] and inner.batches[-1][0] - sent < 0.04


def test_a_steady_trickle_is_handed_over_one_by_one_without_the_linger() -> None:
    """Twenty deliveries a second (a busy repository, the e2e benchmark's rate per web process) are not
    held back: the linger is for bursts in which several GUIDs would share an RQ job."""
    import threading
    import time

    from slipway.transport import BackgroundEnqueuer

    sent: list[tuple[float, list[str]]] = []
    arrived = threading.Event()

    class Recorder:
        def enqueue(self, guids: list[str]) -> None:
            sent.append((time.monotonic(), list(guids)))
            arrived.set()

    enq = BackgroundEnqueuer(Recorder(), lambda guids: None, linger=0.2)  # type: ignore[arg-type]
    delays = []
    for i in range(10):
        arrived.clear()
        put = time.monotonic()
        enq.enqueue([f"t{i}"])
        assert arrived.wait(1)
        delays.append(sent[-1][0] - put)
        time.sleep(0.05)
    assert [batch for _, batch in sent] == [[f"t{i}"] for i in range(10)]
    assert max(delays) < 0.1  # a linger would have held some for 0.2 s


@pytest.mark.parametrize("action", ["open\u0000ed", "\ud800", "x" * 500])
def test_text_the_database_cannot_hold_is_left_out_not_a_5xx(rt, client, action: str) -> None:
    """A NUL or a lone surrogate in `action` (valid JSON escapes) would fail the shared INSERT: stored as None."""
    body = json.dumps({"action": action, "repository": {"full_name": "o/r\u0000"}}).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "g-nul", "X-Hub-Signature-256": sign(body),
               "Content-Type": "application/json", "X-GitHub-Hook-ID": "12\u00003"}
    resp = client.post("/api/github/webhooks", data=body, headers=headers)
    assert resp.status_code == 202, resp.get_data()
    (row,) = rows(rt)
    assert row.action == (action[:64] if action.startswith("x") else None)
    assert row.repository is None and row.hook_id is None
    assert row.body == body


def test_other_methods_on_the_webhook_path_are_405(client) -> None:
    """The endpoint only takes POST; anything else is a JSON 405 naming it."""
    resp = client.get("/api/github/webhooks")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert resp.get_json()["error"]["code"] == "method_not_allowed"
