"""Scenarios 2 and 3 (reliability.md section 6): Redis SIGKILLed mid-run, and Redis down during a burst.

The database is the source of truth: deliveries answered while Redis is down are stored as `received`,
RQ jobs lost with Redis (AOF everysec loses up to a second) are found again by the sweeper, and claims
keep duplicated jobs harmless.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import TERMINAL, push_outcome, wait_for

pytestmark = [pytest.mark.fault]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_redis_sigkilled_mid_run_loses_nothing(make_cluster, redis_server) -> None:  # noqa: ANN001
    """Scaled down from "restart after 20 s, all terminal within 10 min" to 80 deliveries over ~10 s with
    Redis SIGKILLed ~3 s in and restarted 4 s later (same port and AOF directory); REQUEUE_AFTER_SECONDS=8.

    Pass: every POST answered 2xx; every accepted delivery `done` within 60 s, via the sweeper for what
    Redis lost; exactly one GitHub deployment per push (0 duplicates); both `slipway worker` processes
    survive the outage with no supervisor (they run the sweeper; a worker started by hand or by systemd
    without Restart= must not exit when Redis goes away) and still stop at once on SIGTERM.
    """
    cluster = make_cluster().start(workers=2)
    deliveries, stream_s = 80, 10.0
    started = time.monotonic()
    outage: dict[str, float] = {}

    def chaos() -> None:
        time.sleep(3.0)
        redis_server.kill()
        outage["down"] = time.monotonic()
        time.sleep(4.0)
        redis_server.start()
        outage["up"] = time.monotonic()

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    with ThreadPoolExecutor(3) as pool:
        futures = []
        for n in range(deliveries):
            futures.append(pool.submit(cluster.push, n))
            time.sleep(max(0.0, started + (n + 1) * stream_s / deliveries - time.monotonic()))
        posted = [f.result() for f in futures]
    thread.join(15)
    accepted = [p for p in posted if 200 <= p.status < 300]
    rows = cluster.wait_terminal([p.guid for p in accepted], timeout=60)
    recovered = time.monotonic() - outage["up"]
    received = sum(1 for p in accepted if outage["down"] <= p.at <= outage["up"])
    alive = len(cluster.live_workers())
    summary, rows = push_outcome(cluster, posted, "2-redis-sigkill", answered_while_down=received,
                                 workers_alive=f"{alive}/2", recovered_s=f"{recovered:.1f}")
    assert alive == 2, "a worker exited when Redis went away:\n" + cluster.tail(cluster.workers[0])
    assert len(accepted) == deliveries, [(p.status, p.body) for p in posted if p not in accepted][:5]
    assert received > 0, "no delivery arrived while Redis was down: the scenario did not test anything"
    assert summary.duplicated == 0
    assert summary.lost == 0, {g: (r.state, r.error) for g, r in rows.items() if r.state not in TERMINAL}
    assert all(r.state == "done" for r in rows.values()), \
        [(r.state, r.error) for r in rows.values() if r.state != "done"][:5]
    assert cluster.leaks() == []
    worker = cluster.workers[0]
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(8) == 0, "SIGTERM did not stop the worker cleanly"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_redis_down_during_a_burst_answers_fast_and_catches_up(make_cluster, redis_server) -> None:  # noqa: ANN001
    """Scaled down from "Redis down 60 s during 300 POSTs" to Redis down ~6 s during a burst of 60 POSTs
    (8 in parallel).

    Pass: 60/60 answered 2xx, each in < 1 s (stored; the hand-over to RQ fails and the sweeper queues them); after Redis is back, all terminal
    (`done`, one deployment each) within 45 s, with the same worker processes.
    """
    cluster = make_cluster().start(workers=2)
    wait_for(lambda: len(cluster.live_workers()) == 2, 10, what="workers")
    redis_server.kill()
    down = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        posted = list(pool.map(cluster.push, range(60)))
    burst_s = time.monotonic() - down
    time.sleep(max(0.0, 6.0 - burst_s))
    redis_server.start()
    up = time.monotonic()
    accepted = [p for p in posted if 200 <= p.status < 300]
    rows = cluster.wait_terminal([p.guid for p in accepted], timeout=45)
    recovered = time.monotonic() - up
    slowest = max(p.seconds for p in posted)
    summary, rows = push_outcome(cluster, posted, "3-redis-down-burst", slowest_answer_s=f"{slowest:.3f}",
                                 workers_alive=f"{len(cluster.live_workers())}/2", recovered_s=f"{recovered:.1f}")
    assert len(accepted) == 60, [(p.status, p.body) for p in posted if p not in accepted][:5]
    assert slowest < 1.0, sorted(p.seconds for p in posted)[-5:]
    assert {p.body["state"] for p in accepted} <= {"queued", "received"}  # stored; the sweeper queues them
    assert summary.duplicated == 0 and summary.lost == 0
    assert all(r.state == "done" for r in rows.values()), \
        [(r.state, r.error) for r in rows.values() if r.state != "done"][:5]
    assert cluster.leaks() == []


def test_a_redis_error_inside_a_job_is_retried_not_failed(make_runtime, monkeypatch) -> None:  # noqa: ANN001
    """Unit-level twin of scenario 2: redis-py's ConnectionError (the shared token cache is unreachable while
    Redis restarts) is not the builtin ConnectionError; the delivery must be re-scheduled, not `failed`."""
    import redis.exceptions

    from app import create_app
    from slipway.transport import InlineTransport
    from tests import factories
    from tests.conftest import Deliveries
    from workers import jobs

    def handler(event):  # noqa: ANN001, ANN202
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(jobs, "get_handler", lambda e, a: handler)
    rt = make_runtime("embedded", transport=InlineTransport())
    resp = Deliveries(create_app(rt=rt).test_client()).post("push", factories.push())
    with rt.engine.connect() as conn:
        (row,) = conn.execute(__import__("sqlalchemy").text("SELECT state, error FROM delivery")).all()
    assert resp.status_code == 202
    assert row.state == "queued" and "Connection refused" in row.error, row
