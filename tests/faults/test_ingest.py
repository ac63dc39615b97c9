"""Scenarios 5-10 and 17 (reliability.md section 6) against one real cluster: duplicates, redeliveries,
replays, tampering, multibyte and form bodies, oversized bodies, and secrets in logs.

One cluster (gunicorn with 2 web processes, 2 workers, LOG_LEVEL=debug so that the log check of
scenario 17 sees as much as possible) serves the whole module; the tests run in file order and the
last one greps every line those processes wrote.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from models import Delivery
from tests import factories
from tests.faults.conftest import (
    PUSHED_AT,
    Cluster,
    Posted,
    deployments_by_sha,
    duplicate_deployments,
    infrastructure,
    raw_http,
    report,
    rss_kib,
    sign,
    wait_for,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.postgres]

# GitHub's documented test vector (docs: "Validating webhook deliveries").
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(fault_template_db: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One cluster for the module; two webhook secrets configured (a rotation), one of them GitHub's vector's."""
    with infrastructure(tmp_path_factory.mktemp("ingest"), fault_template_db, LOG_LEVEL="debug") as c:
        c.env["WEBHOOK_SECRET"] = f"{c.secret},{VECTOR_SECRET}"
        c.extra_secrets.append(VECTOR_SECRET)
        c.start(workers=2)
        yield c


def push_body(cluster: Cluster, name: str, **fields: object) -> tuple[str, bytes]:
    """(sha, body) of a push of a new commit."""
    sha = factories.sha(f"{cluster.secret}-{name}")
    payload = factories.push(after=sha, pushed_at=PUSHED_AT)
    payload.update(fields)
    return sha, json.dumps(payload, ensure_ascii=False).encode()


def wait_state(cluster: Cluster, guid: str, state: str, timeout: float = 20) -> object:
    """Wait until a delivery is in `state`; return its row."""
    wait_for(lambda: (r := cluster.rows([guid]).get(guid)) is not None and r.state == state, timeout,
             0.2, f"delivery {guid} to be {state}")
    return cluster.rows([guid])[guid]


def calls_for(cluster: Cluster, sha: str, method: str = "*") -> list:
    """GitHub calls about one commit (deployment creation by `ref`, listing by `sha`)."""
    out = []
    for c in list(cluster.fake.calls):
        if method not in ("*", c.method):
            continue
        body = c.json if isinstance(c.json, dict) else {}
        if c.query.get("sha") == sha or body.get("ref") == sha or body.get("sha") == sha or sha in c.path:
            out.append(c)
    return out


def stored_count(cluster: Cluster) -> int:
    """Rows in the inbox."""
    with cluster.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Delivery)).scalar_one()


# ---------------------------------------------------------------- 5, 6, 7


@pytest.mark.timeout(90)
def test_same_delivery_twice_concurrently_and_five_times_in_a_row(cluster: Cluster) -> None:
    """Scenario 5 (full scale): the same delivery 2x concurrently and 5x sequentially.

    Pass: exactly 1 row and 1 run (attempts 1) per GUID, 1 GitHub deployment each; one 202, the rest
    200 marked duplicate.
    """
    sha_a, body_a = push_body(cluster, "concurrent")
    guid_a = str(uuid.uuid4())
    barrier = threading.Barrier(2)

    def racer(_: int) -> Posted:
        barrier.wait()
        return cluster.post_raw("push", body_a, guid=guid_a)

    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(racer, range(2)))
    sha_b, body_b = push_body(cluster, "sequential")
    guid_b = str(uuid.uuid4())
    sequential = [cluster.post_raw("push", body_b, guid=guid_b) for _ in range(5)]
    rows = cluster.wait_terminal([guid_a, guid_b], timeout=30)
    per_sha = deployments_by_sha(cluster.fake)
    dup = per_sha[sha_a] - 1 + per_sha[sha_b] - 1
    report("5-same-delivery-2x-concurrent-5x-sequential", sent=7, accepted=sum(200 <= p.status < 300 for p in
           [*concurrent, *sequential]), terminal=sum(r.state == "done" for r in rows.values()), duplicated=dup,
           lost=2 - len(rows), rows=len(rows), runs=sum(r.attempts for r in rows.values()))
    assert sorted(p.status for p in concurrent) == [200, 202], [(p.status, p.body) for p in concurrent]
    assert [p.status for p in sequential] == [202, 200, 200, 200, 200]
    assert all(p.body["duplicate"] is True for p in [*concurrent, *sequential] if p.status == 200)
    assert {g: (r.state, r.attempts) for g, r in rows.items()} == {guid_a: ("done", 1), guid_b: ("done", 1)}
    assert (per_sha[sha_a], per_sha[sha_b]) == (1, 1)
    assert len(calls_for(cluster, sha_a, "POST")) == len(calls_for(cluster, sha_b, "POST")) > 0


@pytest.mark.timeout(90)
def test_redelivery_after_failure_reruns_once_and_after_success_is_a_noop(cluster: Cluster) -> None:
    """Scenario 6 (full scale): same-GUID redelivery after a failure and after a success.

    The first run fails for good (GitHub answers 422 to the deployment). Pass: the redelivery of the
    failed one answers 200 `requeued`, runs exactly once more and succeeds (one deployment); the
    redelivery of the successful one answers 200 duplicate and makes 0 GitHub calls.
    """
    cluster.fake.fail("POST", r"/deployments$", status=422, times=1,
                      body={"message": "Validation Failed", "documentation_url": "https://docs.github.com"})
    first = cluster.push("fails-once")
    assert first.status == 202
    failed = wait_state(cluster, first.guid, "failed")
    assert "422" in (failed.error or "")
    again = cluster.redeliver(first)
    done = wait_state(cluster, first.guid, "done")
    creates = [c.status for c in calls_for(cluster, first.sha or "", "POST") if c.path.endswith("/deployments")]
    mark = len(cluster.fake.calls)
    after_success = cluster.redeliver(first)
    time.sleep(2.0)  # a job, if one had been queued, runs well within this
    late_calls = cluster.fake.calls[mark:]
    final = cluster.rows([first.guid])[first.guid]
    per_sha = deployments_by_sha(cluster.fake)[first.sha or ""]
    report("6-redelivery-after-failure-and-success", sent=3, accepted=3, terminal=int(final.state == "done"),
           duplicated=max(per_sha - 1, 0), lost=int(final.state != "done"), reruns=done.attempts,
           calls_after_success=len(late_calls))
    assert (again.status, again.body.get("duplicate"), again.body.get("requeued")) == (200, True, True)
    assert done.attempts == 1 and creates == [422, 201]
    assert per_sha == 1
    assert after_success.status == 200 and after_success.body["duplicate"] is True
    assert "requeued" not in after_success.body
    assert late_calls == [] and (final.state, final.attempts) == ("done", 1)


@pytest.mark.timeout(60)
def test_replayed_body_under_a_new_guid_has_no_effect_and_is_logged(cluster: Cluster) -> None:
    """Scenario 7 (full scale): a captured body and signature sent again under a new GUID.

    Pass: 200 `replay_of` the first GUID; no row and no job for the new GUID; 0 GitHub calls; the web
    process logs the replay with both GUIDs.
    """
    original = cluster.push("captured")
    wait_state(cluster, original.guid, "done")
    mark = len(cluster.fake.calls)
    replay = cluster.post_raw("push", original.raw, guid=str(uuid.uuid4()), signature=sign(original.raw, cluster.secret))
    time.sleep(1.5)
    stored = cluster.rows([replay.guid])
    logged = [d for d in cluster.log_lines("serve")
              if "replay" in d.get("message", "") and d.get("delivery") == replay.guid]
    report("7-replay-new-guid", sent=1, accepted=int(replay.status == 200), terminal=0, duplicated=len(stored),
           lost=0, side_effects=len(cluster.fake.calls) - mark, logged=len(logged))
    assert replay.status == 200 and replay.body == {"delivery": replay.guid, "duplicate": True,
                                                     "replay_of": original.guid}
    assert stored == {} and cluster.fake.calls[mark:] == []
    assert deployments_by_sha(cluster.fake)[original.sha or ""] == 1
    assert logged and logged[0].get("replay_of") == original.guid and logged[0]["level"] == "warning"


# ---------------------------------------------------------------- 8, 9, 10


def _headers(guid: str, signature: str | None, event: str = "push", **extra: str) -> dict[str, str]:
    hdrs = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "Content-Type": "application/json"}
    if signature is not None:
        hdrs["X-Hub-Signature-256"] = signature
    hdrs.update(extra)
    return hdrs


@pytest.mark.timeout(60)
def test_tampered_deliveries_are_refused_before_any_write(cluster: Cluster) -> None:
    """Scenario 8 (full scale) over a raw socket against gunicorn: missing header, SHA-1 only, wrong
    secret, a 1-byte change, and more; plus GitHub's documented test vector and the rotation list.

    Pass: every tampered delivery 401 with a JSON error, 0 rows, 0 jobs; the vector verifies (its body
    is not JSON, so 400 instead of 401); nothing compares secrets with ==.
    """
    _, body = push_body(cluster, "tamper")
    good = sign(body, cluster.secret)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    sha1 = "sha1=" + hmac.new(cluster.secret.encode(), body, hashlib.sha1).hexdigest()
    cases = {
        "no signature": (body, None, {}),
        "sha1 only": (body, None, {"X-Hub-Signature": sha1}),
        "sha1 in the sha256 header": (body, sha1, {}),
        "wrong secret": (body, sign(body, "not-the-secret"), {}),
        "one byte changed": (bytes(flipped), good, {}),
        "truncated signature": (body, good[:-1], {}),
        "signature of another body": (body, sign(b"{}", cluster.secret), {}),
        "empty signature": (body, "", {}),
        "prefix only": (body, "sha256=", {}),
        "upper-case prefix": (body, good.replace("sha256=", "SHA256="), {}),
        "non-hex digest": (body, "sha256=" + "z" * 64, {}),
        "two signatures": (body, f"{good},{good}", {}),
    }
    before = stored_count(cluster)
    answers = {}
    guids = []
    for name, (raw, signature, extra) in cases.items():
        guid = str(uuid.uuid4())
        guids.append(guid)
        answers[name] = raw_http(cluster.port, "POST", "/api/github/webhooks", _headers(guid, signature, **extra), raw)
    no_guid = {k: v for k, v in _headers("x", good).items() if k != "X-GitHub-Delivery"}
    answers["no delivery id"] = raw_http(cluster.port, "POST", "/api/github/webhooks", no_guid, body)
    vector = raw_http(cluster.port, "POST", "/api/github/webhooks",
                      _headers(str(uuid.uuid4()), VECTOR_SIGNATURE), VECTOR_BODY)
    vector_bad = raw_http(cluster.port, "POST", "/api/github/webhooks",
                          _headers(str(uuid.uuid4()), VECTOR_SIGNATURE[:-1] + "f"), VECTOR_BODY)
    time.sleep(0.5)
    after = stored_count(cluster)
    statuses = {name: a.status for name, a in answers.items()}
    report("8-tampering", sent=len(answers) + 2, accepted=sum(200 <= s < 300 for s in statuses.values()),
           terminal=0, duplicated=0, lost=0, refused_401=sum(s == 401 for s in statuses.values()),
           rows_written=after - before, vector=vector.status)
    assert statuses == {name: 401 for name in statuses}, statuses
    assert all(json.loads(a.body)["error"]["code"] == "unauthorized" for a in answers.values())
    assert after == before and cluster.rows(guids) == {}
    assert vector.status == 400 and b"not valid JSON" in vector.body, vector
    assert vector_bad.status == 401
    _assert_no_equality_on_secrets()


def _assert_no_equality_on_secrets() -> None:
    """The signature check compares digests in constant time: no ==/!= between a signature and a digest."""
    import githubkit.webhooks

    import app.signatures

    assert "compare_digest" in inspect.getsource(githubkit.webhooks.verify)
    tree = ast.parse(Path(app.signatures.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            operands = [node.left, *node.comparators]
            plain = [o for o in operands if not (isinstance(o, ast.Call) or isinstance(o, ast.Constant)
                                                 or isinstance(o, ast.BinOp))]
            assert not plain, f"app/signatures.py:{node.lineno} compares a value with == or !="


MULTIBYTE = ["🚀 déploiement réussi", "日本語のコミットメッセージ", "עברית וערבית: مرحبا", "Ünïcödé ß ø å",
             "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕸𝖆𝖙𝖍", "zero\u200bwidth\u200djoiner", "👩‍👩‍👧‍👦🏳️‍🌈", "中文提交 🐛 修复",
             "Ελληνικά και Русский", "emoji at the end 🎉"]


@pytest.mark.timeout(90)
def test_multibyte_and_form_encoded_deliveries_verify_over_raw_bytes(cluster: Cluster) -> None:
    """Scenario 9 (full scale): 50 pushes whose bodies carry raw UTF-8 (emoji, CJK, RTL, joiners, astral
    planes), plus form-encoded deliveries (ASCII and multibyte).

    Pass: 50/50 verify and are stored byte for byte; the form-encoded ones are processed; never a 5xx;
    each push ends `done` with one deployment.
    """
    posted: list[Posted] = []
    for n in range(50):
        text = MULTIBYTE[n % len(MULTIBYTE)] * (1 + n % 4)
        sha, body = push_body(cluster, f"multibyte-{n}", pusher={"name": text, "email": "ü@example.com"},
                              head_commit={"id": "", "message": text, "timestamp": "2026-01-01T10:00:00Z"})
        body = body.replace(b'"id": ""', f'"id": "{sha}"'.encode(), 1)
        p = cluster.post_raw("push", body)
        p.sha = sha
        posted.append(p)
    forms: list[Posted] = []
    for n, text in enumerate(["plain ascii", "formulaire 🚀 日本語"]):
        sha = factories.sha(f"{cluster.secret}-form-{n}")
        payload = factories.push(after=sha, pushed_at=PUSHED_AT)
        payload["head_commit"]["message"] = text
        body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()
        p = cluster.post_raw("push", body, content_type="application/x-www-form-urlencoded")
        p.sha = sha
        forms.append(p)
    everything = [*posted, *forms]
    rows = cluster.wait_terminal([p.guid for p in everything], timeout=45)
    with cluster.engine.connect() as conn:
        bodies = dict(conn.execute(select(Delivery.guid, Delivery.body).where(
            Delivery.guid.in_([p.guid for p in posted]))).all())
    per_sha = deployments_by_sha(cluster.fake)
    report("9-multibyte-and-form", sent=len(everything), accepted=sum(p.status == 202 for p in everything),
           terminal=sum(r.state == "done" for r in rows.values()), duplicated=duplicate_deployments(cluster.fake),
           lost=sum(per_sha[p.sha or ""] != 1 for p in everything), server_errors=sum(p.status >= 500 for p in everything))
    assert [p.status for p in everything] == [202] * len(everything), \
        [(p.status, p.body) for p in everything if p.status != 202][:3]
    assert all(bytes(bodies[p.guid]) == p.raw for p in posted)
    assert all(r.state == "done" for r in rows.values()), [(r.state, r.error) for r in rows.values() if r.state != "done"]
    assert all(per_sha[p.sha or ""] == 1 for p in everything)


def _web_rss(cluster: Cluster) -> int:
    """KiB resident in the web processes (gunicorn master and its workers)."""
    assert cluster.web is not None
    return sum(rss_kib(pid) for pid in [cluster.web.pid, *cluster.web_pids()])


@pytest.mark.timeout(120)
def test_oversized_bodies_are_413_before_reading_and_memory_stays_flat(cluster: Cluster) -> None:
    """Scenario 10 (full scale) over a raw socket: 26 MiB to the GitHub route with Content-Length and
    chunked without it, 2 MiB to the deploy route, and a legitimate 24 MB push.

    Pass: with Content-Length, 413 before a single body byte is sent; chunked, 413 once 25 MiB + 1 byte
    were read; 0 DB writes; RSS of the web processes grows < 50 MB over the oversized requests;
    the 24 MB push is accepted and processed.
    """
    from app.apikeys import create_key

    _, key = create_key(cluster.engine, "fault-deploy", "deploy")
    cluster.extra_secrets.append(key)
    before_rows = stored_count(cluster)
    rss_before = _web_rss(cluster)
    sized = [raw_http(cluster.port, "POST", "/api/github/webhooks", _headers(str(uuid.uuid4()), "sha256=" + "0" * 64),
                      body_size=26 * MIB, wait_first=3.0) for _ in range(2)]
    chunked = [raw_http(cluster.port, "POST", "/api/github/webhooks", _headers(str(uuid.uuid4()), "sha256=" + "0" * 64),
                        body_size=26 * MIB, chunked=True) for _ in range(2)]
    deploy = raw_http(cluster.port, "POST", "/api/v1/deployments",
                      {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                      body_size=2 * MIB, wait_first=3.0)
    deploy_chunked = raw_http(cluster.port, "POST", "/api/v1/deployments",
                              {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                              body_size=2 * MIB, chunked=True)
    time.sleep(0.5)
    rss_after = _web_rss(cluster)
    rows_written = stored_count(cluster) - before_rows
    sha, body = push_body(cluster, "24mb", padding="p" * (24 * 1000 * 1000))
    big = cluster.post_raw("push", body, timeout=60)
    big.sha = sha
    row = cluster.wait_terminal([big.guid], timeout=60).get(big.guid)
    rss_big = _web_rss(cluster)
    growth_mb = (rss_after - rss_before) / 1024
    report("10-oversized", sent=7, accepted=int(big.status == 202), terminal=int(row is not None and row.state == "done"),
           duplicated=0, lost=int(row is None or row.state != "done"),
           statuses="/".join(str(a.status) for a in [*sized, *chunked, deploy, deploy_chunked]),
           rss_growth_mb=f"{growth_mb:.1f}", rss_after_24mb_mb=f"{(rss_big - rss_before) / 1024:.1f}",
           chunked_bytes_read_mib=f"{max(a.sent for a in chunked) / MIB:.1f}")
    assert [a.status for a in sized] == [413, 413] and all(a.sent == 0 for a in sized), sized
    # Chunked: app/bodies.read_body counts past the limit (werkzeug alone would cut the body silently).
    assert [a.status for a in chunked] == [413, 413], chunked
    assert all(json.loads(a.body)["error"]["code"] == "payload_too_large" for a in sized)
    assert deploy.status == 413 and deploy.sent == 0, deploy
    assert deploy_chunked.status == 413, deploy_chunked
    assert rows_written == 0
    assert growth_mb < 50, f"web processes grew by {growth_mb:.1f} MB"
    assert big.status == 202, big.body
    assert row is not None and row.state == "done", row
    assert deployments_by_sha(cluster.fake)[sha] == 1


# ---------------------------------------------------------------- 17


@pytest.mark.timeout(30)
def test_no_secret_in_any_log_line(cluster: Cluster) -> None:
    """Scenario 17: every line the module's processes wrote (debug level; web, workers; tampered
    signatures, token mints, JWTs, a deploy API key in use, failures with GitHub's answers).

    Pass: 0 lines with the webhook secrets, `gh[pousr]_`, `eyJ`, `PRIVATE KEY`, `slw_` or the API key.
    """
    lines = sum(len(p.log.read_text("utf-8", "replace").splitlines()) for p in cluster.procs if p.log.exists())
    leaks = cluster.leaks()
    minted = sum(cluster.fake.token_mints.values())
    report("17-secrets-in-logs", sent=0, accepted=0, terminal=0, duplicated=0, lost=0, log_lines=lines,
           leaks=len(leaks), tokens_minted=minted)
    assert lines > 100 and minted >= 1  # the processes did log, and did use secrets worth leaking
    assert len(cluster.extra_secrets) >= 2  # the vector secret and an API key are grepped for too
    assert leaks == [], "\n".join(leaks[:10])
