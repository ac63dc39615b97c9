"""Scenario 4 (reliability.md section 6): PostgreSQL unreachable while deliveries arrive.

The shared PostgreSQL is never stopped: web and workers reach it through a TCP proxy the test cuts
(open connections die, new ones are closed at once), which is what a database restart or a network
partition looks like from Slipway's side.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import TERMINAL, proxied_url, push_outcome

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(120)
def test_database_unreachable_answers_503_and_redelivered_ones_finish(make_cluster, fault_db, pg_proxy) -> None:  # noqa: ANN001
    """Scaled down from "Postgres down 30 s during 100 POSTs" to the database cut ~6 s during 40 POSTs,
    with 20 pushes in flight in the workers when it goes away.

    Pass: while cut, 0 answers 2xx without a stored row (every POST answers 503); after the restore,
    GitHub's redelivery of exactly the failed GUIDs is accepted, and every delivery (the 20 before and
    the redelivered ones) ends `done` with exactly one GitHub deployment each.
    """
    cluster = make_cluster(database_url=proxied_url(fault_db, pg_proxy)).start(workers=2)
    before = [cluster.push(n) for n in range(20)]
    pg_proxy.cut()
    cut_at = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        during = list(pool.map(cluster.push, range(20, 60)))
    time.sleep(max(0.0, 6.0 - (time.monotonic() - cut_at)))
    pg_proxy.restore()
    stored = cluster.rows([p.guid for p in during])
    ok_during = [p for p in during if 200 <= p.status < 300]
    failed = [p for p in during if not 200 <= p.status < 300]
    redelivered = [cluster.redeliver(p) for p in failed]
    retries = 0
    for _ in range(3):  # GitHub's redelivery is by hand or by script: a 503 is simply redelivered again
        again = [p for p in redelivered if not 200 <= p.status < 300]
        if not again:
            break
        retries += len(again)
        redelivered = [p for p in redelivered if 200 <= p.status < 300] + [cluster.redeliver(p) for p in again]
    accepted = [p for p in before if 200 <= p.status < 300] + ok_during + \
        [p for p in redelivered if 200 <= p.status < 300]
    rows = cluster.wait_terminal([p.guid for p in accepted], timeout=45)
    summary, rows = push_outcome(cluster, [*before, *ok_during, *redelivered], "4-postgres-cut",
                                 answered_503=sum(p.status == 503 for p in during),
                                 slowest_503_s=f"{max((p.seconds for p in failed), default=0):.2f}",
                                 redelivered=len(failed), redelivery_retries=retries)
    assert [p.guid for p in ok_during if p.guid not in stored] == [], "2xx without a stored row"
    assert {p.status for p in during} == {503}, sorted({(p.status, str(p.body)[:80]) for p in during})
    assert all(p.body["error"]["code"] == "unavailable" for p in failed)
    assert len(failed) == 40 and all(200 <= p.status < 300 for p in redelivered), \
        [(p.status, p.body) for p in redelivered if not 200 <= p.status < 300][:3]
    assert summary.lost == 0, {g: (r.state, r.error) for g, r in rows.items() if r.state not in TERMINAL}
    assert summary.duplicated == 0
    assert all(r.state == "done" for r in rows.values()), \
        [(r.state, r.error) for r in rows.values() if r.state != "done"][:5]
    assert len(cluster.live_workers()) == 2
    assert cluster.leaks() == []
