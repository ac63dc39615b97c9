"""Job entry points. Jobs take ids, never objects, and are idempotent on the delivery GUID."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time

from models.db import held
from slipway import runtime
from workers import inbox
from workers.events import Event, Ignored, Outcome, Permanent, RetryLater
from workers.registry import get_handler

log = logging.getLogger(__name__)

# A batch job stops taking new deliveries after this long and hands the rest back to the queue, so one
# slow GitHub does not hold a whole batch past RQ's job timeout.
BATCH_BUDGET_SECONDS = 30.0
BATCH_THREADS = 2


def process_deliveries(guids: list[str]) -> dict[str, int]:
    """Process a batch of deliveries (the RQ job of production mode); returns states counted.

    On PostgreSQL up to BATCH_THREADS deliveries of the batch run side by side: a delivery waits for
    PostgreSQL and GitHub about two thirds of its time, and the waits overlap. That is what several
    workers do anyway (claims are atomic, records lock their rows), so no order within a batch is lost.
    """
    started = time.monotonic()
    pending = collections.deque(guids)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            take_and_run()
        except BaseException as exc:  # raised in the job's own thread after the others end, as before
            errors.append(exc)

    def take_and_run() -> None:
        while True:
            with lock:
                begun = len(pending) < len(guids)
                if not pending or errors or (begun and time.monotonic() - started > BATCH_BUDGET_SECONDS):
                    return
                guid = pending.popleft()
            state = process_delivery(guid)
            with lock:
                counts[state] += 1

    width = min(BATCH_THREADS if runtime.current().engine.dialect.name == "postgresql" else 1, len(guids))
    threads = [threading.Thread(target=work, name=f"slipway-batch-{n}", daemon=True) for n in range(width - 1)]
    for t in threads:
        t.start()
    work()  # this thread is one of them
    for t in threads:
        t.join()
    if pending:
        _hand_back(list(pending))
        counts["handed-back"] = len(pending)
    if errors:  # e.g. RQ's job timeout: the job fails as it did, with the unstarted deliveries handed back
        raise errors[0]
    return dict(counts)


def _hand_back(guids: list[str]) -> None:
    """Queue unstarted deliveries again; if the queue refuses, the sweeper finds them (they stay 'queued')."""
    try:
        runtime.current().transport.enqueue(guids)
    except Exception as exc:  # noqa: BLE001 (the rows are safe in the database either way)
        log.warning("could not hand deliveries back to the queue; the sweeper will",
                    extra={"count": len(guids), "error": str(exc)})


def process_delivery(guid: str) -> str:
    """Claim the delivery, dispatch it to its handler, and record how it ended (on one pooled connection)."""
    rt = runtime.current()
    with held(rt.engine):
        return _process(rt, guid)


def _process(rt: runtime.Runtime, guid: str) -> str:
    """process_delivery's steps: claim, dispatch, then finish, retry or fail."""
    claimed = inbox.claim(rt.engine, guid, rt.settings.job_lease_seconds)
    if claimed is None:
        return "not-claimed"  # done already, taken by another worker, or not due yet
    extra = {"delivery": guid, "event": claimed.event, "attempt": claimed.attempts}
    try:
        outcome = dispatch(rt, claimed)
    except Ignored as exc:
        outcome = Outcome.ignored(str(exc))
    except RetryLater as exc:
        state = inbox.retry_later(rt.engine, claimed, exc.after, str(exc), rt.settings.max_attempts)
        log.warning("delivery will be retried", extra={**extra, "error": str(exc), "after": exc.after})
        return state
    except Permanent as exc:
        inbox.finish(rt.engine, claimed, "failed", str(exc))
        log.warning("delivery failed", extra={**extra, "error": str(exc)})
        return "failed"
    except Exception as exc:
        return _unexpected(rt, claimed, exc, extra)
    inbox.finish(rt.engine, claimed, outcome.state, outcome.note)
    log.info("delivery %s", outcome.state, extra={**extra, "note": outcome.note})
    return outcome.state


def dispatch(rt: runtime.Runtime, c: inbox.Claim) -> Outcome:
    """Decode the stored body and call the registered handler."""
    handler = get_handler(c.event, c.action)
    if handler is None:
        return Outcome.ignored(f"Slipway does not act on {c.event}" + (f".{c.action}" if c.action else ""))
    payload = json.loads(c.body)
    event = Event(guid=c.guid, name=c.event, action=c.action, payload=payload,
                  installation_id=c.installation_id, repository=c.repository, attempt=c.attempts, rt=rt)
    return handler(event)


def _unexpected(rt: runtime.Runtime, c: inbox.Claim, exc: Exception, extra: dict) -> str:
    """Database and network hiccups are retried; anything else is a bug, recorded on the delivery."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    error = f"{type(exc).__name__}: {exc}"[:2000]
    # redis-py's errors are not the builtin ones: a Redis restart (token cache) is a hiccup, not a bug.
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | RedisConnectionError | RedisTimeoutError):
        try:
            return inbox.retry_later(rt.engine, c, None, error, rt.settings.max_attempts)
        except Exception:
            log.exception("could not schedule a retry; the sweeper will find the delivery", extra=extra)
            return "stranded"
    log.exception("handler crashed", extra=extra)
    try:
        inbox.finish(rt.engine, c, "failed", error)
    except Exception:
        log.exception("could not record the failure; the sweeper will retry the delivery", extra=extra)
    return "failed"
