"""slipway serve's production web server: granian options, and granian started again after it gives up."""

from __future__ import annotations

import pytest

from slipway import server
from slipway.settings import load_settings


class FakeGranian:
    """Stands in for granian.Granian: each serve() ends the way the script says."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.interrupt_signal = False

    def serve(self, **_kw: object) -> None:
        outcome = self.script.pop(0)
        if outcome == "crash-loop":  # granian's "Worker crash loop detected, exiting"
            raise SystemExit(1)
        if outcome == "sigterm":
            self.interrupt_signal = True
            raise SystemExit(0)


@pytest.fixture
def fake_granian(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Replace granian and the pause between restarts; returns the script list to fill."""
    script: list[str] = []
    started: list[FakeGranian] = []

    def make(_settings: object) -> FakeGranian:
        started.append(FakeGranian(script))
        return started[-1]

    monkeypatch.setattr(server, "_granian", make)
    monkeypatch.setattr(server, "_preload", lambda: None)
    monkeypatch.setattr("time.sleep", lambda _s: None)
    monkeypatch.setattr("signal.signal", lambda *_a: None)  # the suite's own handlers stay as they are
    return script, started


def settings():  # noqa: ANN201
    return load_settings(redis_url="redis://127.0.0.1:6379/0", web_concurrency=3, _env_file=None)


def test_production_serves_with_granian_wsgi_http1_and_respawn() -> None:
    """WEB_CONCURRENCY workers, WSGI over HTTP/1, crashed workers started again."""
    opts = server.granian_options(settings())
    assert opts["interface"] == "wsgi" and opts["http"] == "1" and opts["workers"] == 3
    assert opts["respawn_failed_workers"] is True and opts["blocking_threads"] >= 1


def test_granian_is_started_again_after_a_crash_loop_and_stops_on_sigterm(fake_granian) -> None:  # noqa: ANN001
    """A crash loop makes granian exit; slipway serve starts it again. SIGTERM ends it for good."""
    script, started = fake_granian
    script += ["crash-loop", "crash-loop", "sigterm"]
    with pytest.raises(SystemExit) as exc:
        server._run_granian(settings())
    assert exc.value.code == 0 and len(started) == 3


def test_workers_that_always_crash_end_serve_after_the_restart_limit(fake_granian) -> None:  # noqa: ANN001
    """A broken configuration (every worker dies at once) does not restart forever."""
    script, started = fake_granian
    script += ["crash-loop"] * (server.MAX_QUICK_RESTARTS + 5)
    with pytest.raises(SystemExit) as exc:
        server._run_granian(settings())
    assert exc.value.code == 1 and len(started) == server.MAX_QUICK_RESTARTS + 1


def test_a_web_process_freezes_what_start_up_made(pg_url: str, redis_url: str) -> None:
    """build_web ends with gc.freeze(): full collections then skip the ~140,000 start-up objects."""
    import gc

    gc.unfreeze()
    app = server.build_web(load_settings(redis_url=redis_url, database_url=pg_url, webhook_secret="s",
                                         _env_file=None))
    try:
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        app.extensions["slipway"].close()
