"""How a delivery id travels to a worker: RQ on Redis in production, a thread in embedded mode.

The database is the source of truth; a transport only wakes a worker up. A lost message is found
again by the sweeper, and a duplicated one is harmless because jobs claim their delivery atomically.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

QUEUE_NAME = "slipway"
JOB_PATH = "workers.jobs.process_deliveries"
# GUIDs per RQ job: RQ's own work per job (~5 ms of Redis round trips and bookkeeping) is paid once per batch,
# and batches stay small enough that several workers share a burst.
JOB_BATCH = 16
BURST_GUIDS = 4   # a web process lingers before a hand-over when at least this many GUIDs would share it
JOB_TIMEOUT = 110  # RQ kills a job after this; every delivery's lease (JOB_LEASE_SECONDS, 120) outlasts it


class Transport(Protocol):
    """Hands delivery GUIDs to workers."""

    def enqueue(self, guids: list[str]) -> None: ...
    def ping(self) -> bool: ...
    def depth(self) -> int: ...


class RQTransport:
    """Production transport: RQ jobs on the `slipway` queue, each carrying up to JOB_BATCH delivery GUIDs."""

    def __init__(self, redis_url: str, queue_name: str = QUEUE_NAME) -> None:
        from redis import Redis
        from rq import Queue

        # Short timeouts: when Redis is down the web answer must not wait; the sweeper queues later.
        self.redis = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1, health_check_interval=30)
        self.queue = Queue(queue_name, connection=self.redis)
        self._down_until = 0.0

    def enqueue(self, guids: list[str]) -> None:
        """Enqueue the GUIDs as jobs of up to JOB_BATCH each, in a single round trip."""
        if time.monotonic() < self._down_until:
            # Redis failed a moment ago: answer GitHub at once and leave the rows to the sweeper.
            raise ConnectionError("Redis marked down; retrying in a few seconds")
        datas = job_datas(guids)
        try:
            with self.redis.pipeline() as pipe:
                self.queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
        except Exception:
            self._down_until = time.monotonic() + 2.0
            raise

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except Exception:
            return False

    def depth(self) -> int:
        """Jobs waiting in the queue."""
        return self.queue.count


def job_datas(guids: list[str]) -> list[object]:
    """RQ job descriptions for `process_deliveries`, JOB_BATCH GUIDs each."""
    from rq import Queue

    chunks = [guids[i:i + JOB_BATCH] for i in range(0, len(guids), JOB_BATCH)]
    return [Queue.prepare_data(JOB_PATH, args=(chunk,), result_ttl=0, failure_ttl=7 * 86400, timeout=JOB_TIMEOUT,
                               description="deliveries " + " ".join(chunk)) for chunk in chunks]


class EmbeddedTransport:
    """Embedded transport: a worker thread inside `slipway serve` runs the same job function."""

    def __init__(self, job: Callable[[str], object] | None = None, threads: int = 1) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._job = job
        self._threads: list[threading.Thread] = []
        self._count = threads
        self._idle = threading.Condition()
        self._busy = 0

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        if self._threads:
            return
        for n in range(self._count):
            t = threading.Thread(target=self._run, name=f"slipway-worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the threads to finish after their current job."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def enqueue(self, guids: list[str]) -> None:
        """Queue GUIDs for the worker threads."""
        for g in guids:
            self._queue.put(g)

    def ping(self) -> bool:
        """True while the worker threads are alive (or none were started: jobs run when asked)."""
        return all(t.is_alive() for t in self._threads)

    def depth(self) -> int:
        """GUIDs not yet picked up."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the queue is empty and no job runs (tests and graceful shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.qsize() or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        """Worker loop: one job at a time; an exception never kills the thread."""
        job = self._job or _default_job()
        while True:
            guid = self._queue.get()
            if guid is None:
                return
            with self._idle:
                self._busy += 1
            try:
                job(guid)
            except Exception:  # the job records its own failures; this is a last resort
                log.exception("embedded job crashed", extra={"delivery": guid})
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()


def _default_job() -> Callable[[str], object]:
    """The job function, imported late so the transport module stays light."""
    from workers.jobs import process_delivery

    return process_delivery


class InlineTransport:
    """Runs each job at once in the caller's thread (CLI commands in embedded mode, tests)."""

    def __init__(self, job: Callable[[str], object] | None = None) -> None:
        self._job = job
        self.results: list[object] = []

    def enqueue(self, guids: list[str]) -> None:
        """Run the job for each GUID now."""
        job = self._job or _default_job()
        for g in guids:
            self.results.append(job(g))

    def ping(self) -> bool:
        """Always ready."""
        return True

    def depth(self) -> int:
        """Nothing waits."""
        return 0


class BackgroundEnqueuer:
    """Web-process transport: GUIDs go to RQ from a thread, in batches, so answers never wait for Redis.

    The delivery row is committed (state `queued`) before the answer; if this process dies before the
    hand-over, or Redis refuses it, the row is left for the sweeper: nothing is lost, only delayed.
    """

    def __init__(self, inner: RQTransport, on_failure: Callable[[list[str]], object], max_batch: int = 100,
                 linger: float = 0.05) -> None:
        self.inner, self._on_failure, self._max_batch, self._linger = inner, on_failure, max_batch, linger
        # SimpleQueue: put and get are C, no Condition run in Python per GUID (the web tier's hot path).
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._in_flight = 0  # GUIDs put and not yet handed over (or given up), under _count_lock
        self._count_lock = threading.Lock()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def redis(self) -> object:
        """The Redis client (health checks, rate limits and tokens use it too)."""
        return self.inner.redis

    @property
    def queue(self) -> object:
        """The RQ queue."""
        return self.inner.queue

    def enqueue(self, guids: list[str]) -> None:
        """Hand the GUIDs to the background thread (started on first use in this process)."""
        self._ensure_thread()
        with self._count_lock:
            self._in_flight += len(guids)
        for g in guids:
            self._queue.put(g)

    def ping(self) -> bool:
        """True when Redis answers."""
        return self.inner.ping()

    def depth(self) -> int:
        """Jobs waiting in Redis plus GUIDs not yet handed over."""
        return self.inner.depth() + self._queue.qsize()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every GUID was handed over (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._in_flight

    def _ensure_thread(self) -> None:
        """One thread per process (a fork does not copy threads, so check it is alive)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="slipway-enqueue", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        """Take what has arrived (up to max_batch) and hand it to RQ in jobs of JOB_BATCH GUIDs.

        In a burst it first sleeps `linger` for more, so the burst shares RQ jobs (JOB_BATCH GUIDs each)
        and RQ's per-job cost (the web tier's largest Python cost after the request itself) is paid once
        per batch, here and in the worker. A burst: at least BURST_GUIDS would arrive during the linger,
        judged by what is already waiting and by the rate of the previous batch. Deliveries that come one
        at a time, even dozens a second per process, are handed over at once: the linger would only add
        to the time until a worker starts on them.
        """
        previous, last = 0, 0.0
        while True:
            batch = [self._queue.get()]
            now = time.monotonic()
            recent_rate = previous / max(now - last, 1e-3)
            if max(self._queue.qsize(), recent_rate * self._linger) >= BURST_GUIDS:
                # Sleep rather than wait on the queue: the GUIDs that arrive meanwhile are put without
                # waking this thread (and taking the GIL) once each.
                time.sleep(self._linger)
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            previous, last = len(batch), now
            for i in range(0, len(batch), JOB_BATCH):
                self._hand_over(batch[i:i + JOB_BATCH])

    def _hand_over(self, guids: list[str]) -> None:
        """One RQ job per pipeline: RQ builds a job in Python, holding the GIL about 1 ms, and the request
        threads of this process get it back at each round trip instead of after a whole batch of jobs."""
        try:
            self.inner.enqueue(guids)
        except Exception as exc:
            log.warning("queue unavailable; the sweeper will queue these deliveries",
                        extra={"error": str(exc), "count": len(guids)})
            try:
                self._on_failure(guids)
            except Exception:
                log.exception("could not mark deliveries for the sweeper; it finds them after the grace period")
        finally:
            with self._count_lock:
                self._in_flight -= len(guids)
