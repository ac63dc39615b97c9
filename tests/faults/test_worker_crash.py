"""Scenario 1 (reliability.md section 6): workers SIGKILLed at random while deliveries stream in."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import TERMINAL, push_outcome

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.postgres]

DELIVERIES = 300
WORKERS = 3
KILL_EVERY = 2.5
STREAM_SECONDS = 20.0


@pytest.mark.timeout(150)
def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(make_cluster) -> None:  # noqa: ANN001
    """Scaled down from 1,000 deliveries / a kill every 10 s / 15 min to 300 deliveries over ~20 s, 3 workers,
    a random worker SIGKILLed every 2.5 s and replaced at once (JOB_LEASE_SECONDS=8 instead of 120).

    Pass: every accepted delivery terminal (`done`) within 60 s of the last POST, exactly one GitHub
    deployment per push (0 duplicates by Slipway key and by commit), 0 rows left non-terminal.
    """
    cluster = make_cluster().start(workers=WORKERS)
    rnd = random.Random(1)
    stop = threading.Event()
    kills: list[float] = []

    def killer() -> None:
        while not stop.wait(KILL_EVERY):
            live = cluster.live_workers()
            if live:
                rnd.choice(live).kill()
                kills.append(time.monotonic())
            while len(cluster.live_workers()) < WORKERS:
                cluster.start_worker()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            futures = []
            for n in range(DELIVERIES):
                futures.append(pool.submit(cluster.push, n))
                time.sleep(max(0.0, started + (n + 1) * STREAM_SECONDS / DELIVERIES - time.monotonic()))
            posted = [f.result() for f in futures]
        # keep killing while the backlog drains, for one more round
        time.sleep(KILL_EVERY)
    finally:
        stop.set()
        thread.join(10)
    while len(cluster.live_workers()) < WORKERS:
        cluster.start_worker()
    accepted = [p for p in posted if 200 <= p.status < 300]
    waited = time.monotonic()
    rows = cluster.wait_terminal([p.guid for p in accepted], timeout=60)
    drained = time.monotonic() - waited
    summary, rows = push_outcome(cluster, posted, "1-worker-sigkill", kills=len(kills),
                                 drain_s=f"{drained:.1f}")
    assert len(accepted) == DELIVERIES, [p for p in posted if p not in accepted][:5]
    assert summary.duplicated == 0
    assert summary.lost == 0, {g: (r.state, r.error) for g, r in rows.items() if r.state not in TERMINAL}
    assert {r.state for r in rows.values()} == {"done"}, [(r.state, r.error) for r in rows.values() if r.state != "done"][:5]
    stuck = [g for g, r in cluster.rows().items() if r.state not in TERMINAL]
    assert stuck == []
    assert len(kills) >= 5
    assert cluster.leaks() == []


@pytest.mark.timeout(120)
def test_sigkilled_web_processes_lose_no_accepted_delivery(make_cluster) -> None:  # noqa: ANN001
    """Scenario 1 for the web side (not in reliability.md's table): web processes answer 202 once the row is
    committed and hand the GUID to RQ from a background thread, so a web process killed between the two
    leaves a `queued` row that only the sweeper can find. 150 deliveries over ~12 s, 4 in parallel, a random
    gunicorn worker SIGKILLed every 1.5 s (gunicorn starts a new one); POSTs that got no answer are
    redelivered by GitHub (same GUID and body), as the deliveries page lets one do.

    Pass: every delivery accepted (after redelivery), all `done`, exactly one deployment each.
    """
    cluster = make_cluster().start(workers=2)
    rnd = random.Random(2)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        while not stop.wait(1.5):
            pids = cluster.web_pids()
            if pids:
                pid = rnd.choice(pids)
                try:
                    __import__("os").kill(pid, __import__("signal").SIGKILL)
                    kills.append(pid)
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            futures = []
            for n in range(150):
                futures.append(pool.submit(cluster.push, n))
                time.sleep(max(0.0, started + (n + 1) * 12.0 / 150 - time.monotonic()))
            posted = [f.result() for f in futures]
    finally:
        stop.set()
        thread.join(10)
    unanswered = [p for p in posted if not 200 <= p.status < 300]
    final = {p.guid: p for p in posted}
    for p in unanswered:
        final[p.guid] = cluster.redeliver(p)
    rows = cluster.wait_terminal(list(final), timeout=45)
    summary, rows = push_outcome(cluster, list(final.values()), "1b-web-sigkill", kills=len(kills),
                                 unanswered_then_redelivered=len(unanswered))
    assert len(kills) >= 5
    assert all(200 <= p.status < 300 for p in final.values()), [(p.status, p.body) for p in final.values()][:3]
    assert summary.duplicated == 0
    assert summary.lost == 0, {g: (r.state, r.error) for g, r in rows.items() if r.state not in TERMINAL}
    assert all(r.state == "done" for r in rows.values())
    assert cluster.leaks() == []
