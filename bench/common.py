"""Shared helpers of bench/worker.py, bench/e2e.py and bench/memory.py.

Everything a run sets up is registered with a `Run` and torn down by it, in reverse order, also on an
error, Ctrl-C, SIGTERM or when the time budget runs out:

- a PostgreSQL database `slipway_bench_<hex>` on 127.0.0.1 (`slipway db upgrade` makes the schema), dropped;
- a Redis database index reserved the way tests/conftest.py `redis_db` does (key `slipway-test:db:<n>` in
  db 0, SET NX with a 3 h expiry), flushed before and after, the reservation deleted;
- subprocesses (`slipway serve`, `slipway worker`, the fake GitHub, RQ's no-op worker), each in its own
  session, stopped by PID (SIGTERM, then SIGKILL for whatever is left of its process group);
- the fake GitHub API (tests/fakegithub.py) in a process of its own, so its CPU is counted apart and it does
  not share a GIL with anything measured. It is driven over stdin/stdout JSON lines (see `_fake_main`).

Only the standard library is imported at the top: RQ imports this module in the no-op worker
(`common.noop`), and that import must cost nothing.

    python bench/common.py fake ...        (started by FakeGitHubProcess)
    python bench/common.py noop-worker ... (started by start_noop_worker)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import errno
import hashlib
import hmac
import http.client
import importlib.metadata as md
import json
import math
import os
import platform
import random
import re
import resource
import secrets
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
SLIPWAY = BIN / "slipway"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = BENCH / "results"
ENDPOINT = "/api/github/webhooks"
PG_ADMIN = os.environ.get("SLIPWAY_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("SLIPWAY_BENCH_REDIS", "redis://127.0.0.1:6379").rstrip("/")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

APP_ID = 12345
INSTALLATION_ID = 4242
OWNER = "octo-org"
QUEUE = "slipway"             # slipway.transport.QUEUE_NAME
JOB_PATH = "workers.jobs.process_deliveries"  # slipway.transport.JOB_PATH
NOOP_QUEUE = "bench-noop"
NOOP_PATH = "common.noop"
# The repositories' .github/slipway.yml: pushes to the default branch deploy to staging with no CI gate.
REPO_CONFIG = "environments:\n  staging:\n    on: push\n    required_checks: []\n"
CAUTION_OTHER_PCT = 10.0      # other processes above this share of the machine -> caution line


class BenchError(RuntimeError):
    """A check failed or something could not be set up."""


class BudgetExceeded(BenchError):
    """The run took longer than its time budget."""


def noop(guid: str) -> None:
    """RQ's no-op job for the baseline: takes a delivery id like process_delivery and returns None."""
    return None


_TAG = "bench"


def set_tag(tag: str) -> None:
    global _TAG
    _TAG = tag


def log(msg: str) -> None:
    print(f"[{_TAG} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the run: budget and clean-up


class Run:
    """Owns everything a benchmark starts; `close()` undoes it all in reverse order, exactly once."""

    def __init__(self, name: str, budget_s: int) -> None:
        set_tag(name)
        self.name = name
        self.budget_s = budget_s
        self.started = time.monotonic()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = RESULTS / f"{name}-{stamp}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self.procs: list[Proc] = []

    def __enter__(self) -> Run:
        def on_alarm(*_: object) -> None:
            raise BudgetExceeded(f"the benchmark took longer than its {self.budget_s} s budget")

        def on_term(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, on_alarm)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.alarm(self.budget_s)
        log(f"time budget {self.budget_s} s; files in {self.dir.relative_to(ROOT)}")
        return self

    def __exit__(self, *exc: object) -> None:
        signal.alarm(0)
        self.close()

    def on_close(self, what: str, fn: Callable[[], None]) -> None:
        self._undo.append((what, fn))

    def close(self) -> None:
        # Ctrl-C or the alarm during clean-up must not leave half of it undone.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            while self._undo:
                what, fn = self._undo.pop()
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - keep cleaning up
                    log(f"clean-up of {what} failed: {type(exc).__name__}: {exc}")
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def start(self, proc: Proc) -> Proc:
        proc.start()
        self.procs.append(proc)
        self.on_close(f"{proc.name} (pid {proc.pid})", proc.stop)
        return proc


# --------------------------------------------------------------------------- processes


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(comm, ppid, pgid, utime+stime ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    return comm, int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            children[st[1]].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if proc_stat(pid) is not None:
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem of a process from /proc/<pid>/status, in kB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class Proc:
    """A subprocess in its own session, stopped by its PID."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    stdin: Any = subprocess.DEVNULL
    stdout: Any = None          # None: into the log file with stderr
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    known: set[int] = field(default_factory=set)

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=self.stdin,
                                      stdout=self.stdout if self.stdout is not None else self._log,
                                      stderr=self._log, start_new_session=True)
        log(f"started {self.name} (pid {self.popen.pid}): {shlex.join(self.argv)}")

    @property
    def pid(self) -> int:
        assert self.popen
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tree(self) -> list[int]:
        """This process and its children (remembered, so stop() can find stragglers)."""
        if not self.alive():
            return []
        pids = descendants(self.pid)
        self.known.update(pids)
        return pids

    def children(self) -> list[int]:
        return [p for p in self.tree() if p != self.pid]

    def log_tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait(self, timeout: float) -> int | None:
        assert self.popen
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 25.0) -> None:
        """SIGTERM to the process, SIGKILL after `timeout`; then SIGKILL by PID what is left in its group."""
        if self.popen is None:
            return
        pid = self.pid
        if self.popen.poll() is None:
            self.known.update(descendants(pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if self.wait(timeout) is None:
                log(f"{self.name} (pid {pid}) ignored SIGTERM for {timeout:.0f} s; SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.wait(5)
        left = []
        for p in sorted(self.known - {pid}):
            st = proc_stat(p)
            if st and st[2] == pid:  # still in the process group we started
                left.append(p)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        log(f"stopped {self.name} (pid {pid}, exit {self.popen.returncode})"
            + (f"; killed leftover pids {left}" if left else ""))
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
        self.popen = None
        self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PostgreSQL and Redis


def _loopback(url: str, what: str) -> None:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise BenchError(f"{what} must be on this machine (127.0.0.1), not {host!r}")


class Database:
    """A throwaway PostgreSQL database of this run."""

    def __init__(self, run: Run, admin_url: str = PG_ADMIN) -> None:
        import psycopg

        _loopback(admin_url, "PostgreSQL")
        self.psycopg = psycopg
        self.admin_url = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.name = f"slipway_bench_{secrets.token_hex(4)}"
        self.url = self.admin_url.rsplit("/", 1)[0] + "/" + self.name   # libpq form; Slipway normalises it
        self._conn: Any = None
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        run.on_close(f"database {self.name}", self.drop)
        log(f"created database {self.name}")

    def upgrade(self, run: Run, env: dict[str, str]) -> None:
        """`slipway db upgrade`: Alembic migrations are the only way Slipway's schema is made."""
        out = subprocess.run([str(SLIPWAY), "db", "upgrade"], env=env, cwd=run.dir, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"slipway db upgrade failed: {out.stderr[-2000:]}")

    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        return self._conn

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        return self.conn().execute(sql, args or None).fetchall()

    def scalar(self, sql: str, *args: Any) -> Any:
        return self.conn().execute(sql, args or None).fetchone()[0]

    def backend_pids(self) -> set[int]:
        return {r[0] for r in self.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")}

    def drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        with self.psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        log(f"dropped database {self.name}")


class RedisSpace:
    """A Redis database index of this run's own, reserved like tests/conftest.py `redis_db`."""

    def __init__(self, run: Run, base: str = REDIS_BASE) -> None:
        from redis import Redis

        _loopback(base, "Redis")
        self.lock = Redis.from_url(f"{base}/0")
        self.owner = f"bench-{run.name}-{os.getpid()}"
        indices = list(range(1, 16))
        random.Random(os.getpid()).shuffle(indices)
        for index in indices:
            if self.lock.set(f"slipway-test:db:{index}", self.owner, nx=True, ex=3 * 3600):
                break
        else:
            raise BenchError("every Redis database index 1-15 is reserved (slipway-test:db:<n> in db 0)")
        self.index = index
        self.url = f"{base}/{index}"
        self.client = Redis.from_url(self.url)
        self.client.flushdb()
        run.on_close(f"Redis db {index}", self.release)
        log(f"reserved Redis db {index} (slipway-test:db:{index} in db 0) and flushed it")

    def flush(self) -> None:
        self.client.flushdb()

    def release(self) -> None:
        self.client.flushdb()
        self.client.close()
        if (self.lock.get(f"slipway-test:db:{self.index}") or b"").decode() == self.owner:
            self.lock.delete(f"slipway-test:db:{self.index}")
        self.lock.close()
        log(f"flushed and released Redis db {self.index}")

    def server_pid(self) -> int | None:
        with contextlib.suppress(Exception):
            return int(self.client.info("server")["process_id"])
        return None

    def queue_state(self, queue: str) -> tuple[int, int, int]:
        """(waiting, being moved to a worker, started) jobs of an RQ queue."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(f"rq:queue:{queue}")
        pipe.llen(f"rq:queue:{queue}:intermediate")
        pipe.zcard(f"rq:wip:{queue}")
        a, b, c = pipe.execute()
        return int(a), int(b), int(c)


def enqueue_jobs(redis_url: str, queue: str, func_path: str, guids: list[str]) -> None:
    """Enqueue one job per GUID exactly as slipway.transport.RQTransport.enqueue does (same options)."""
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(redis_url)
    q = Queue(queue, connection=conn)
    for i in range(0, len(guids), 500):
        datas = [Queue.prepare_data(func_path, args=(g,), result_ttl=0, failure_ttl=7 * 86400, timeout=110,
                                    description=f"delivery {g}") for g in guids[i:i + 500]]
        with conn.pipeline() as pipe:
            q.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    conn.close()


# --------------------------------------------------------------------------- the fake GitHub, in its own process


class FakeGitHubProcess:
    """tests/fakegithub.py in a subprocess: one installation, `repos` repositories with REPO_CONFIG."""

    def __init__(self, run: Run, repos: list[str]) -> None:
        self.pem_path = run.dir / "app-private-key.pem"
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        argv = [sys.executable, str(Path(__file__)), "fake", "--pem", str(self.pem_path), "--repos", ",".join(repos)]
        self.proc = run.start(Proc("fake GitHub", argv, env, run.dir, run.dir / "fakegithub.log",
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        self._lock = threading.Lock()
        run.on_close("fake GitHub (stop command)", self._stop)
        hello = self._read(timeout=60)
        self.url = hello["url"]
        self.pid = self.proc.pid

    def _stop(self) -> None:
        """Ask the fake to stop (it closes its connections and exits 0); Proc.stop follows."""
        if self.proc.alive() and self.proc.popen and self.proc.popen.stdin:
            with contextlib.suppress(OSError, ValueError):
                self.proc.popen.stdin.write(b'{"cmd": "stop"}\n')
                self.proc.popen.stdin.flush()
                self.proc.popen.stdin.close()
            self.proc.wait(10)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.popen and self.proc.popen.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.popen.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            raise BenchError(f"the fake GitHub did not answer in {timeout:.0f} s; log:\n{self.proc.log_tail()}")
        line = self.proc.popen.stdout.readline()
        if not line:
            raise BenchError(f"the fake GitHub exited; log:\n{self.proc.log_tail()}")
        return json.loads(line)

    def ask(self, cmd: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        with self._lock:
            assert self.proc.popen and self.proc.popen.stdin
            self.proc.popen.stdin.write((json.dumps({"cmd": cmd, **kw}) + "\n").encode())
            self.proc.popen.stdin.flush()
            return self._read(timeout)

    def deploy_times(self, since: int = 0) -> dict[str, list[float]]:
        """{sha: [monotonic, wall]} of each deployment POST answered 201, from the `since`-th on."""
        return self.ask("deployments", since=since)["times"]

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")


def _fake_main(argv: list[str]) -> int:
    """The fake GitHub process: serve, and answer JSON-line commands on stdin until EOF or 'stop'."""
    p = argparse.ArgumentParser()
    p.add_argument("--pem", required=True)
    p.add_argument("--repos", required=True)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.fakegithub import FakeGitHub, generate_private_key_pem

    deploy_path = re.compile(r"^/repos/[^/]+/[^/]+/deployments$")
    norm = [(re.compile(r"/[0-9a-f]{40}(?=/|$)"), "/{sha}"), (re.compile(r"/\d+(?=/|$)"), "/{id}"),
            (re.compile(r"^/repos/[^/]+/[^/]+"), "/repos/{o}/{r}")]

    class BenchFake(FakeGitHub):
        """Records when each deployment POST is answered; keeps only the last calls (memory)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.calls = collections.deque(maxlen=500)  # type: ignore[assignment]
            self.deploy_log: list[tuple[str, float, float]] = []
            self.counts: collections.Counter[str] = collections.Counter()
            self.count_lock = threading.Lock()

        def _send(self, handler: Any, answer: Any, call: Any) -> None:
            if call.method == "POST" and answer.status == 201 and deploy_path.match(call.path):
                ref = (call.json or {}).get("ref") if isinstance(call.json, dict) else None
                with self.count_lock:
                    self.deploy_log.append((str(ref), time.monotonic(), time.time()))
            path = call.path
            for rx, sub in norm:
                path = rx.sub(sub, path)
            with self.count_lock:
                self.counts[f"{call.method} {path} {answer.status}"] += 1
            super()._send(handler, answer, call)

    pem = generate_private_key_pem()
    fd = os.open(args.pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    fake = BenchFake(app_id=APP_ID, private_key_pem=pem)
    # GitHub allows an installation 5,000-15,000 requests an hour; a push costs Slipway 5, so the benchmarks
    # would hit that within minutes and measure Slipway's rate-limit back-off (retry in ~1 h) instead.
    fake.rate_limit = 10**9
    fake.add_installation(INSTALLATION_ID, account=OWNER)
    for full_name in args.repos.split(","):
        fake.add_repo(full_name, INSTALLATION_ID)
        fake.set_file(full_name, ".github/slipway.yml", REPO_CONFIG)
    fake.start()
    out = sys.stdout
    out.write(json.dumps({"url": fake.url, "pid": os.getpid()}) + "\n")
    out.flush()
    t_cpu = time.process_time()
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
        except ValueError:
            continue
        name = cmd.get("cmd")
        if name == "stop":
            break
        if name == "deployments":
            with fake.count_lock:
                log_part = fake.deploy_log[int(cmd.get("since", 0)):]
            answer: dict[str, Any] = {"times": {ref: [mono, wall] for ref, mono, wall in log_part}}
        elif name == "stats":
            with fake.count_lock:
                counts = dict(fake.counts)
            answer = {"counts": counts, "deployments": len(fake.deploy_log), "errors": fake.errors[-5:],
                      "n_errors": len(fake.errors), "cpu_s": time.process_time() - t_cpu,
                      "threads": threading.active_count()}
        elif name == "reset_counts":
            with fake.count_lock:
                fake.counts.clear()
            answer = {"ok": True}
        else:
            answer = {"error": f"unknown command {name!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    fake.stop()
    return 0


# --------------------------------------------------------------------------- Slipway processes


SETTINGS_ENV = ("DATABASE_URL", "REDIS_URL", "APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET",
                "GITHUB_API_URL", "HOST", "PORT", "WEB_CONCURRENCY", "SLIPWAY_CONFIG", "LOG_LEVEL", "LOG_FORMAT",
                "METRICS_ENABLED", "SECRET_KEY", "PROVISIONER_SECRET", "ALLOW_PRIVATE_URLS", "KEY_RATE",
                "JOB_LEASE_SECONDS", "REQUEUE_AFTER_SECONDS", "SWEEP_INTERVAL", "MAX_ATTEMPTS", "GITHUB_TIMEOUT")


@dataclass
class Stack:
    """What Slipway needs to run: database, Redis, fake GitHub, secret."""

    run: Run
    db: Database
    redis: RedisSpace
    fake: FakeGitHubProcess
    secret: str
    log_level: str = "warning"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment minus anything Slipway's settings would read, plus production-mode settings."""
        env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
        env.update(DATABASE_URL=self.db.url, REDIS_URL=self.redis.url, WEBHOOK_SECRET=self.secret,
                   APP_ID=str(APP_ID), PRIVATE_KEY_PATH=str(self.fake.pem_path), GITHUB_API_URL=self.fake.url,
                   LOG_LEVEL=self.log_level, LOG_FORMAT="json", PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def serve(self, workers: int, name: str = "slipway serve") -> tuple[Proc, int]:
        port = free_port()
        proc = self.run.start(Proc(name, [str(SLIPWAY), "serve"],
                                   self.env(HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY=str(workers)),
                                   self.run.dir, self.run.dir / "serve.log"))
        wait_http(proc, port, "/healthz", workers)
        return proc, port

    def worker(self, *, burst: bool = False, name: str = "slipway worker", log_name: str = "worker.log") -> Proc:
        argv = [str(SLIPWAY), "worker"] + (["--burst"] if burst else [])
        return self.run.start(Proc(name, argv, self.env(), self.run.dir, self.run.dir / log_name))

    def patched_worker(self, patch: str, log_name: str) -> Proc:
        """`slipway worker --burst` with the in-memory what-if patch `patch` (see _patched_worker_main)."""
        argv = [sys.executable, str(Path(__file__)), "patched-worker"]
        extra = {"BENCH_PATCH": patch}
        if "asynccommit" in patch.split(","):
            extra["PGOPTIONS"] = "-c synchronous_commit=off"
        return self.run.start(Proc(f"slipway worker --burst (what-if: {patch})", argv, self.env(**extra),
                                   self.run.dir, self.run.dir / log_name))

    def noop_worker(self, queue: str = NOOP_QUEUE) -> Proc:
        """RQ's own SimpleWorker in burst mode on a queue of no-op jobs, logging at Slipway's level."""
        env = dict(os.environ, PYTHONPATH=str(BENCH), PYTHONUNBUFFERED="1")
        argv = [sys.executable, str(Path(__file__)), "noop-worker", "--redis", self.redis.url, "--queue", queue,
                "--log-level", self.log_level.upper()]
        return self.run.start(Proc("RQ SimpleWorker (no-op jobs)", argv, env, self.run.dir,
                                   self.run.dir / "noop-worker.log"))


def make_stack(run: Run, repos: list[str], log_level: str = "warning") -> Stack:
    db = Database(run)
    redis = RedisSpace(run)
    fake = FakeGitHubProcess(run, repos)
    stack = Stack(run, db, redis, fake, secrets.token_hex(16), log_level)
    db.upgrade(run, stack.env())
    log(f"schema migrated; fake GitHub at {fake.url} (pid {fake.pid}) with {len(repos)} repositories")
    return stack


def _noop_worker_main(argv: list[str]) -> int:
    """`rq.SimpleWorker([queue]).work(burst=True)` with the Redis options of slipway.transport.RQTransport."""
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    from redis import Redis
    from rq import Queue, SimpleWorker

    import common  # noqa: F401  (what RQ imports for the job: imported now, not inside the first job)

    conn = Redis.from_url(args.redis, socket_timeout=2, socket_connect_timeout=1, health_check_interval=30)
    SimpleWorker([Queue(args.queue, connection=conn)], connection=conn).work(
        burst=True, with_scheduler=False, logging_level=args.log_level)
    return 0


WHAT_IF = {
    "client": "one long-lived githubkit client per installation token (`with GitHub(...)`: httpx connection pool, "
              "keep-alive) instead of a new client and TCP connection per call",
    "nolookup": "no GitHub look-up before a first attempt: `list_deployments` / `list_deployment_statuses` answer [] "
                "without a call (a retry would still look)",
    "redis": "installation token kept in the process until it needs refreshing (Redis still shares it) and the "
             "GitHub-answer counters of /metrics flushed to Redis once a second instead of once per call",
    "asynccommit": "the worker's PostgreSQL sessions with `synchronous_commit=off` (PGOPTIONS; no code change): "
                   "what waiting for the WAL flush of its ~10 commits per push costs",
    "notx": "the worker's engine in AUTOCOMMIT (no BEGIN, COMMIT or ROLLBACK round trips; NOT safe as such, only "
            "measured here with one worker): the ceiling of folding a job's statements into fewer transactions "
            "and running single reads outside one",
}


def _patched_worker_main(argv: list[str]) -> int:
    """What-if runs only: `slipway worker --burst` with parts of Slipway patched IN MEMORY (Slipway's files are
    untouched), counting SQL statements and commits of the job thread.

    BENCH_PATCH: comma-separated names of WHAT_IF ("none" = as shipped, only the counters).
    """
    import atexit

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import app.metrics as am
    import workers.github as wg
    import workers.jobs as wj

    patches = {p for p in os.environ.get("BENCH_PATCH", "none").split(",") if p and p != "none"}
    patches.discard("asynccommit")  # environment only (PGOPTIONS, set by Stack.patched_worker)
    unknown = patches - set(WHAT_IF)
    if unknown:
        raise SystemExit(f"unknown BENCH_PATCH {unknown}")
    if "notx" in patches:
        import models.db as mdb

        shipped_make_engine = mdb.make_engine

        def make_engine(url: str, **kw: Any) -> Any:
            kw.setdefault("isolation_level", "AUTOCOMMIT")
            return shipped_make_engine(url, **kw)

        mdb.make_engine = make_engine  # type: ignore[assignment]
    if "client" in patches:
        clients: dict[Any, Any] = {}
        shipped_client = wg.GitHubApp._client

        def _client(self: Any, auth: Any) -> Any:
            key = getattr(auth, "token", None)
            gh = clients.get(key)
            if gh is None:
                gh = shipped_client(self, auth)
                if key is not None:
                    gh.__enter__()
                    clients[key] = gh
            return gh

        wg.GitHubApp._client = _client  # type: ignore[method-assign]
    if "nolookup" in patches:
        wg.Repo.list_deployments = lambda self, **kw: []  # type: ignore[method-assign]
        wg.Repo.list_deployment_statuses = lambda self, deployment_id: []  # type: ignore[method-assign]
    if "redis" in patches:
        local: dict[int, Any] = {}
        shipped_get, shipped_drop = wg.RedisTokens.get, wg.RedisTokens.drop

        def get(self: Any, installation_id: int) -> Any:
            tok = local.get(installation_id)
            if tok is not None and tok.fresh():
                return tok
            tok = shipped_get(self, installation_id)
            if tok is not None:
                local[installation_id] = tok
            return tok

        def drop(self: Any, installation_id: int, value: Any = None) -> None:
            local.pop(installation_id, None)
            shipped_drop(self, installation_id, value)

        wg.RedisTokens.get, wg.RedisTokens.drop = get, drop  # type: ignore[method-assign]
        pending: collections.Counter[str] = collections.Counter()
        remaining: dict[str, str] = {}
        last = [time.monotonic()]

        def record(self: Any, status: str, resource: str, left: str | None) -> None:
            pending[status] += 1
            if left is not None:
                remaining[resource] = left
            if time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                with self.redis.pipeline(transaction=False) as pipe:
                    for k, v in pending.items():
                        pipe.hincrby(f"{am.REDIS_PREFIX}:github_calls", k, v)
                    for k, v in remaining.items():
                        pipe.hset(f"{am.REDIS_PREFIX}:github_remaining", k, v)
                    pipe.execute()
                pending.clear()
                remaining.clear()

        am.GitHubCalls._record_redis = record  # type: ignore[method-assign]
    stats: collections.Counter[str] = collections.Counter()

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            stats["statements"] += 1

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            stats["commits"] += 1

    @event.listens_for(Engine, "begin")
    def _begin(conn: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            stats["begins"] += 1

    @event.listens_for(Engine, "rollback")
    def _rollback(conn: Any) -> None:
        # A read-only `engine.connect()` block ends its implicit transaction with a ROLLBACK round trip.
        if threading.current_thread() is threading.main_thread():
            stats["rollbacks"] += 1

    shipped_job = wj.process_delivery

    def process_delivery(guid: str) -> str:
        stats["jobs"] += 1
        return shipped_job(guid)

    wj.process_delivery = process_delivery  # type: ignore[assignment]
    atexit.register(lambda: print("BENCHSQL " + json.dumps(dict(stats)), file=sys.stderr, flush=True))
    from slipway.cli import main

    sys.argv = ["slipway", "worker", "--burst"]
    return main()  # type: ignore[func-returns-value]


def wait_http(proc: Proc, port: int, path: str, workers: int, timeout: float = 40.0) -> None:
    """Until the port answers and the gunicorn master has all its workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited; log:\n{proc.log_tail()}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status < 500 and len(proc.children()) >= workers:
                return
        time.sleep(0.2)
    raise BenchError(f"{proc.name} did not become ready in {timeout:.0f} s; log:\n{proc.log_tail()}")


# --------------------------------------------------------------------------- deliveries


API = "https://api.github.com"
WEB = "https://github.com"


def _user(login: str, uid: int, kind: str = "User") -> dict[str, Any]:
    base = f"{API}/users/{login}"
    return {"login": login, "id": uid, "node_id": f"MDQ6VXNlcj{uid:x}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "", "url": base,
            "html_url": f"{WEB}/{login}", "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}", "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs", "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}", "received_events_url": f"{base}/received_events",
            "type": kind, "user_view_type": "public", "site_admin": False}


_URL_FIELDS = ["forks", "keys{/key_id}", "collaborators{/collaborator}", "teams", "hooks", "issue_events{/number}",
               "events", "assignees{/user}", "branches{/branch}", "tags", "git/blobs{/sha}", "git/tags{/sha}",
               "git/refs{/sha}", "git/trees{/sha}", "statuses/{sha}", "languages", "stargazers", "contributors",
               "subscribers", "subscription", "commits{/sha}", "git/commits{/sha}", "comments{/number}",
               "issues/comments{/number}", "contents/{+path}", "compare/{base}...{head}", "merges",
               "{archive_format}{/ref}", "downloads", "issues{/number}", "pulls{/number}", "milestones{/number}",
               "notifications{?since,all,participating}", "labels{/name}", "releases{/id}", "deployments"]


def repository_obj(full_name: str, rid: int, pushed_at: Any) -> dict[str, Any]:
    """A repository object shaped like GitHub's in a push delivery (about 5 KB)."""
    owner, name = full_name.split("/")
    api = f"{API}/repos/{full_name}"
    repo: dict[str, Any] = {"id": rid, "node_id": f"R_kgDO{rid:x}", "name": name, "full_name": full_name,
                            "private": True, "owner": _user(owner, 1, "Organization"),
                            "html_url": f"{WEB}/{full_name}", "description": "Payments API", "fork": False,
                            "url": api}
    for f in _URL_FIELDS:
        key = f.split("{")[0].rstrip("/").replace("/", "_").replace("git_", "git_").replace("issues_comments", "issue_comment") or "archive"
        repo[f"{key}_url"] = f"{api}/{f}"
    repo.update({"created_at": 1_700_000_000, "updated_at": "2026-11-22T07:00:00Z", "pushed_at": pushed_at,
                 "git_url": f"git://github.com/{full_name}.git", "ssh_url": f"git@github.com:{full_name}.git",
                 "clone_url": f"{WEB}/{full_name}.git", "svn_url": f"{WEB}/{full_name}", "homepage": None,
                 "size": 4242, "stargazers_count": 3, "watchers_count": 3, "language": "Python",
                 "has_issues": True, "has_projects": False, "has_downloads": True, "has_wiki": False,
                 "has_pages": False, "has_discussions": False, "forks_count": 0, "mirror_url": None,
                 "archived": False, "disabled": False, "open_issues_count": 2, "license": None,
                 "allow_forking": False, "is_template": False, "web_commit_signoff_required": False,
                 "topics": ["payments"], "visibility": "private", "forks": 0, "open_issues": 2, "watchers": 3,
                 "default_branch": "main", "stargazers": 3, "master_branch": "main", "organization": owner,
                 "custom_properties": {}})
    return repo


def repo_names(n: int) -> list[str]:
    return [f"{OWNER}/service-{i:02d}" for i in range(n)]


@dataclass
class Delivery:
    kind: str            # push | deployment_status | ping
    event: str
    guid: str
    body: bytes
    signature: str
    sha: str | None = None       # push: the commit that should become a GitHub deployment

    def request(self, port: int) -> bytes:
        head = (f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
                f"Content-Type: application/json\r\nX-GitHub-Event: {self.event}\r\n"
                f"X-GitHub-Delivery: {self.guid}\r\nX-GitHub-Hook-ID: 412377105\r\n"
                f"X-GitHub-Hook-Installation-Target-Type: integration\r\n"
                f"X-GitHub-Hook-Installation-Target-ID: {APP_ID}\r\n"
                f"X-Hub-Signature-256: {self.signature}\r\nContent-Length: {len(self.body)}\r\n"
                f"Connection: close\r\n\r\n")
        return head.encode() + self.body


class Deliveries:
    """Signed GitHub-shaped deliveries: pushes (each a new commit on main), deployment_status, ping.

    Pushes go round the repositories with a rising `pushed_at`, so each is the newest candidate for its
    repository's staging. deployment_status deliveries come in threes (queued, in_progress, success) for
    deployments made by another tool (ids 50,000,000+): Slipway records them and does nothing else.
    """

    KINDS = ("push", "deployment_status", "ping")

    def __init__(self, secret: str, repos: list[str], tag: str | None = None) -> None:
        self.secret = secret.encode()
        self.repos = repos
        self.tag = tag or secrets.token_hex(4)
        self.seq = 0
        self.pushed_at = int(time.time())
        self.dep_seq = 0
        self._status_cycle: list[tuple[int, str, str]] = []
        self.sender = _user("octocat", 583231)
        self.repo_objs = {r: repository_obj(r, 700_000_000 + i, 0) for i, r in enumerate(repos)}

    def _sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def _guid(self) -> str:
        self.seq += 1
        return f"{self.tag}-0000-4000-8000-{self.seq:012d}"

    def _body(self, doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    def push(self) -> Delivery:
        guid = self._guid()
        repo = self.repos[self.seq % len(self.repos)]
        sha = hashlib.sha1(f"{self.tag}-{self.seq}".encode()).hexdigest()
        self.pushed_at += 1
        robj = dict(self.repo_objs[repo], pushed_at=self.pushed_at)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        author = {"name": "Octo Cat", "email": "octocat@example.com", "username": "octocat"}
        commit = {"id": sha, "tree_id": hashlib.sha1(sha.encode()).hexdigest(), "distinct": True,
                  "message": f"Fix the reconciliation job (#{self.seq})\n\nThe nightly run skipped refunds.",
                  "timestamp": now, "url": f"{WEB}/{repo}/commit/{sha}", "author": author, "committer": author,
                  "added": [], "removed": [], "modified": ["payments/reconcile.py", "tests/test_reconcile.py"]}
        doc = {"ref": "refs/heads/main", "before": "0" * 39 + "1", "after": sha, "repository": robj,
               "pusher": {"name": "octocat", "email": "octocat@example.com"},
               "organization": {"login": OWNER, "id": 1, "url": f"{API}/orgs/{OWNER}"},
               "sender": self.sender, "installation": {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9u"},
               "created": False, "deleted": False, "forced": False, "base_ref": None,
               "compare": f"{WEB}/{repo}/compare/000000000001...{sha[:12]}", "commits": [commit],
               "head_commit": commit}
        body = self._body(doc)
        return Delivery("push", "push", guid, body, self._sign(body), sha)

    def deployment_status(self) -> Delivery:
        if not self._status_cycle:
            self.dep_seq += 1
            dep_id = 50_000_000 + self.dep_seq
            self._status_cycle = [(dep_id, s, f"2026-11-22T08:{i:02d}:00Z")
                                  for i, s in enumerate(("queued", "in_progress", "success"))]
        dep_id, state, at = self._status_cycle.pop(0)
        guid = self._guid()
        repo = self.repos[dep_id % len(self.repos)]
        sha = hashlib.sha1(f"{self.tag}-dep-{dep_id}".encode()).hexdigest()
        dep = {"url": f"{API}/repos/{repo}/deployments/{dep_id}", "id": dep_id, "node_id": f"DE_kwDO{dep_id:x}",
               "sha": sha, "ref": "main", "task": "deploy", "payload": {}, "original_environment": "qa",
               "environment": "qa", "description": "deployed by the CD system", "creator": _user("cd-bot", 7),
               "created_at": "2026-11-22T08:00:00Z", "updated_at": at,
               "statuses_url": f"{API}/repos/{repo}/deployments/{dep_id}/statuses",
               "repository_url": f"{API}/repos/{repo}", "transient_environment": False,
               "production_environment": False, "performed_via_github_app": None}
        status = {"url": f"{dep['url']}/statuses/{dep_id * 10}", "id": dep_id * 10 + len(self._status_cycle),
                  "node_id": "DES_kwDO", "state": state, "creator": _user("cd-bot", 7),
                  "description": f"{state} on qa", "environment": "qa",
                  "target_url": f"https://ci.example.com/run/{dep_id}", "log_url": f"https://ci.example.com/run/{dep_id}",
                  "environment_url": "https://qa.example.com", "created_at": at, "updated_at": at,
                  "deployment_url": dep["url"], "repository_url": dep["repository_url"],
                  "performed_via_github_app": None}
        doc = {"action": "created", "deployment_status": status, "deployment": dep,
               "repository": dict(self.repo_objs[repo], pushed_at="2026-11-22T07:00:00Z"),
               "organization": {"login": OWNER, "id": 1}, "sender": _user("cd-bot", 7),
               "installation": {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9u"}}
        body = self._body(doc)
        return Delivery("deployment_status", "deployment_status", guid, body, self._sign(body))

    def ping(self) -> Delivery:
        guid = self._guid()
        doc = {"zen": "Design for failure.", "hook_id": 412377105 + self.seq,
               "hook": {"type": "App", "id": 412377105, "name": "web", "active": True,
                        "events": ["push", "deployment_status"], "config": {"content_type": "json",
                                                                            "insecure_ssl": "0",
                                                                            "url": "https://slipway.example.com/api/github/webhooks"},
                        "updated_at": "2026-11-22T07:00:00Z", "created_at": "2026-11-22T07:00:00Z", "app_id": APP_ID,
                        "deliveries_url": f"{API}/app/hook/deliveries"}, "nonce": secrets.token_hex(8)}
        body = self._body(doc)
        return Delivery("ping", "ping", guid, body, self._sign(body))

    def make(self, kind: str) -> Delivery:
        return getattr(self, kind)()

    def mix(self, n: int) -> list[Delivery]:
        """The mix of bench/worker.py: of every 6 deliveries 2 pushes, 3 deployment_status, 1 ping, interleaved."""
        pattern = ["push", "deployment_status", "ping", "deployment_status", "push", "deployment_status"]
        return [self.make(pattern[i % len(pattern)]) for i in range(n)]


MIX_TEXT = "of every 6 deliveries: 2 `push`, 3 `deployment_status`, 1 `ping`, interleaved"


# --------------------------------------------------------------------------- sending


def post_one(port: int, d: Delivery, timeout: float = 30.0) -> int:
    """POST one delivery on a new connection; the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(d.request(port))
        buf = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return int(buf[9:12]) if len(buf) >= 12 else 0


def post_all(port: int, items: list[Delivery], concurrency: int = 4,
             on_progress: Callable[[int], None] | None = None) -> collections.Counter[int]:
    """Closed loop: `concurrency` threads POST every delivery once; returns the count of each status."""
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    it = iter(list(enumerate(items)))
    done = [0]

    def worker() -> None:
        while True:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            try:
                status = post_one(port, nxt[1])
            except OSError:
                status = 0
            with lock:
                statuses[status] += 1
                done[0] += 1
                if on_progress:
                    on_progress(done[0])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    return statuses


def expected_status(d: Delivery) -> int:
    return 200 if d.kind == "ping" else 202


class _Out:
    __slots__ = ("sock", "d", "due", "sent", "sent_wall", "data", "off", "buf")

    def __init__(self, sock: socket.socket, d: Delivery, due: float, data: bytes) -> None:
        self.sock, self.d, self.due, self.data, self.off, self.buf = sock, d, due, memoryview(data), 0, bytearray()
        self.sent = self.sent_wall = 0.0


def paced(port: int, items: list[Delivery], rate: float, *, max_inflight: int = 256,
          drain: float = 10.0) -> list[dict[str, Any]]:
    """Open loop: delivery i is due at t0 + i/rate, one new connection each, from one selector loop.

    Returns, per delivery: guid, kind, sha, due, sent (monotonic, when its first byte went out), sent_wall,
    answered (monotonic), status (0 = no answer).
    """
    sel = selectors.DefaultSelector()
    t0 = time.monotonic() + 0.05
    out: list[dict[str, Any]] = []
    nxt = 0
    inflight = 0
    waiting: collections.deque[tuple[Delivery, float]] = collections.deque()
    t_end = t0 + len(items) / rate

    def finish(c: _Out, status: int) -> None:
        nonlocal inflight
        sel.unregister(c.sock)
        c.sock.close()
        inflight -= 1
        out.append({"guid": c.d.guid, "kind": c.d.kind, "sha": c.d.sha, "due": c.due, "sent": c.sent,
                    "sent_wall": c.sent_wall, "answered": time.monotonic(), "status": status})

    while True:
        now = time.monotonic()
        while nxt < len(items) and t0 + nxt / rate <= now:
            waiting.append((items[nxt], t0 + nxt / rate))
            nxt += 1
        while waiting and inflight < max_inflight:
            d, due = waiting.popleft()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", port))
            c = _Out(s, d, due, d.request(port))
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                out.append({"guid": d.guid, "kind": d.kind, "sha": d.sha, "due": due, "sent": 0.0,
                            "sent_wall": 0.0, "answered": 0.0, "status": 0})
                continue
            inflight += 1
            sel.register(s, selectors.EVENT_WRITE, c)
        if nxt >= len(items) and not waiting and inflight == 0:
            break
        if now > t_end + drain:
            break
        timeout = max(0.0, t0 + nxt / rate - now) if nxt < len(items) else 0.05
        for key, mask in sel.select(min(timeout, 0.05)):
            c: _Out = key.data
            try:
                if mask & selectors.EVENT_WRITE and c.off < len(c.data):
                    if c.off == 0:
                        c.sent, c.sent_wall = time.monotonic(), time.time()
                    c.off += c.sock.send(c.data[c.off:])
                    if c.off >= len(c.data):
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                chunk = c.sock.recv(65536)
                if chunk:
                    c.buf += chunk
                    continue
                finish(c, int(c.buf[9:12]) if len(c.buf) >= 12 else 0)
            except OSError:
                finish(c, 0)
    for key in list(sel.get_map().values()):
        finish(key.data, 0)
    sel.close()
    return out


# --------------------------------------------------------------------------- CPU accounting


def machine_jiffies() -> tuple[int, int]:
    """(total, idle+iowait) jiffies of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]


def machine_busy(seconds: float = 1.0) -> float:
    """% of the whole machine busy over a short sample."""
    t0, i0 = machine_jiffies()
    time.sleep(seconds)
    t1, i1 = machine_jiffies()
    return (1 - (i1 - i0) / max(1, t1 - t0)) * 100


def wait_quiet(max_wait: float, threshold: float = 25.0) -> float:
    """Wait (up to max_wait s) for a second in which the machine is less than `threshold` % busy."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy(1.0)
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy(1.0)
    return busy


def pg_pids(db_name: str) -> list[int]:
    """PostgreSQL processes that count for this run: the server's own (postmaster, WAL writer,
    checkpointer, ...) and the backends of our database; not other clients' backends."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if not st or not st[0].startswith("postgres"):
            continue
        cmd = cmdline(pid)
        is_client = "(" in cmd and ("127.0.0.1(" in cmd or "[local]" in cmd or "::1(" in cmd)
        if not is_client or f" {db_name} " in cmd:
            out.append(pid)
    return out


class CpuMeter:
    """CPU of named groups of processes over an interval, the machine's busy share and 'other' processes.

    groups: name -> callable returning the pids of that group (re-read at start and end; a pid that appears
    during the interval counts in full, one that vanishes before the end is lost).
    """

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]], include_self: bool = True,
                 include_children: bool = False) -> None:
        self.groups = groups
        self.include_self = include_self
        self.include_children = include_children  # 'bench' also counts children waited for (a wrk run)

    def _snap(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"t": time.monotonic(), "machine": machine_jiffies()}
        for name, fn in self.groups.items():
            snap[name] = {p: st[3] for p in set(fn()) if p != os.getpid() and (st := proc_stat(p))}
        ru = resource.getrusage(resource.RUSAGE_SELF)
        snap["self"] = ru.ru_utime + ru.ru_stime
        if self.include_children:
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            snap["self"] += ru.ru_utime + ru.ru_stime
        return snap

    def __enter__(self) -> CpuMeter:
        self.start = self._snap()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = self._snap()

    def result(self) -> dict[str, float]:
        """% of one core per group (+ 'bench' = this process), 'busy' and 'other' in % of the machine."""
        a, b = self.start, self.end
        secs = max(1e-6, b["t"] - a["t"])
        out: dict[str, float] = {}
        for name in self.groups:
            ticks = sum(v - a[name].get(p, 0) for p, v in b[name].items())
            out[name] = ticks / CLK_TCK / secs * 100
        if self.include_self:
            out["bench"] = (b["self"] - a["self"]) / secs * 100
        total = b["machine"][0] - a["machine"][0]
        idle = b["machine"][1] - a["machine"][1]
        ncpu = os.cpu_count() or 1
        busy = (1 - idle / total) * 100 if total else 0.0
        ours = sum(out.values())
        out["busy"] = busy
        out["other"] = max(0.0, busy - ours / ncpu)
        out["seconds"] = secs
        return out


# --------------------------------------------------------------------------- facts and the doc


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    return {"nproc": str(len(os.sched_getaffinity(0))), "cpu": cpu, "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "kernel": platform.release()}


def versions(stack: Stack) -> dict[str, str]:
    return {"Python": platform.python_version(), "Slipway": version("slipway"), "RQ": version("rq"),
            "redis-py": version("redis"), "githubkit": version("githubkit"), "httpx": version("httpx"),
            "SQLAlchemy": version("sqlalchemy"), "psycopg": version("psycopg"), "gunicorn": version("gunicorn"),
            "Flask": version("flask"), "PostgreSQL": str(stack.db.scalar("SHOW server_version")).split()[0],
            "Redis": str(stack.redis.client.info("server")["redis_version"])}


def facts_lines(stack: Stack, busy_before: float, command: str) -> list[str]:
    m = machine_facts()
    v = versions(stack)
    return [f"- **Machine:** nproc {m['nproc']}, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}. "
            f"Machine busy in the second before the run: {busy_before:.0f} %"
            + (" (**other processes were using the CPU**)." if busy_before > CAUTION_OTHER_PCT else "."),
            "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
            f"- **Command:** `{command}`"]


def command_line() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(ROOT)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join([str(exe), str(script), *sys.argv[1:]])


def write_section(title: str, section: str) -> None:
    """Replace `## <title>` (up to the next `## ` heading) in docs/benchmarks.md, or append it."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured on the project's own machine; each section says how.\n"
    pattern = re.compile(r"^## " + re.escape(title) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    body = section.rstrip("\n") + "\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _m: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    DOC.write_text(text.rstrip("\n") + "\n")
    log(f"wrote section '{title}' of {DOC.relative_to(ROOT)}")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile of values (sorted or not); nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def fmt_ms(x: float) -> str:
    return "-" if x != x else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def cpu_caution(rows: list[tuple[str, dict[str, float]]]) -> str | None:
    """A caution line when other processes used more than CAUTION_OTHER_PCT of the machine in any run."""
    worst = max((r["other"] for _, r in rows), default=0.0)
    if worst <= CAUTION_OTHER_PCT:
        return None
    return (f"**Caution:** processes outside the benchmark used up to {worst:.0f} % of the machine during the "
            f"measured runs (column 'other'), so these figures are lower than a quiet machine gives; "
            f"re-run when the machine is idle.")


def pyspy_path() -> str | None:
    import shutil

    return shutil.which("py-spy", path=f"{BIN}:{os.environ.get('PATH', '')}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "fake":
        sys.exit(_fake_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "patched-worker":
        sys.exit(_patched_worker_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "noop-worker":
        sys.exit(_noop_worker_main(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a benchmark's main(): Ctrl-C and BenchError end it with a message (everything started is stopped)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        sys.exit(130)
    except BenchError as exc:
        log(f"failed: {exc}")
        sys.exit(1)
