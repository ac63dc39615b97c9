"""Fault-injection harness: real `slipway serve` and `slipway worker` processes in production mode.

Each scenario gets a fresh PostgreSQL database (a copy of a template migrated once with `slipway db
upgrade`), a private `redis-server` on a free port (AOF everysec, noeviction) that the test may SIGKILL
and restart, the fake GitHub with the App configured, and optionally a TCP proxy in front of PostgreSQL
that the test can cut. The shared PostgreSQL and Redis services are never stopped. Every process a test
starts runs in its own process group and is stopped when the test ends, whatever happened.

Every scenario records one summary line (sent, accepted, terminal, duplicated, lost); they are printed
at the end of the pytest run (`pytest_terminal_summary`), with or without `-s`.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import factories
from tests.conftest import APP_ID, IN_CI, PG_ADMIN, require_service

SLIPWAY = Path(sys.executable).with_name("slipway")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TERMINAL = ("done", "ignored", "failed")
STAGING_ON_PUSH = "environments:\n  staging:\n    on: push\n    required_checks: []\n"
PUSHED_AT = 1_800_000_000  # one ordinal for every push: no push supersedes another, each one deploys

# githubkit builds an httpx client, hence an SSL context loading certifi's whole CA bundle (~30 ms of CPU),
# for every GitHub call. The fake speaks plain HTTP, so the workers get a one-certificate bundle instead:
# jobs run ~2x faster on this 2-core machine, which is what lets the scenarios fit the time budget.
SMALL_CA_FILE = next((str(p) for p in sorted(Path("/etc/ssl/certs").glob("*.pem"))[:1]), None)

# What must never appear in a log line (the configured webhook secret is added per cluster).
LEAK_PATTERNS = [re.compile(p) for p in (r"gh[pousr]_", r"eyJ", r"PRIVATE KEY", r"slw_")]


# ---------------------------------------------------------------- summaries


@dataclass
class Summary:
    """What one fault run did with its deliveries."""

    scenario: str
    sent: int
    accepted: int
    terminal: int
    duplicated: int
    lost: int
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """`fault-summary: ...` as printed at the end of the run."""
        tail = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (f"fault-summary: {self.scenario}: sent={self.sent} accepted={self.accepted} terminal={self.terminal} "
                f"duplicated={self.duplicated} lost={self.lost}" + (f" {tail}" if tail else ""))


SUMMARIES: list[Summary] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print every fault run's summary line in the normal pytest output."""
    if not SUMMARIES:
        return
    terminalreporter.section("fault injection")
    for s in SUMMARIES:
        terminalreporter.write_line(s.line())


# ---------------------------------------------------------------- processes

_STARTED: list[subprocess.Popen] = []


def _kill_group(p: subprocess.Popen, sig: int) -> None:
    """Signal a process group we started (each child runs in a session of its own)."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_all() -> None:
    """Last resort (interpreter exit): no process this harness started outlives the test run."""
    for p in _STARTED:
        if p.poll() is None:
            _kill_group(p, signal.SIGKILL)


atexit.register(_reap_all)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Same as at exit, in case a test's own clean-up was skipped."""
    _reap_all()


@dataclass
class Proc:
    """One started process and the file that holds its standard output and error."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no clean-up of any kind (a crash)."""
        _kill_group(self.popen, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 6.0) -> None:
        """SIGTERM, then SIGKILL for the whole group if it does not end in time."""
        if self.popen.poll() is None:
            _kill_group(self.popen, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(self.popen, signal.SIGKILL)  # gunicorn workers too, if the master is gone
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Proc:
    """Start a process in its own session with stdout and stderr appended to `log`."""
    handle = open(log, "ab")  # noqa: SIM115 (the child holds it)
    try:
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        handle.close()
    _STARTED.append(popen)
    return Proc(name, popen, log)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    """Poll until predicate() is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


# ---------------------------------------------------------------- Redis


class RedisServer:
    """A private redis-server: AOF everysec, noeviction, on a free port; SIGKILL and restart at will."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart on the same port and directory, so the AOF is replayed)."""
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
                "--save", "", "--daemonize", "no", "--protected-mode", "no"]
        self.proc = spawn("redis", argv, dict(os.environ), self.dir, self.dir / "redis.log")
        wait_for(self.ping, 10, 0.05, "redis-server to answer")
        return self

    def ping(self) -> bool:
        """True when the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: whatever the AOF had not fsynced is gone."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        """Stop for good."""
        if self.proc is not None:
            self.proc.stop(3)


# ---------------------------------------------------------------- a PostgreSQL proxy the test can cut


class PgProxy:
    """A TCP forwarder 127.0.0.1:<port> → 127.0.0.1:5432; `cut()` closes every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="pgproxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            r, _, _ = select.select([self.listener], [], [], 0.1)
            if not r:
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks |= {conn, upstream}
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)

    def cut(self) -> None:
        """PostgreSQL becomes unreachable: open connections die, new ones are closed at once."""
        self._cut.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        """PostgreSQL is reachable again."""
        self._cut.clear()

    def close(self) -> None:
        """Stop forwarding."""
        self._closed.set()
        self.cut()
        self.listener.close()
        self._thread.join(2)


# ---------------------------------------------------------------- databases


def _admin_engine() -> Any:
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


def _db_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def fault_template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once by `slipway db upgrade` (the real command), copied for each scenario."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import text

    name = f"slipway_fault_tpl_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        cwd = tmp_path_factory.mktemp("upgrade")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "DATABASE_URL": _db_url(name),
               "LOG_FORMAT": "json"}
        done = subprocess.run([str(SLIPWAY), "db", "upgrade"], env=env, cwd=cwd, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fault_db(fault_template_db: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one scenario, dropped afterwards."""
    from sqlalchemy import text

    name = f"slipway_fault_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{fault_template_db}"'))
    try:
        yield _db_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---------------------------------------------------------------- the fake GitHub


class TimedCalls(list):
    """fake.calls that stamps each call with when it arrived: `call.at` (monotonic) and `call.wall` (epoch)."""

    def append(self, call: Any) -> None:  # noqa: D102
        call.at, call.wall, call.fault = time.monotonic(), time.time(), None
        super().append(call)


def prepare_fake(fake: Any) -> Any:
    """Time-stamp its calls, tag each call an injected fault hit (`call.fault`), and make every push to main
    deploy to staging (no required checks)."""
    fake.calls = TimedCalls(fake.calls)
    take = fake._take_fault

    def tagged(method: str, path: str) -> Any:
        fault = take(method, path)  # called under the fake's lock right after the call was appended
        if fault is not None and fake.calls:
            fake.calls[-1].fault = fault
        return fault

    fake._take_fault = tagged
    fake.set_file(factories.REPO, ".github/slipway.yml", STAGING_ON_PUSH)
    return fake


@pytest.fixture
def gh(fake_github: Any) -> Any:
    """The fake GitHub with the App installed on octo-org/hello, whose config deploys every push to staging."""
    return prepare_fake(fake_github)


def slipway_key(dep: dict[str, Any]) -> str | None:
    """The idempotency key Slipway put in a GitHub deployment's payload."""
    payload = dep.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("slipway"), dict):
        return payload["slipway"].get("key")
    return None


def deployments_by_sha(fake: Any) -> Counter[str]:
    """How many GitHub deployments each commit got."""
    with fake._lock:
        return Counter(d["sha"] for d in fake.deployments.get(factories.REPO, []))


def duplicate_deployments(fake: Any) -> int:
    """Deployments beyond the first for the same Slipway key (must be 0)."""
    with fake._lock:
        keys = Counter(slipway_key(d) for d in fake.deployments.get(factories.REPO, []))
    return sum(n - 1 for k, n in keys.items() if n > 1)


# ---------------------------------------------------------------- the cluster


def sign(body: bytes, secret: str) -> str:
    """X-Hub-Signature-256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Posted:
    """One POST and its answer (status 0 = no answer at all)."""

    guid: str
    status: int
    body: Any
    seconds: float
    sha: str | None = None
    at: float = 0.0  # time.monotonic() when the request started
    raw: bytes = b""  # the body, for a redelivery of the very same bytes


class Cluster:
    """`slipway serve` (gunicorn) and `slipway worker` processes around one database, one Redis and the fake."""

    def __init__(self, workdir: Path, database_url: str, redis: RedisServer, fake: Any, **env: Any) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url  # what the test reads (never through a proxy)
        self.redis = redis
        self.fake = fake
        self.secret = f"fault-secret-{uuid.uuid4().hex}"
        self.extra_secrets: list[str] = []  # more strings that must never be logged (other secrets, API keys)
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "WEBHOOK_SECRET": self.secret,
            "APP_ID": str(APP_ID), "PRIVATE_KEY": fake.private_key_pem.decode(), "GITHUB_API_URL": fake.url,
            "GITHUB_TIMEOUT": "2", "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "2",
            "JOB_LEASE_SECONDS": "8", "REQUEUE_AFTER_SECONDS": "8", "SWEEP_INTERVAL": "1", "MAX_ATTEMPTS": "6",
            "LOG_FORMAT": "json", "LOG_LEVEL": "info",
        }
        if SMALL_CA_FILE:
            self.env["SSL_CERT_FILE"] = SMALL_CA_FILE
        self.env.update({k.upper(): str(v) for k, v in env.items()})
        self.web: Proc | None = None
        self.workers: list[Proc] = []
        self.procs: list[Proc] = []
        self._engine: Any = None
        self._n = 0
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=15)

    # ---- processes

    def _spawn(self, name: str, *args: str) -> Proc:
        self._n += 1
        proc = spawn(name, [str(SLIPWAY), *args], self.env, self.dir, self.dir / f"{self._n:02d}-{name}.log")
        self.procs.append(proc)
        return proc

    def start(self, workers: int = 3) -> Cluster:
        """Start the web server and `workers` worker processes; return when the web answers."""
        self.web = self._spawn("serve", "serve")
        for _ in range(workers):
            self.start_worker()
        wait_for(self._web_up, 30, 0.1, "slipway serve to answer /healthz")
        return self

    def _web_up(self) -> bool:
        assert self.web is not None and self.web.alive(), self.tail(self.web)
        try:
            return self.http.get("/healthz", timeout=1).status_code == 200
        except Exception:
            return False

    def start_worker(self) -> Proc:
        """One more `slipway worker`."""
        proc = self._spawn("worker", "worker")
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[Proc]:
        """Worker processes still running."""
        return [w for w in self.workers if w.alive()]

    def web_pids(self) -> list[int]:
        """The gunicorn worker processes that answer requests."""
        assert self.web is not None
        return children(self.web.pid)

    def stop(self) -> None:
        """Stop every process of this cluster (idempotent)."""
        for proc in reversed(self.procs):
            proc.stop()
        self.http.close()
        if self._engine is not None:
            self._engine.dispose()

    def tail(self, proc: Proc | None, n: int = 3000) -> str:
        """The end of a process's log (for assertion messages)."""
        if proc is None or not proc.log.exists():
            return ""
        return proc.log.read_bytes()[-n:].decode("utf-8", "replace")

    # ---- requests

    def post_raw(self, event: str, body: bytes, *, guid: str | None = None, signature: str | None = None,
                 content_type: str = "application/json", headers: dict[str, str] | None = None,
                 timeout: float = 15) -> Posted:
        """POST to the GitHub endpoint; never raises (status 0 = connection failed)."""
        guid = guid or str(uuid.uuid4())
        hdrs = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "Content-Type": content_type,
                "X-Hub-Signature-256": signature if signature is not None else sign(body, self.secret),
                "User-Agent": "GitHub-Hookshot/fault"}
        hdrs.update(headers or {})
        started = time.monotonic()
        try:
            resp = self.http.post("/api/github/webhooks", content=body,
                                  headers={k: v for k, v in hdrs.items() if v is not None}, timeout=timeout)
            status, answer = resp.status_code, _json(resp.content)
        except Exception as exc:  # noqa: BLE001 - a refused or dropped request is a result
            status, answer = 0, repr(exc)
        return Posted(guid, status, answer, time.monotonic() - started, at=started, raw=body)

    def redeliver(self, p: Posted, event: str = "push") -> Posted:
        """GitHub's redelivery: the same GUID, the same bytes, the same signature."""
        again = self.post_raw(event, p.raw, guid=p.guid)
        again.sha = p.sha
        return again

    def post(self, event: str, payload: dict[str, Any], **kw: Any) -> Posted:
        """POST a JSON payload, signed."""
        return self.post_raw(event, json.dumps(payload).encode(), **kw)

    def push(self, n: int | str, **kw: Any) -> Posted:
        """POST one push to main whose commit is new: exactly one staging deployment expected."""
        sha = factories.sha(f"{self.secret}-{n}")
        posted = self.post("push", factories.push(after=sha, pushed_at=PUSHED_AT), **kw)
        posted.sha = sha
        return posted

    # ---- the database, read by the test directly

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(self.database_url, pool_size=2)
        return self._engine

    def rows(self, guids: list[str] | None = None) -> dict[str, Any]:
        """guid → delivery row (all rows, or these GUIDs)."""
        from sqlalchemy import select

        from models import Delivery

        stmt = select(Delivery.guid, Delivery.state, Delivery.attempts, Delivery.error, Delivery.note,
                      Delivery.event, Delivery.next_attempt_at)
        if guids is not None:
            stmt = stmt.where(Delivery.guid.in_(guids))
        with self.engine.connect() as conn:
            return {r.guid: r for r in conn.execute(stmt)}

    def wait_terminal(self, guids: list[str], timeout: float) -> dict[str, Any]:
        """Wait until every GUID is stored in a terminal state; returns the rows (even on time-out)."""
        deadline = time.monotonic() + timeout
        rows: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rows = self.rows(guids)
            if len(rows) == len(set(guids)) and all(r.state in TERMINAL for r in rows.values()):
                return rows
            time.sleep(0.5)
        return rows

    # ---- logs

    def leaks(self) -> list[str]:
        """Log lines of this cluster's processes that carry a secret, a token, a JWT, a key."""
        patterns = [*LEAK_PATTERNS, *(re.compile(re.escape(x)) for x in [self.secret, *self.extra_secrets])]
        found = []
        for proc in self.procs:
            if not proc.log.exists():
                continue
            for line in proc.log.read_text("utf-8", "replace").splitlines():
                if any(p.search(line) for p in patterns):
                    found.append(f"{proc.log.name}: {line[:300]}")
        return found

    def log_lines(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of every process (or of processes with this name)."""
        out = []
        for proc in self.procs:
            if name is not None and proc.name != name or not proc.log.exists():
                continue
            for line in proc.log.read_text("utf-8", "replace").splitlines():
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        continue
        return out


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content[:200]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for one scenario (never the shared one)."""
    if not Path(REDIS_SERVER).exists():
        message = "the redis-server binary is not installed (fault scenarios start private Redis servers)"
        if IN_CI:
            pytest.fail(message + " (CI=true: fault scenarios must not be skipped)", pytrace=False)
        pytest.skip(message)
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_proxy() -> Iterator[PgProxy]:
    """A cuttable TCP proxy in front of the shared PostgreSQL."""
    proxy = PgProxy()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def make_cluster(tmp_path: Path, fault_db: str, redis_server: RedisServer, gh: Any) -> Iterator[Any]:
    """Build clusters (started by the test); every process is stopped when the test ends."""
    built: list[Cluster] = []

    def make(database_url: str | None = None, **env: Any) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(built)}", fault_db, redis_server, gh, **env)
        if database_url is not None:
            c.env["DATABASE_URL"] = database_url
        built.append(c)
        return c

    try:
        yield make
    finally:
        for c in built:
            c.stop()


@contextmanager
def infrastructure(workdir: Path, template_db: str, **env: Any) -> Iterator[Cluster]:
    """Everything a cluster needs, built and torn down together (for module-scoped clusters)."""
    from sqlalchemy import text

    from tests.fakegithub import FakeGitHub, generate_private_key_pem

    name = f"slipway_fault_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    redis = fake = cluster = None
    try:
        redis = RedisServer(workdir / "redis").start()
        fake = FakeGitHub(app_id=APP_ID, private_key_pem=generate_private_key_pem())
        fake.add_installation(factories.INSTALLATION_ID)
        fake.add_repo(factories.REPO, factories.INSTALLATION_ID)
        fake.start()
        prepare_fake(fake)
        cluster = Cluster(workdir / "cluster", _db_url(name), redis, fake, **env)
        yield cluster
        assert fake.errors == [], "the fake GitHub itself failed"
    finally:
        if cluster is not None:
            cluster.stop()
        if redis is not None:
            redis.stop()
        if fake is not None:
            fake.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class RawAnswer:
    """What a raw HTTP exchange produced."""

    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server took before it answered or closed
    seconds: float


def raw_http(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"", *,
             body_size: int | None = None, chunked: bool = False, chunk: int = 1 << 20,
             wait_first: float = 0.0, timeout: float = 20.0) -> RawAnswer:
    """One HTTP/1.1 request over a plain socket, so the test controls exactly what goes on the wire.

    `body_size` streams that many filler bytes instead of `body` (never held in memory at once);
    `chunked` sends them with Transfer-Encoding: chunked and no Content-Length; `wait_first` waits that
    long for an early answer after the headers before sending any of the body. Sending stops as soon as
    the server answers or closes; the answer is then read.
    """
    started = time.monotonic()
    total = body_size if body_size is not None else len(body)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = 0
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        early = select.select([sock], [], [], wait_first)[0] if wait_first else []
        if not early:
            filler = b"x" * chunk
            try:
                while sent < total:
                    piece = body[sent:sent + chunk] if body_size is None else filler[:min(chunk, total - sent)]
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                    sent += len(piece)
                    if select.select([sock], [], [], 0)[0]:
                        break  # the server answered (or closed) before the whole body was sent
                else:
                    if chunked:
                        sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server closed its side: read what it said
        data = b""
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except OSError:
            pass
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n") if head else ("",)
    parts = status_line.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return RawAnswer(status, hdrs, rest, sent, time.monotonic() - started)


def proxied_url(database_url: str, proxy: PgProxy) -> str:
    """The database URL, through the proxy."""
    return database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def report(scenario: str, *, sent: int, accepted: int, terminal: int, duplicated: int, lost: int,
           **extra: Any) -> Summary:
    """Record a scenario's summary line (printed at the end of the run) and return it."""
    s = Summary(scenario, sent, accepted, terminal, duplicated, lost, extra)
    SUMMARIES.append(s)
    print(s.line())
    return s


def push_outcome(cluster: Cluster, posted: list[Posted], scenario: str, **extra: Any) -> tuple[Summary, dict]:
    """Count a push stream: accepted = 2xx; terminal, duplicated and lost are read from the database and the fake.

    lost = accepted pushes that are not terminal, plus those terminal without their one GitHub deployment.
    """
    accepted = [p for p in posted if 200 <= p.status < 300]
    rows = cluster.rows([p.guid for p in accepted])
    per_sha = deployments_by_sha(cluster.fake)
    terminal = [p for p in accepted if p.guid in rows and rows[p.guid].state in TERMINAL]
    undeployed = [p for p in terminal if per_sha.get(p.sha or "", 0) == 0]
    dup = max(duplicate_deployments(cluster.fake), sum(n - 1 for n in per_sha.values() if n > 1))
    summary = report(scenario, sent=len(posted), accepted=len(accepted), terminal=len(terminal), duplicated=dup,
                     lost=len(accepted) - len(terminal) + len(undeployed), **extra)
    return summary, rows
