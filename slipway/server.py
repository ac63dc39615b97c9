"""Process runners: the web server (gunicorn) and the RQ worker."""

from __future__ import annotations

import logging
from typing import Any

from slipway.settings import Settings

log = logging.getLogger(__name__)


def _web_options(settings: Settings) -> dict[str, Any]:
    """gunicorn options: one threaded process in embedded mode, WEB_CONCURRENCY processes in production."""
    opts: dict[str, Any] = {"bind": f"{settings.host}:{settings.port}", "accesslog": None, "errorlog": "-",
                            "loglevel": settings.log_level, "timeout": 30, "graceful_timeout": 20,
                            "keepalive": 5}
    if settings.embedded:
        # One process: the in-process queue and its worker thread must live beside the web threads.
        opts.update(workers=1, worker_class="gthread", threads=8)
    else:
        opts.update(workers=max(1, settings.web_concurrency), worker_class="sync")
    return opts


def run(settings: Settings) -> None:
    """Serve HTTP until stopped."""
    from gunicorn.app.base import BaseApplication

    class SlipwayWeb(BaseApplication):  # type: ignore[misc]
        """gunicorn application that builds Slipway inside each worker process (after the fork)."""

        def load_config(self) -> None:
            for key, value in _web_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return build_web(settings)

    mode = "embedded (SQLite + in-process queue)" if settings.embedded else "production (Redis + RQ)"
    log.info("slipway serving on http://%s:%s in %s mode", settings.host, settings.port, mode)
    SlipwayWeb().run()


def build_web(settings: Settings) -> Any:
    """The WSGI app for this process; in embedded mode also start the worker thread and the sweeper."""
    from app import create_app
    from slipway import runtime
    from workers.sweeper import Sweeper

    rt = runtime.build(settings)
    runtime.install(rt)
    if settings.embedded:
        rt.transport.start()  # type: ignore[attr-defined]
        rt.extras["sweeper"] = Sweeper(rt).start()
    else:
        from slipway.transport import BackgroundEnqueuer
        from workers.inbox import mark_unqueued

        rt.transport = BackgroundEnqueuer(rt.transport, lambda guids: mark_unqueued(rt.engine, guids))  # type: ignore[arg-type]
    return create_app(rt=rt)


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Run a SimpleWorker (no fork per job: warm imports and token cache) plus the sweeper thread.

    RQ's loop quits when Redis goes away; this process does not: it waits for Redis and starts a new
    RQ worker (the sweeper thread keeps running and re-queues what Redis lost). SIGTERM still stops it.
    """
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import SimpleWorker
    from rq.exceptions import StopRequested

    from slipway import runtime
    from workers.sweeper import Sweeper, sweep_once

    class Worker(SimpleWorker):  # type: ignore[misc]
        """Remembers that a stop was asked for (RQ returns from work() the same way after losing Redis)."""

        stopping = False

        def request_stop(self, signum: Any, frame: Any) -> None:
            self.stopping = True
            super().request_stop(signum, frame)

    rt = runtime.build(settings)
    runtime.install(rt)
    __import__("app.metrics").metrics.install_hooks(rt)  # count this worker's GitHub answers in Redis for /metrics
    transport: Any = rt.transport
    sweep_once(rt)  # pick up whatever waited while no worker ran
    sweeper = Sweeper(rt).start()
    try:
        while True:
            worker = Worker([transport.queue], connection=transport.redis)
            try:
                worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level.upper())
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("lost Redis; the worker starts again when it answers", extra={"error": str(exc)})
            if burst or worker.stopping:
                break
            try:
                time.sleep(1.0)
                while not worker.stopping and not transport.ping():
                    time.sleep(1.0)
            except StopRequested:
                break
            if worker.stopping:
                break
    finally:
        sweeper.stop()
