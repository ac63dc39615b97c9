"""The sweeper: queues deliveries that were never queued, were lost in the queue, or whose worker died."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from slipway.runtime import Runtime
from workers import inbox
from workers.expiry import start_due_work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What one pass did."""

    queued: int
    failed: int
    started: int = 0  # GitOps jobs started (freeze ended, preview expired)


def sweep_once(rt: Runtime) -> SweepResult:
    """One pass: fail what has no attempts left, queue what is stranded."""
    failed = inbox.fail_exhausted(rt.engine, rt.settings.max_attempts)
    started = start_due_work(rt)
    queued = 0
    while True:
        guids = inbox.take_stranded(rt.engine, rt.settings.requeue_after_seconds)
        if not guids:
            break
        try:
            rt.transport.enqueue(guids)
        except Exception as exc:
            inbox.mark_unqueued(rt.engine, guids)
            log.warning("queue unavailable during sweep", extra={"error": str(exc), "count": len(guids)})
            break
        queued += len(guids)
    if queued or failed or started:
        log.info("sweep", extra={"queued": queued, "failed": failed, "started": started})
    return SweepResult(queued, failed, started)


class Sweeper:
    """Runs sweep_once every `interval` seconds in a daemon thread until stopped."""

    def __init__(self, rt: Runtime, interval: float | None = None) -> None:
        self.rt = rt
        self.interval = interval if interval is not None else rt.settings.sweep_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        """Start the loop."""
        self._thread = threading.Thread(target=self._loop, name="slipway-sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _loop(self) -> None:
        """Sweep until stopped; a failing pass (database down) is logged and retried next time."""
        while not self._stop.wait(self.interval):
            try:
                sweep_once(self.rt)
            except Exception as exc:
                log.warning("sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
