"""process_delivery, claims, retries and the sweeper: every delivery ends terminal, nothing runs twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import Delivery
from models.base import utcnow
from slipway.transport import InlineTransport
from tests import factories
from tests.conftest import Deliveries, drain
from workers import inbox, jobs
from workers.events import Outcome, Permanent, RetryLater
from workers.sweeper import sweep_once


def state(rt, guid: str) -> Delivery:
    """The stored delivery."""
    with rt.engine.connect() as conn:
        return conn.execute(select(Delivery).where(Delivery.guid == guid)).one()


@pytest.fixture
def posted(rt, client):  # noqa: ANN001, ANN201
    """Post a delivery without running it: returns its GUID."""
    def post(event: str = "ping", payload: dict | None = None) -> str:
        rt.transport.enqueue = lambda guids: None  # keep it queued; the test runs the job itself
        resp = Deliveries(client).post(event, payload or factories.ping())
        assert resp.status_code in (200, 202)
        return resp.get_json()["delivery"]

    return post


def test_second_run_of_the_same_job_does_nothing(rt, posted) -> None:
    """A duplicated job finds the delivery done and changes nothing."""
    guid = posted()
    assert jobs.process_delivery(guid) == "done"
    assert jobs.process_delivery(guid) == "not-claimed"
    assert state(rt, guid).attempts == 1


def test_unknown_guid_is_not_claimed(rt) -> None:
    """A job for a GUID that is not stored is a no-op."""
    assert jobs.process_delivery("nope") == "not-claimed"


def test_retry_later_reschedules_and_the_sweeper_requeues_when_due(rt, posted, monkeypatch) -> None:
    """A transient failure schedules another attempt; nothing runs before it is due."""
    calls = []

    def flaky(event):  # noqa: ANN001, ANN202
        calls.append(event.attempt)
        if len(calls) == 1:
            raise RetryLater("GitHub 502", after=30)
        return Outcome("done", "second time lucky")

    monkeypatch.setattr(jobs, "get_handler", lambda e, a: flaky)
    guid = posted()
    assert jobs.process_delivery(guid) == "queued"
    row = state(rt, guid)
    assert row.state == "queued" and row.error == "GitHub 502"
    assert timedelta(seconds=25) < row.next_attempt_at - utcnow() <= timedelta(seconds=30)
    assert jobs.process_delivery(guid) == "not-claimed"  # not due yet
    rt.transport = InlineTransport()
    assert sweep_once(rt).queued == 0
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert sweep_once(rt).queued == 1
    assert state(rt, guid).state == "done" and calls == [1, 2]


def test_retries_end_in_failed_after_max_attempts(make_runtime, monkeypatch) -> None:
    """A delivery that keeps failing ends failed with the error, never loops forever."""
    from app import create_app

    rt = make_runtime("embedded", transport=InlineTransport(), max_attempts=3)
    monkeypatch.setattr(jobs, "get_handler", lambda e, a: (_ for _ in ()).throw(RetryLater("still down", after=0)))
    guid = Deliveries(create_app(rt=rt).test_client()).post("ping", factories.ping()).get_json()["delivery"]
    for _ in range(3):
        sweep_once(rt)
    row = state(rt, guid)
    assert row.state == "failed" and row.attempts == 3 and "gave up after 3 attempts: still down" in row.error


def test_permanent_error_fails_at_once(rt, posted, monkeypatch) -> None:
    """A 4xx that cannot succeed ends the job with the reason after one attempt."""
    monkeypatch.setattr(jobs, "get_handler", lambda e, a: (_ for _ in ()).throw(Permanent("422 No ref found for: gone")))
    guid = posted()
    assert jobs.process_delivery(guid) == "failed"
    row = state(rt, guid)
    assert (row.state, row.attempts, row.error) == ("failed", 1, "422 No ref found for: gone")


def test_crashing_handler_is_recorded_on_its_delivery(rt, posted, monkeypatch) -> None:
    """An exception in a handler never escapes unrecorded: the delivery is failed with the error."""
    def boom(event):  # noqa: ANN001, ANN202
        raise KeyError("pull_request")

    monkeypatch.setattr(jobs, "get_handler", lambda e, a: boom)
    guid = posted()
    assert jobs.process_delivery(guid) == "failed"
    assert state(rt, guid).error == "KeyError: 'pull_request'"


def test_crashed_worker_lease_expires_and_sweeper_runs_it_again(rt, posted) -> None:
    """A worker killed mid-job leaves the delivery 'processing'; after the lease, the sweeper re-queues it."""
    guid = posted()
    claimed = inbox.claim(rt.engine, guid, lease_seconds=60)  # the "worker" that then dies
    assert claimed is not None and state(rt, guid).state == "processing"
    rt.transport = InlineTransport()
    assert sweep_once(rt).queued == 0  # lease still running
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert sweep_once(rt).queued == 1
    row = state(rt, guid)
    assert (row.state, row.attempts) == ("done", 2)
    assert not inbox.finish(rt.engine, claimed, "failed", "late")  # the dead worker's stale write is fenced off
    assert state(rt, guid).state == "done"


def test_sweeper_queues_deliveries_never_handed_to_the_queue(rt, client) -> None:
    """A delivery stored while the queue was down ('received') is queued by the sweeper."""
    def refuse(guids):  # noqa: ANN001, ANN202
        raise ConnectionError("queue down")

    rt.transport.enqueue = refuse
    guid = Deliveries(client).post("ping", factories.ping()).get_json()["delivery"]
    assert state(rt, guid).state == "received"
    rt.transport = InlineTransport()
    assert sweep_once(rt).queued == 1
    assert state(rt, guid).state == "done"


def test_lost_queue_message_is_requeued_after_the_grace_period(rt, posted) -> None:
    """A 'queued' delivery nobody picked up (Redis lost it) is queued again after requeue_after_seconds."""
    guid = posted()
    rt.transport = InlineTransport()
    assert sweep_once(rt).queued == 0
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(queued_at=utcnow() - timedelta(seconds=rt.settings.requeue_after_seconds + 1)))
    assert sweep_once(rt).queued == 1
    assert state(rt, guid).state == "done"


def test_exhausted_crashed_delivery_is_failed_by_the_sweeper(rt, posted) -> None:
    """A delivery whose worker died on every attempt ends failed instead of looping."""
    guid = posted()
    with rt.engine.begin() as conn:
        conn.execute(update(Delivery).values(state="processing", attempts=rt.settings.max_attempts,
                                             lease_until=utcnow() - timedelta(seconds=1)))
    assert sweep_once(rt).failed == 1
    row = state(rt, guid)
    assert row.state == "failed" and "worker lost the job" in row.error


def test_replay_requeues_a_finished_delivery(rt, posted) -> None:
    """`slipway replay` puts a done delivery back and it runs again."""
    guid = posted()
    jobs.process_delivery(guid)
    assert inbox.requeue(rt.engine, guid)
    assert not inbox.requeue(rt.engine, guid)  # already queued: not twice
    assert jobs.process_delivery(guid) == "done"


def test_every_delivery_ends_terminal_under_a_burst(rt, client) -> None:
    """50 deliveries of mixed kinds all reach done or ignored."""
    d = Deliveries(client)
    for i in range(25):
        d.post("ping", factories.ping(f"zen {i}"))
        d.post("issues", factories.event("opened", number=i))
    drain(rt)
    with rt.engine.connect() as conn:
        states = [s for (s,) in conn.execute(select(Delivery.state))]
    assert len(states) == 50 and set(states) <= {"done", "ignored"}


def test_a_batch_job_runs_each_delivery_once(rt, posted) -> None:
    """One RQ job carries several GUIDs; each is claimed and finished on its own, a repeat is harmless."""
    guids = [posted() for _ in range(3)]
    assert jobs.process_deliveries(guids + guids[:1]) == {"done": 3, "not-claimed": 1}
    assert [state(rt, g).state for g in guids] == ["done"] * 3


def test_a_batch_past_its_budget_hands_the_rest_back(rt, posted, monkeypatch) -> None:
    """After the batch budget the unstarted deliveries go back to the queue instead of waiting behind a slow one."""
    guids = [posted() for _ in range(3)]
    handed: list[str] = []
    rt.transport.enqueue = handed.extend
    monkeypatch.setattr(jobs, "BATCH_BUDGET_SECONDS", -1.0)
    assert jobs.process_deliveries(guids) == {"done": 1, "handed-back": 2}
    assert handed == guids[1:]
    assert [state(rt, g).state for g in guids[1:]] == ["queued", "queued"]


@pytest.mark.parametrize("mode", ["production"])
def test_a_batch_runs_its_deliveries_side_by_side_on_postgresql(rt, posted, monkeypatch) -> None:
    """Four deliveries whose handler waits 0.3 s each run at the same time, each in its own thread."""
    import threading
    import time

    guids = [posted() for _ in range(4)]
    threads: set[str] = set()

    def slow(event):  # noqa: ANN001, ANN202
        threads.add(threading.current_thread().name)
        time.sleep(0.3)
        return Outcome("done", "waited")

    monkeypatch.setattr(jobs, "get_handler", lambda event, action: slow)
    assert jobs.process_deliveries(guids) == {"done": 4}
    assert len(threads) == jobs.BATCH_THREADS  # each took one while the others waited in theirs
    assert [state(rt, g).note for g in guids] == ["waited"] * 4
