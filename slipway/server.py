"""Process runners: the web server (granian in production, gunicorn in embedded mode) and the RQ worker."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from slipway.settings import Settings

log = logging.getLogger(__name__)

# granian's own log lines go through Slipway's logging (JSON or text, redacted) instead of its console handler.
GRANIAN_LOGGING = {"loggers": {"_granian": {"handlers": [], "propagate": True},
                               "granian.access": {"handlers": [], "propagate": True}}}


def _web_options(settings: Settings) -> dict[str, Any]:
    """gunicorn options of the embedded mode: one threaded process, the in-process worker thread beside it."""
    return {"bind": f"{settings.host}:{settings.port}", "accesslog": None, "errorlog": "-",
            "loglevel": settings.log_level, "timeout": 30, "graceful_timeout": 20, "keepalive": 5,
            "workers": 1, "worker_class": "gthread", "threads": 8}


def granian_options(settings: Settings) -> dict[str, Any]:
    """granian options of the production mode (reference/ingest-performance.md: ~1.8x gunicorn sync).

    WSGI over HTTP/1, WEB_CONCURRENCY worker processes with 8 blocking threads each: a delivery's request
    waits for PostgreSQL's commit for most of its time, and the requests that wait together share one
    INSERT and one commit (workers/groupcommit.py), so more threads make bigger batches (8 measured best
    on 2 cores: docs/benchmarks.md, Ingest). A crashed worker is started again.
    """
    return {"address": settings.host, "port": settings.port, "interface": "wsgi", "http": "1",
            "workers": max(1, settings.web_concurrency), "blocking_threads": 8, "respawn_failed_workers": True,
            "respawn_interval": 0.5, "workers_kill_timeout": 20, "log_level": _granian_level(settings.log_level),
            "log_access": False}


def _granian_level(level: str) -> str:
    """granian's name for a logging level ("warning", "info", ...)."""
    return level.lower() if level.lower() in ("critical", "error", "warning", "info", "debug") else "info"


def run(settings: Settings) -> None:
    """Serve HTTP until stopped."""
    mode = "embedded (SQLite + in-process queue)" if settings.embedded else "production (Redis + RQ)"
    log.info("slipway serving on http://%s:%s in %s mode", settings.host, settings.port, mode)
    if settings.embedded:
        _run_gunicorn(settings)
    else:
        _run_granian(settings)


def _run_gunicorn(settings: Settings) -> None:
    """One gunicorn gthread process: the in-process queue and its worker thread live beside the web threads."""
    from gunicorn.app.base import BaseApplication

    class SlipwayWeb(BaseApplication):  # type: ignore[misc]
        """gunicorn application that builds Slipway inside its worker process (after the fork)."""

        def load_config(self) -> None:
            for key, value in _web_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return build_web(settings)

    SlipwayWeb().run()


def _run_granian(settings: Settings) -> None:
    """granian with WEB_CONCURRENCY forked workers, each building Slipway after the fork.

    granian replaces a crashed worker, but gives up and exits when the same worker crashes again within
    5.5 s; gunicorn never gives up. The web tier must keep answering, so granian is started again then.
    """
    import signal
    import time

    _preload()
    quick = 0
    while True:
        server = _granian(settings)
        started = time.monotonic()
        try:
            server.serve(target_loader=partial(build_web, settings), wrap_loader=False)
            return
        except SystemExit:
            if server.interrupt_signal:  # SIGTERM/SIGINT: a normal stop
                raise
        finally:
            # granian's handlers only set flags on the server that just ended
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        quick = quick + 1 if time.monotonic() - started < 60 else 1
        if quick > MAX_QUICK_RESTARTS:  # workers that die at once (a broken configuration): give up
            log.error("granian stopped %d times in a row within a minute of starting; exiting", quick - 1)
            raise SystemExit(1)
        log.error("granian stopped because its workers kept crashing; serving again")
        time.sleep(0.2)


MAX_QUICK_RESTARTS = 20


def _granian(settings: Settings) -> Any:
    """A granian server with Slipway's options."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    opts = granian_options(settings)
    opts.update(interface=Interfaces(opts["interface"]), http=HTTPModes(opts["http"]),
                log_level=LogLevels(opts["log_level"]), log_dictconfig=GRANIAN_LOGGING)
    return Granian("slipway.server:build_web", **opts)


def _preload() -> None:
    """Import the web app's modules before forking (nothing is created at import), so a new worker starts fast."""
    import app.dashboard  # noqa: F401
    import app.deploy_api  # noqa: F401
    import app.read_api  # noqa: F401
    import app.webhooks  # noqa: F401
    import workers.sweeper  # noqa: F401


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
    wsgi = create_app(rt=rt)
    freeze_heap()
    return wsgi


def freeze_heap() -> None:
    """Move what start-up made into the garbage collector's permanent generation, so collections skip it.

    After start-up a web process holds ~140,000 objects (Flask, SQLAlchemy, githubkit's models); a full
    collection over them took ~100 ms here, holding the GIL, so every request of the process would wait.
    Objects made later are collected as usual.
    """
    import gc

    gc.collect()
    gc.freeze()


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
    import workers.jobs  # noqa: F401 - the job and its handlers, imported before the heap is frozen
    freeze_heap()
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
