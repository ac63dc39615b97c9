"""Scenarios 11, 12 and 13 (reliability.md section 6): GitHub rate limits, server errors, timeouts,
"created then the connection dropped", and installation tokens expiring under parallel jobs.

One cluster (3 workers, GITHUB_TIMEOUT=1.5 s, MAX_ATTEMPTS=4) serves the module. The fake GitHub tags
every call an injected fault hit, so each wait can be checked against the fault that caused it: the
next call about the same commit must come no earlier than `retry-after`, the rate-limit reset, 60 s
(a rate limit without either), or the first backoff step (5 s; plus the client timeout for a timeout).
Waits longer than a few seconds (60 s, the second backoff step of 30 s) are checked on the row's
`next_attempt_at` and then cut short by moving `next_attempt_at` to now, as if the time had passed.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import timezone
from typing import Any

import pytest
from sqlalchemy import update

from models import Delivery
from models.base import utcnow
from tests import factories
from tests.faults.conftest import (
    TERMINAL,
    Cluster,
    Posted,
    deployments_by_sha,
    infrastructure,
    push_outcome,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.postgres]

TIMEOUT = 1.5
FIRST_BACKOFF = 5.0  # workers.inbox.BACKOFF_SECONDS[0]
TOLERANCE = 0.5


@pytest.fixture(scope="module")
def cluster(fault_template_db: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One cluster for the module."""
    with infrastructure(tmp_path_factory.mktemp("github"), fault_template_db, GITHUB_TIMEOUT=TIMEOUT,
                        MAX_ATTEMPTS=4) as c:
        c.start(workers=3)
        yield c


def stream(cluster: Cluster, n: int, seconds: float, name: str) -> list[Posted]:
    """POST n pushes evenly over `seconds`."""
    posted, started = [], time.monotonic()
    for i in range(n):
        posted.append(cluster.push(f"{name}-{i}"))
        time.sleep(max(0.0, started + (i + 1) * seconds / n - time.monotonic()))
    return posted


def sha_of(fake: Any, call: Any) -> str | None:
    """The commit a GitHub call is about (deployment creation, listing, statuses, commit statuses)."""
    body = call.json if isinstance(call.json, dict) else {}
    if isinstance(body.get("ref"), str) and len(body["ref"]) == 40:
        return body["ref"]
    if call.query.get("sha"):
        return call.query["sha"]
    if m := re.search(r"/statuses/([0-9a-f]{40})$", call.path):
        return m.group(1)
    if m := re.search(r"/deployments/(\d+)(?:/statuses)?$", call.path):
        with fake._lock:
            for dep in fake.deployments.get(factories.REPO, []):
                if dep["id"] == int(m.group(1)):
                    return dep["sha"]
    return None


def required_wait(call: Any) -> float:
    """How long Slipway must leave a commit alone after this faulted call."""
    fault = call.fault
    if "retry-after" in fault.headers:
        return float(fault.headers["retry-after"])
    if "x-ratelimit-reset" in fault.headers:
        return max(0.0, int(fault.headers["x-ratelimit-reset"]) - call.wall)
    if fault.status in (403, 429):
        return 60.0
    return FIRST_BACKOFF + (TIMEOUT if fault.delay else 0.0)


def finish(cluster: Cluster, posted: list[Posted], timeout: float) -> tuple[dict, dict[str, float]]:
    """Wait for every delivery to end; long waits are checked, then cut short. Returns (rows, cut)."""
    guids = [p.guid for p in posted if 200 <= p.status < 300]
    sha = {p.guid: p.sha for p in posted}
    cut: dict[str, float] = {}  # sha -> monotonic time its wait was cut short
    deadline = time.monotonic() + timeout
    rows: dict = {}
    while time.monotonic() < deadline:
        rows = cluster.rows(guids)
        if len(rows) == len(guids) and all(r.state in TERMINAL for r in rows.values()):
            break
        now = utcnow()
        for guid, r in rows.items():
            if r.state == "queued" and r.next_attempt_at is not None and \
                    (r.next_attempt_at - now).total_seconds() > FIRST_BACKOFF + 2:
                faulted = [c for c in list(cluster.fake.calls) if c.fault is not None and sha_of(cluster.fake, c) == sha[guid]]
                due = r.next_attempt_at.replace(tzinfo=r.next_attempt_at.tzinfo or timezone.utc).timestamp()
                need = required_wait(faulted[-1]) if faulted else 0.0
                assert faulted and due >= faulted[-1].wall + min(need, 30.0) - TOLERANCE, (guid, r.error, due, need)
                with cluster.engine.begin() as conn:
                    conn.execute(update(Delivery).where(Delivery.guid == guid, Delivery.state == "queued")
                                 .values(next_attempt_at=utcnow()))
                cut[sha[guid] or ""] = time.monotonic()
        time.sleep(0.5)
    return rows, cut


def early_retries(cluster: Cluster, posted: list[Posted], cut: dict[str, float]) -> tuple[int, list[str]]:
    """(faulted calls checked, calls that came back about the same commit before the wait was over)."""
    shas = {p.sha for p in posted}
    by_sha: dict[str, list] = defaultdict(list)
    for c in list(cluster.fake.calls):
        s = sha_of(cluster.fake, c)
        if s in shas:
            by_sha[s].append(c)
    checked, early = 0, []
    for s, calls in by_sha.items():
        for i, c in enumerate(calls):
            if c.fault is None or i + 1 >= len(calls):
                continue
            nxt = calls[i + 1]
            if s in cut and nxt.at >= cut[s]:
                continue  # the test moved next_attempt_at (after checking it)
            checked += 1
            need = required_wait(c)
            if nxt.at - c.at < need - TOLERANCE:
                early.append(f"{s[:7]}: {c.method} {c.path} -> {c.fault.status} then {nxt.method} {nxt.path} "
                             f"after {nxt.at - c.at:.2f} s (must wait {need:.1f} s)")
    return checked, early


@pytest.mark.timeout(120)
def test_rate_limits_are_waited_out_by_requeueing(cluster: Cluster) -> None:
    """Scenario 11, scaled down from retry-after 30 s / 60 s: during a stream of 30 pushes, GitHub answers
    secondary rate limits (403 and 429 with retry-after 3-4 s, on POST and GET), primary rate limits (403,
    remaining 0, reset in 5 s) and 429 without any header (Slipway must wait 60 s: checked on the row).

    Pass: no call about a rate-limited commit before its wait is over; every push `done` in <= 5 attempts
    with exactly one deployment (0 duplicates).
    """
    fake = cluster.fake
    fake.fail_secondary_rate_limit("POST", r"/deployments$", retry_after=3, status=403, times=3)
    fake.fail_secondary_rate_limit("POST", r"/deployments$", retry_after=3, status=429, times=3)
    fake.fail_primary_rate_limit("POST", r"/deployments$", reset_in=5, times=3)
    fake.fail("POST", r"/deployments$", 429, times=2, body={"message": "API rate limit exceeded"})
    fake.fail_secondary_rate_limit("GET", r"/deployments$", retry_after=4, status=403, times=2)
    posted = stream(cluster, 30, 3.0, "ratelimit")
    rows, cut = finish(cluster, posted, timeout=60)
    fake.clear_faults()
    checked, early = early_retries(cluster, posted, cut)
    hits = sum(1 for c in fake.calls if c.fault is not None)
    summary, rows = push_outcome(cluster, posted, "11-rate-limits", rate_limited=hits, waits_checked=checked,
                                 early_retries=len(early), waits_cut_short=len(cut),
                                 max_attempts=max(r.attempts for r in rows.values()))
    assert hits == 13
    assert early == [], "\n".join(early)
    assert summary.lost == 0 and summary.duplicated == 0
    assert all(r.state == "done" and r.attempts <= 5 for r in rows.values()), \
        [(r.state, r.attempts, r.error) for r in rows.values() if r.state != "done" or r.attempts > 5]
    assert len(cut) >= 2  # the two 429s without a header waited (were scheduled) >= 60 s


@pytest.mark.timeout(120)
def test_server_errors_timeouts_and_dropped_connections_make_one_deployment_each(cluster: Cluster) -> None:
    """Scenario 12, scaled down to a stream of 30 pushes while GitHub answers 500/502/503 (POST and GET),
    times out (3 s answers, client timeout 1.5 s: the deployment is created after the client gave up), and
    creates deployments and statuses then drops the connection without an answer; then one push against
    a GitHub that always answers 500.

    Pass: backoff (no call about the commit within 5 s of the failure); every push of the stream `done`
    with exactly one deployment and one `queued` status; the always-500 one `failed` after MAX_ATTEMPTS=4
    with the error recorded, and no deployment.
    """
    fake = cluster.fake
    fake.fail("POST", r"/deployments$", 500, times=3)
    fake.fail("POST", r"/deployments$", 502, times=2)
    fake.fail("GET", r"/deployments$", 502, times=2)
    fake.fail("POST", r"/deployments$", delay=3.0, times=2)
    fake.fail("POST", r"/deployments$", drop=True, times=3)
    fake.fail("POST", r"/deployments/\d+/statuses$", drop=True, times=2)
    fake.fail("POST", r"/statuses/[0-9a-f]{40}$", 503, times=2)
    posted = stream(cluster, 30, 3.0, "errors")
    rows, cut = finish(cluster, posted, timeout=60)
    fake.clear_faults()
    checked, early = early_retries(cluster, posted, cut)
    hits = sum(1 for c in fake.calls if c.fault is not None and sha_of(fake, c) in {p.sha for p in posted})
    with fake._lock:
        mine = [d for d in fake.deployments[factories.REPO] if d["sha"] in {p.sha for p in posted}]
        queued = [sum(s["state"] == "queued" for s in fake.deployment_statuses[d["id"]]) for d in mine]
    # then GitHub never recovers for one push
    fake.fail("POST", r"/deployments$", 500, times=None)
    doomed = cluster.push("always-500")
    end, _ = finish(cluster, [doomed], timeout=40)
    fake.clear_faults()
    row = end.get(doomed.guid)
    summary, rows = push_outcome(cluster, posted, "12-server-errors-timeouts-drops", faults_hit=hits,
                                 waits_checked=checked, early_retries=len(early),
                                 gave_up=f"{row.state}@{row.attempts}" if row else "none")
    assert hits >= 14
    assert early == [], "\n".join(early)
    assert summary.lost == 0 and summary.duplicated == 0
    assert all(r.state == "done" and r.attempts <= 5 for r in rows.values()), \
        [(r.state, r.attempts, r.error) for r in rows.values() if r.state != "done" or r.attempts > 5]
    assert queued == [1] * len(posted), queued
    assert row is not None and (row.state, row.attempts) == ("failed", 4), row
    assert "gave up after 4 attempts" in row.error and "500" in row.error
    assert deployments_by_sha(fake)[doomed.sha or ""] == 0


@pytest.mark.timeout(90)
def test_expiring_installation_tokens_are_minted_once_per_refresh(cluster: Cluster) -> None:
    """Scenario 13, scaled down from "token older than 60 min, 50 parallel jobs": tokens that GitHub
    revokes early (`expire_tokens()`, twice, while 3 workers run jobs in parallel) and tokens that live
    305 s (Slipway refreshes 300 s before expiry, so each is fresh for 5 s) during 60 pushes over 12 s,
    with 20 ms of GitHub latency so that calls overlap.

    Pass: no mint while the previous token was still good (<= 1 mint per installation per refresh);
    0 jobs fail with 401 (all `done` at the first attempt); one deployment per push.
    """
    fake = cluster.fake
    fake.token_ttl, fake.latency = 305, 0.02
    fresh_for = fake.token_ttl - 300
    start = time.monotonic()
    expiries = [time.monotonic()]
    fake.expire_tokens()
    posted = []
    try:
        for half in range(2):
            posted += stream(cluster, 30, 6.0, f"tokens-{half}")
            if half == 0:
                expiries.append(time.monotonic())
                fake.expire_tokens()
        rows, _ = finish(cluster, posted, timeout=45)
    finally:
        fake.token_ttl, fake.latency = 3600, 0.0
    mints = [c for c in list(fake.calls) if c.method == "POST" and c.path.endswith("/access_tokens") and c.at >= start]
    refused = [c for c in list(fake.calls) if c.status == 401 and c.at >= start]
    # The fake's expires_at is a whole second (int(time.time()) + ttl): a token is fresh for 4 to 5 s.
    good_for = fresh_for - 1.0 - TOLERANCE
    redundant, natural = [], 0
    for prev, mint in zip(mints, mints[1:]):
        revoked = any(prev.at <= e <= mint.at for e in expiries)
        if not revoked and mint.at < prev.at + good_for:
            redundant.append(f"minted {mint.at - prev.at:.2f} s after the previous one, which was still good")
        natural += not revoked and mint.at >= prev.at + good_for
    gaps = "/".join(f"{b.at - a.at:.1f}" for a, b in zip(mints, mints[1:]))
    summary, rows = push_outcome(cluster, posted, "13-token-expiry", mints=len(mints), revocations=len(expiries),
                                 natural_refreshes=natural, mint_gaps_s=gaps,
                                 redundant_mints=len(redundant), answered_401=len(refused))
    assert refused and natural >= 1, "no token was refused or went stale: the scenario tested nothing"
    assert redundant == [], redundant
    assert summary.lost == 0 and summary.duplicated == 0
    assert all((r.state, r.attempts) == ("done", 1) for r in rows.values()), \
        [(r.state, r.attempts, r.error) for r in rows.values() if (r.state, r.attempts) != ("done", 1)]
