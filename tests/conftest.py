"""Test fixtures: real PostgreSQL and Redis (fail loudly in CI when missing), SQLite, signed deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slipway import runtime as runtime_mod
from slipway.runtime import Runtime
from slipway.settings import load_settings

SECRET = "test-secret"
PG_ADMIN = os.environ.get("SLIPWAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("SLIPWAY_TEST_REDIS", "redis://127.0.0.1:6379")
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "github"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    """True when a TCP connection opens."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip without the service on a laptop; fail loudly in CI, where it must be there."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: tests that need it must not be skipped)", pytrace=False)
    pytest.skip(message)


def sign(body: bytes, secret: str = SECRET) -> str:
    """X-Hub-Signature-256 for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session, migrated, dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text

    from models.db import upgrade

    name = f"slipway_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating once is much faster)."""
    from models.db import upgrade

    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    """Empty every table of the PostgreSQL test database."""
    from sqlalchemy import create_engine, text
    from sqlmodel import SQLModel

    import models  # noqa: F401

    engine = create_engine(url.replace("postgresql+psycopg", "postgresql+psycopg"))
    tables = ", ".join(f'"{t}"' for t in SQLModel.metadata.tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The PostgreSQL test database, emptied for this test."""
    _truncate_all(pg_database)
    return pg_database


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite database for this test."""
    path = tmp_path / "slipway.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


# ---------------------------------------------------------------- redis


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    """A Redis database index of this session's own, reserved in db 0 so parallel runs never share one."""
    require_service("Redis", "127.0.0.1", 6379)
    from redis import Redis

    lock = Redis.from_url(f"{REDIS_BASE}/0")
    indices = list(range(1, 16))
    random.Random(os.getpid()).shuffle(indices)
    for index in indices:
        if lock.set(f"slipway-test:db:{index}", os.getpid(), nx=True, ex=3 * 3600):
            break
    else:
        pytest.fail("every Redis database index 1-15 is reserved by another test run")
    yield index
    lock.delete(f"slipway-test:db:{index}")
    lock.close()


@pytest.fixture
def redis_url(redis_db: int) -> Iterator[str]:
    """Redis for one test: an empty key space before and after."""
    from redis import Redis

    url = f"{REDIS_BASE}/{redis_db}"
    client = Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# ---------------------------------------------------------------- runtime and app


@pytest.fixture(params=["embedded", "production"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run a test in both modes: SQLite + in-process queue, and PostgreSQL + Redis/RQ."""
    return request.param


@pytest.fixture
def settings_for(request: pytest.FixtureRequest):  # noqa: ANN201
    """Build Settings for a mode: embedded uses SQLite, production PostgreSQL and Redis."""

    def make(mode: str = "embedded", **overrides: Any):
        base: dict[str, Any] = {"webhook_secret": SECRET, "log_format": "text", "github_api_url": "http://127.0.0.1:9"}
        if mode == "embedded":
            base.update(database_url=request.getfixturevalue("sqlite_url"), redis_url=None)
        else:
            base.update(database_url=request.getfixturevalue("pg_url"), redis_url=request.getfixturevalue("redis_url"))
        base.update(overrides)
        return load_settings(_env_file=None, **base)

    return make


@pytest.fixture
def make_runtime(settings_for):  # noqa: ANN001, ANN201
    """Build and install a runtime; every one built is closed after the test."""
    built: list[Runtime] = []

    def make(mode: str = "embedded", transport: Any = None, **overrides: Any) -> Runtime:
        rt = runtime_mod.build(settings_for(mode, **overrides), transport=transport)
        runtime_mod.install(rt)
        built.append(rt)
        return rt

    yield make
    runtime_mod.install(None)
    for rt in built:
        rt.close()


def started(runtime: Runtime) -> Runtime:
    """Start the embedded worker thread (production transports need nothing: tests drain RQ themselves)."""
    start = getattr(runtime.transport, "start", None)
    if start:
        start()
    return runtime


@pytest.fixture
def rt(make_runtime, mode: str) -> Runtime:  # noqa: ANN001
    """A runtime in the test's mode; embedded jobs run in a started worker thread."""
    return started(make_runtime(mode))


@pytest.fixture
def client(rt: Runtime):  # noqa: ANN201
    """Flask test client around the runtime."""
    from app import create_app

    return create_app(rt=rt).test_client()


class Deliveries:
    """Posts signed GitHub deliveries to a test client."""

    def __init__(self, client: Any, secret: str = SECRET) -> None:
        self.client, self.secret = client, secret

    def post(self, event: str, payload: Any = None, *, raw: bytes | None = None, guid: str | None = None,
             form: bool = False, signature: str | None = None, headers: dict[str, str] | None = None) -> Any:
        """POST one delivery; returns the response."""
        from urllib.parse import urlencode

        doc = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        body = urlencode({"payload": doc.decode()}).encode() if form else doc
        hdrs = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid or str(uuid.uuid4()),
                "X-Hub-Signature-256": signature if signature is not None else sign(body, self.secret),
                "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
        hdrs.update(headers or {})
        return self.client.post("/api/github/webhooks", data=body, headers={k: v for k, v in hdrs.items() if v})


@pytest.fixture
def deliveries(client: Any) -> Deliveries:
    """Signed-delivery poster for the test client."""
    return Deliveries(client)


def drain(rt: Runtime, timeout: float = 20.0) -> None:
    """Run every queued job to the end: the embedded thread, or an RQ SimpleWorker in burst mode."""
    wait_idle = getattr(rt.transport, "wait_idle", None)
    if wait_idle is not None:
        assert wait_idle(timeout), "embedded worker did not finish in time"
        return
    queue = getattr(rt.transport, "queue", None)
    if queue is not None:
        from rq import SimpleWorker

        SimpleWorker([queue], connection=rt.transport.redis).work(burst=True, with_scheduler=False)


# ---------------------------------------------------------------- fake GitHub

APP_ID = 12345


@pytest.fixture
def fake_github() -> Iterator[Any]:
    """A fake GitHub API on 127.0.0.1 with one installation on octo-org/hello."""
    from tests import factories
    from tests.fakegithub import FakeGitHub, generate_private_key_pem

    fake = FakeGitHub(app_id=APP_ID, private_key_pem=generate_private_key_pem())
    fake.add_installation(factories.INSTALLATION_ID)
    fake.add_repo(factories.REPO, factories.INSTALLATION_ID)
    with fake:
        yield fake
    assert fake.errors == [], "the fake GitHub itself failed"


@pytest.fixture
def github_settings(fake_github) -> dict[str, Any]:  # noqa: ANN001
    """Settings overrides that point Slipway at the fake GitHub."""
    return {"app_id": APP_ID, "private_key": fake_github.private_key_pem.decode(), "github_api_url": fake_github.url,
            "github_timeout": 2.0}


@pytest.fixture
def gh_rt(make_runtime, mode: str, github_settings: dict[str, Any]) -> Runtime:  # noqa: ANN001
    """A runtime in the test's mode that talks to the fake GitHub; embedded jobs run in a worker thread."""
    return started(make_runtime(mode, **github_settings))


@pytest.fixture
def gh_client(gh_rt: Runtime):  # noqa: ANN201
    """Flask test client around the GitHub-enabled runtime."""
    from app import create_app

    return create_app(rt=gh_rt).test_client()


# ---------------------------------------------------------------- the whole suite's log output

_LEAK_CHECKS = [re.compile(r"gh[pousr]_[A-Za-z0-9_]{20,}"), re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."),
                re.compile(r"PRIVATE KEY-----"), re.compile(r"slw_[A-Za-z0-9_-]{20,}"), re.compile(re.escape(SECRET))]


class _SuiteLogAudit(logging.Handler):
    """Formats every record of the suite the way production does (redacted JSON) and remembers any leak."""

    def __init__(self) -> None:
        from slipway.logs import JsonFormatter, Redactor

        super().__init__(logging.DEBUG)
        self.addFilter(Redactor([SECRET]))
        self.setFormatter(JsonFormatter())
        self.lines = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines += 1
        if any(p.search(line) for p in _LEAK_CHECKS) and len(self.leaks) < 20:
            self.leaks.append(line[:300])


_AUDIT: _SuiteLogAudit | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Watch every log record of the whole run, at DEBUG, for secrets that survive redaction."""
    global _AUDIT
    _AUDIT = _SuiteLogAudit()
    root = logging.getLogger()
    root.addHandler(_AUDIT)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any log line of the suite carried a secret, token, JWT, PEM or API key."""
    if _AUDIT is None:
        return
    logging.getLogger().removeHandler(_AUDIT)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log audit: {_AUDIT.lines} log lines of the whole run checked for secrets, "
                            f"{len(_AUDIT.leaks)} leaks")
    if _AUDIT.leaks:
        if reporter is not None:
            for line in _AUDIT.leaks:
                reporter.write_line(f"  leak: {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
