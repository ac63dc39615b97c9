"""Ingest benchmark: Slipway in production mode beside a bare signature-checking Flask receiver and Probot.

    .venv/bin/python bench/ingest.py            (also: make bench-ingest; --what-if adds synchronous_commit=off)

What it does, all on 127.0.0.1 and bounded in time (about 3 minutes with the defaults, never more than its
time budget):
1. `npm install probot` into a temporary folder (removed at the end) with a do-nothing Probot app; creates a
   PostgreSQL database `slipway_bench_<random>` (bench/common.py Database; admin connection
   SLIPWAY_BENCH_PG_ADMIN), runs `slipway db upgrade` on it and reserves a Redis database index the way the
   test suite does (bench/common.py RedisSpace: `slipway-test:db:<n>` in db 0), flushed before and after.
2. Starts `slipway serve` (granian, WEB_CONCURRENCY workers), `bench/bare_receiver.py` under granian with the
   same options, and `probot run`, each on a free port, and checks them: signed -> 202 (Probot 200), bad
   signature -> 401 (Probot 4xx); Slipway also: same GUID again -> 200 duplicate, same body under a new
   GUID -> 200 replay.
3. (a) Maximum throughput: wrk (if installed; else a Python closed-loop generator) with N connections:
   a warm-up per receiver, then --rounds slices alternating bare, Probot, Slipway, bare, ... (so that load
   from outside the benchmark falls on all alike), pooled. Every request has its own GUID and its own body
   (a sequence number at the end of a ~25 KB pull_request.opened payload), signed.
   (b) Latency at the target loads, paced open-loop by a Python generator (latency counted from each
   request's scheduled send time): bare and Slipway at half the bare rate, Probot and Slipway at Probot's.
4. After each Slipway run, counts the rows of the `delivery` table: every 202 must be a stored row.
5. Writes the section "Ingest" of docs/benchmarks.md (other sections are kept; so is the notes block
   between `<!-- ingest-notes -->` and `<!-- /ingest-notes -->`), unless --no-write.
6. Stops every server it started by PID (also on error and Ctrl-C), drops the database, releases Redis.

With --profile (or by default when the target is missed and py-spy is installed) it samples Slipway's
workers with py-spy during an extra short run and reports where their Python time goes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import errno
import http.client
import json
import os
import platform
import re
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from payload import Signer  # noqa: E402

import common  # noqa: E402
from common import BenchError, CpuMeter, Database, Proc, RedisSpace, Run, descendants, log  # noqa: E402

BIN = common.BIN
DOC = common.DOC
ENDPOINT = common.ENDPOINT
WARMUP_S = 2
PACED_WARMUP_S = 1
POOL_RATE = 8000          # signatures precomputed per second of a wrk run against Slipway (far above its rate)
TARGET_RATIO = 0.5
TARGET_PROBOT_RATIO = 1.0
TARGET_P99_MS = 50.0
PROBOT_VERSION = "13"      # npm install probot@<this> into a temporary folder, never committed
NOTES_START, NOTES_END = "<!-- ingest-notes -->", "<!-- /ingest-notes -->"
PROBOT_APP = "// A Probot app that does nothing: the benchmark measures Probot's receiver.\n" \
             "module.exports = (app) => { app.on(\"pull_request.opened\", async () => {}); };\n"


# --------------------------------------------------------------------------- receivers


@dataclass
class Receiver:
    """One server under test: its process, port, worker count and the status that counts as accepted."""

    name: str
    proc: Proc
    port: int
    workers: int
    ok: int = 202                 # Probot answers 200
    store: bool = False           # Slipway: rows to count, Redis to flush

    def cpu_groups(self, db: Database, redis: RedisSpace) -> dict[str, Any]:
        redis_pid = redis.server_pid()
        return {"server": lambda: descendants(self.proc.pid), "pg": lambda: common.pg_pids(db.name),
                "redis": lambda: [redis_pid] if redis_pid else []}


def measure(rcv: Receiver, db: Database, redis: RedisSpace) -> CpuMeter:
    """CPU of the receiver, PostgreSQL, Redis and the load generator (this process and wrk, its child)."""
    return CpuMeter(rcv.cpu_groups(db, redis), include_children=True)


class ProbotInstall:
    """`npm install probot` into a temporary folder (removed at the end) and a do-nothing app."""

    def __init__(self, run: Run) -> None:
        import tempfile

        npm = shutil.which("npm")
        self.node = shutil.which("node")
        if not npm or not self.node:
            raise BenchError("node and npm are needed for the Probot baseline (apt-get install nodejs npm)")
        self.dir = Path(tempfile.mkdtemp(prefix="slipway-probot-"))
        run.on_close(f"Probot folder {self.dir}", lambda: shutil.rmtree(self.dir, ignore_errors=True))
        (self.dir / "package.json").write_text('{"private": true}\n')
        (self.dir / "app.cjs").write_text(PROBOT_APP)
        t0 = time.monotonic()
        out = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"probot@{PROBOT_VERSION}"],
                             cwd=self.dir, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise BenchError(f"npm install probot failed: {out.stderr[-2000:]}")
        self.version = json.loads((self.dir / "node_modules/probot/package.json").read_text())["version"]
        self.node_version = subprocess.run([self.node, "--version"], capture_output=True, text=True).stdout.strip()
        log(f"installed probot {self.version} (node {self.node_version}) in {self.dir} in {time.monotonic() - t0:.0f} s")

    def proc(self, run: Run, secret: str, port: int) -> Proc:
        """`probot run ./app.cjs` as Probot's users start it: APP_ID, PRIVATE_KEY, WEBHOOK_SECRET, PORT."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir), "APP_ID": "1", "PRIVATE_KEY": key.decode(),
               "WEBHOOK_SECRET": secret, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warn",
               "NODE_ENV": "production"}
        argv = [self.node, str(self.dir / "node_modules/probot/bin/probot.js"), "run", "./app.cjs"]
        return Proc("Probot", argv, env, self.dir, run.dir / "Probot.log")


def reset_store(db: Database, redis: RedisSpace) -> None:
    """Empty the inbox and checkpoint, flush Redis: each Slipway run starts from the same state."""
    db.conn().execute("TRUNCATE delivery RESTART IDENTITY")
    db.conn().execute("CHECKPOINT")
    redis.flush()


def stored_guids(db: Database) -> set[str]:
    return {r[0] for r in db.rows("SELECT guid FROM delivery")}


def queue_length(redis: RedisSpace) -> int:
    return int(redis.client.llen(f"rq:queue:{common.QUEUE}"))


# --------------------------------------------------------------------------- requests


class Requests:
    """Signed, unique requests: GUID and body sequence number come from one integer."""

    def __init__(self, secret: str) -> None:
        self.signer = Signer(secret)
        self.body_size = len(self.signer.body(10**7))

    @staticmethod
    def guid(tag: str, seq: int) -> str:
        """UUID-shaped like GitHub's delivery ids; unique per (tag, seq)."""
        return f"{tag}-0000-4000-8000-{seq:012d}"

    def headers(self, guid: str, signature: str) -> dict[str, str]:
        return {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": guid, "X-GitHub-Hook-ID": "412377105",
                "X-GitHub-Hook-Installation-Target-Type": "integration",
                "X-GitHub-Hook-Installation-Target-ID": "1049384", "User-Agent": "GitHub-Hookshot/9c1e2d8",
                "Content-Type": "application/json", "Accept": "*/*", "X-Hub-Signature-256": signature}

    def raw(self, port: int, tag: str, seq: int) -> bytes:
        """One complete HTTP/1.1 request."""
        body = self.signer.body(seq)
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers(self.guid(tag, seq), self.signer.signature(seq)).items())
        return (f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                .encode() + body)


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", ENDPOINT, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        doc = {"raw": data[:200].decode(errors="replace")}
    return resp.status, doc


def check_receiver(rcv: Receiver, reqs: Requests) -> dict[str, Any]:
    """Signed -> its 2xx, bad signature -> 4xx (Slipway: 401, duplicate GUID -> 200, replayed body -> 200)."""
    name, port = rcv.name, rcv.port
    tag = secrets.token_hex(4)
    seq = 900_000_000 + secrets.randbelow(1_000_000)
    body, sig, guid = reqs.signer.body(seq), reqs.signer.signature(seq), reqs.guid(tag, seq)
    out: dict[str, Any] = {}
    status, doc = post(port, body, reqs.headers(guid, sig))
    if status != rcv.ok:
        raise BenchError(f"{name}: signed delivery answered {status} {doc}, expected {rcv.ok}")
    out["state"] = doc.get("state")
    bad = "sha256=" + ("0" * 64)
    status, doc = post(port, reqs.signer.body(seq + 1), reqs.headers(reqs.guid(tag, seq + 1), bad))
    want_bad = "4xx" if rcv.name == "Probot" else "401"
    if not (400 <= status < 500 if want_bad == "4xx" else status == 401):
        raise BenchError(f"{name}: bad signature answered {status} {doc}, expected {want_bad}")
    checks = [f"signed -> {rcv.ok}", f"bad signature -> {status}"]
    if rcv.store:
        status, doc = post(port, body, reqs.headers(guid, sig))
        if status != 200 or not doc.get("duplicate"):
            raise BenchError(f"{name}: same delivery id again answered {status} {doc}, expected 200 duplicate")
        status, doc = post(port, body, reqs.headers(reqs.guid(tag, seq + 2), sig))
        if status != 200 or doc.get("replay_of") != guid:
            raise BenchError(f"{name}: same body under a new delivery id answered {status} {doc}, expected 200 replay")
        checks += ["same GUID -> 200 duplicate", "same body, new GUID -> 200 replay"]
    out["checks"] = checks
    log(f"{name}: checks passed ({', '.join(checks)}; answer state {out['state']!r})")
    return out


# --------------------------------------------------------------------------- load generators

LUA = r"""-- Written by bench/ingest.py for one benchmark run; not meant to be edited.
-- args: first_seq count wrap|nowrap guid_tag stride
-- Request k of thread t sends sequence number first_seq + (t + k*stride) mod count: its own GUID and body,
-- with the X-Hub-Signature-256 precomputed by ingest.py (sigs.txt: 64 hex characters per sequence number).
local data_dir = "@DATA_DIR@"
local path = "@PATH@"
local threads = {}
local nsetup = 0

function setup(thread)
   thread:set("tid", nsetup)
   nsetup = nsetup + 1
   table.insert(threads, thread)
end

local function slurp(name)
   local f = assert(io.open(data_dir .. "/" .. name, "rb"))
   local s = f:read("*a")
   f:close()
   return s
end

function init(args)
   first = tonumber(args[1]); count = tonumber(args[2]); wrap = (args[3] == "wrap")
   tag = args[4]; stride = tonumber(args[5])
   prefix = slurp("prefix.bin"); suffix = slurp("suffix.bin"); sigs = slurp("sigs.txt")
   k = tid
   n202 = 0; n200 = 0; n401 = 0; nother = 0; wrapped = 0
end

function request()
   local i = k
   k = k + stride
   if i >= count then
      i = i % count
      if not wrap then wrapped = wrapped + 1 end
   end
   local seq = first + i
   local sig = string.sub(sigs, seq * 64 + 1, seq * 64 + 64)
   local body = prefix .. string.format("%d", seq) .. suffix
   local headers = {
      ["X-GitHub-Event"] = "pull_request",
      ["X-GitHub-Delivery"] = string.format("%s-0000-4000-8000-%012d", tag, seq),
      ["X-GitHub-Hook-ID"] = "412377105",
      ["X-GitHub-Hook-Installation-Target-Type"] = "integration",
      ["X-GitHub-Hook-Installation-Target-ID"] = "1049384",
      ["User-Agent"] = "GitHub-Hookshot/9c1e2d8",
      ["Content-Type"] = "application/json",
      ["Accept"] = "*/*",
      ["X-Hub-Signature-256"] = "sha256=" .. sig,
   }
   return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
   if status == 202 then n202 = n202 + 1
   elseif status == 200 then n200 = n200 + 1
   elseif status == 401 then n401 = n401 + 1
   else nother = nother + 1 end
end

function done(summary, latency, requests)
   local c = { n202 = 0, n200 = 0, n401 = 0, nother = 0, wrapped = 0 }
   for _, t in ipairs(threads) do
      for key, _ in pairs(c) do c[key] = c[key] + (tonumber(t:get(key)) or 0) end
   end
   -- the latency distribution at every 0.1 percentile, so runs in several slices can be merged
   local q = {}
   for i = 1, 1000 do q[i] = string.format("%d", latency:percentile(i / 10)) end
   io.write("BENCHQ [" .. table.concat(q, ",") .. "]\n")
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
      '"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
      '"mean_us":%.1f,"n202":%d,"n200":%d,"n401":%d,"nother":%d,"wrapped":%d}\n',
      summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean, c.n202, c.n200, c.n401, c.nother, c.wrapped))
end
"""


@dataclass
class RunResult:
    """One measured run against one receiver."""

    receiver: str
    mode: str                 # "max" or "paced"
    duration_s: float
    completed: int
    n202: int                 # accepted answers: 202 (Slipway, bare) or 200 (Probot)
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    offered_rate: float | None = None
    rows_stored: int | None = None
    rows_missing: int | None = None
    queued_jobs: int | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def rate(self) -> float:
        """Accepted answers per second: stored deliveries for Slipway, verified ones for bare and Probot."""
        return self.n202 / self.duration_s if self.duration_s else 0.0


class Wrk:
    """wrk with a generated Lua script and precomputed signatures."""

    def __init__(self, exe: str, workdir: Path, reqs: Requests, pool: int, threads: int) -> None:
        self.exe, self.workdir, self.pool, self.threads = exe, workdir, pool, threads
        data = workdir / "wrk"
        data.mkdir(exist_ok=True)
        (data / "prefix.bin").write_bytes(reqs.signer.prefix)
        (data / "suffix.bin").write_bytes(reqs.signer.suffix)
        t0 = time.monotonic()
        with open(data / "sigs.txt", "w") as f:
            f.write("".join(reqs.signer.signature_hex(i) for i in range(pool)))
        log(f"precomputed {pool} signatures for wrk in {time.monotonic() - t0:.1f} s")
        self.script = data / "ingest.lua"
        self.script.write_text(LUA.replace("@DATA_DIR@", str(data)).replace("@PATH@", ENDPOINT))
        first = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        m = re.match(r"wrk (debian/)?((\d+\.\d+\.\d+)\S*)", first)
        self.version = (f"wrk {m.group(3)}" + (f" (Debian package {m.group(2)})" if m.group(1) else "")) if m else first.strip()

    def argv(self, port: int, connections: int, seconds: float, first: int, count: int, wrap: bool, tag: str) -> list[str]:
        return [self.exe, f"-t{self.threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "5s", "--latency",
                "-s", str(self.script), f"http://127.0.0.1:{port}{ENDPOINT}", "--",
                str(first), str(count), "wrap" if wrap else "nowrap", tag, str(self.threads)]

    def run(self, port: int, connections: int, seconds: float, first: int, count: int, wrap: bool, tag: str,
            ok: int = 202) -> dict[str, Any]:
        argv = self.argv(port, connections, seconds, first, count, wrap, tag)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]} {proc.stdout[-2000:]}")
        out = json.loads(line[len("BENCHJSON "):])
        qline = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHQ ")), None)
        out["q_us"] = json.loads(qline[len("BENCHQ "):]) if qline else []
        out["stdout"] = proc.stdout
        out["n202"] = out[f"n{ok}"]  # the accepted answers, whatever the receiver's status for them
        return out

    def settings(self, connections: int, slice_s: int, rounds: int) -> str:
        return (f"`wrk -t{self.threads} -c{connections} -d{slice_s}s --timeout 5s --latency -s ingest.lua`, "
                f"{rounds} slices per receiver alternating bare, Slipway, bare, ... ({rounds * slice_s} s each in "
                f"all; a {WARMUP_S} s warm-up each first), so that load from outside the benchmark falls on both "
                "alike; percentiles are those of the pooled slices")


class _Conn:
    """One request on its own non-blocking connection."""

    __slots__ = ("sock", "seq", "due", "data", "off", "buf")

    def __init__(self, sock: socket.socket, seq: int, due: float, data: bytes) -> None:
        self.sock, self.seq, self.due, self.data, self.off, self.buf = sock, seq, due, memoryview(data), 0, bytearray()


def _answer(buf: bytearray, eof: bool) -> int | None:
    """The status code once the answer in buf is complete (Content-Length reached, or EOF), else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0 if eof else None
    m = re.search(rb"(?im)^content-length:\s*(\d+)", bytes(buf[:end]))
    if (m and len(buf) - end - 4 >= int(m.group(1))) or eof:
        return int(buf[9:12])
    return None


def drive(port: int, reqs: Requests, tag: str, first_seq: int, seconds: float, *, rate: float | None = None,
          connections: int | None = None, warmup: float = 0.0, max_inflight: int = 256,
          drain: float = 5.0, ok: int = 202, keepalive: bool = False) -> dict[str, Any]:
    """Send signed, unique requests to 127.0.0.1:port from a selector loop: each on a new connection, or
    with `keepalive` on an idle kept-alive connection when there is one (a new one otherwise).

    Open loop (`rate`): request i is due at t0 + i/rate whatever happened before; at most `max_inflight` are
    open, later ones wait, and latency counts from the due time (no coordinated omission).
    Closed loop (`connections`): that many requests in flight, each answer starts the next; latency counts
    from the connect. Requests due in the first `warmup` seconds are sent but not counted.
    """
    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", port)
    lat: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    ok_guids: list[str] = []
    errors = 0
    inflight = 0
    seq = first_seq
    t0 = time.monotonic() + 0.01
    t_measure = t0 + warmup
    t_stop = t_measure + seconds
    total = int(rate * (warmup + seconds)) if rate else None
    issued = 0
    waiting: collections.deque[float] = collections.deque()
    idle: list[socket.socket] = []

    def start(due: float) -> None:
        nonlocal seq, inflight, errors
        if idle:
            s = idle.pop()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(addr)
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                if due >= t_measure:
                    errors += 1
                return
        c = _Conn(s, seq, due, reqs.raw(port, tag, seq))
        seq += 1
        inflight += 1
        sel.register(s, selectors.EVENT_WRITE, c)

    def finish(c: _Conn, status: int | None) -> None:
        nonlocal inflight, errors
        sel.unregister(c.sock)
        if keepalive and status and b"connection: close" not in bytes(c.buf[:c.buf.find(b"\r\n\r\n")]).lower():
            idle.append(c.sock)
        else:
            c.sock.close()
        inflight -= 1
        if c.due < t_measure:
            return
        if not status:
            errors += 1
            return
        lat.append(time.monotonic() - c.due)
        statuses[status] += 1
        if status == ok:
            ok_guids.append(reqs.guid(tag, c.seq))

    if connections:
        for _ in range(connections):
            start(time.monotonic())
    while True:
        now = time.monotonic()
        if rate:
            while issued < total and t0 + issued / rate <= now:  # type: ignore[operator]
                waiting.append(t0 + issued / rate)
                issued += 1
            while waiting and inflight < max_inflight and now <= t_stop + drain:
                start(waiting.popleft())
            if now > t_stop + drain or (issued >= total and not waiting and inflight == 0):  # type: ignore[operator]
                break
            timeout = max(0.0, t0 + issued / rate - now) if issued < total else 0.05  # type: ignore[operator]
        else:
            if now >= t_stop and (inflight == 0 or now > t_stop + drain):
                break
            timeout = 0.05
        for key, mask in sel.select(min(timeout, 0.05)):
            c: _Conn = key.data
            try:
                if mask & selectors.EVENT_WRITE and c.off < len(c.data):
                    c.off += c.sock.send(c.data[c.off:])
                    if c.off >= len(c.data):
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                chunk = c.sock.recv(65536)
                if chunk:
                    c.buf += chunk
                status = _answer(c.buf, eof=not chunk)
            except OSError:
                status = 0
            if status is not None:
                finish(c, status)
                if connections and time.monotonic() < t_stop:
                    start(time.monotonic())
    for key in list(sel.get_map().values()):  # what did not finish within the drain time
        finish(key.data, 0)
    for sock in idle:
        sock.close()
    errors += sum(1 for due in waiting if due >= t_measure)  # due but never sent: the generator gave up
    sel.close()
    end = time.monotonic()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"completed": len(lat), "n202": statuses.get(ok, 0), "statuses": dict(statuses), "errors": errors,
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "seconds": seconds, "drain_s": max(0.0, end - t_stop), "ok_guids": ok_guids,
            "q_us": [pct(i / 10) * 1000 for i in range(1, 1001)] if lat else []}


def run_paced(port: int, reqs: Requests, tag: str, first_seq: int, rate: float, seconds: float,
              ok: int = 202) -> dict[str, Any]:
    return drive(port, reqs, tag, first_seq, seconds, rate=rate, warmup=PACED_WARMUP_S, ok=ok, keepalive=True)


def run_closed(port: int, reqs: Requests, tag: str, first_seq: int, connections: int, seconds: float,
               ok: int = 202) -> dict[str, Any]:
    """Fallback for (a) when wrk is not installed, in wrk's output shape."""
    out = drive(port, reqs, tag, first_seq, seconds, connections=connections, ok=ok)
    return {"requests": out["completed"], "duration_us": seconds * 1e6, "n202": out["n202"],
            "err_status": sum(v for k, v in out["statuses"].items() if not 200 <= k < 300), "errors": out["errors"],
            "p50_us": out["p50_ms"] * 1000, "p99_us": out["p99_ms"] * 1000, "max_us": out["max_ms"] * 1000,
            "q_us": out["q_us"]}


def merge_slices(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several slices of the same load: sums, and percentiles of the pooled latencies
    (each slice's distribution, known at every 0.1 percentile, weighted by its request count)."""
    total = {k: sum(o.get(k, 0) for o in outs) for k in
             ("requests", "duration_us", "n202", "n200", "n401", "nother", "wrapped", "err_status", "errors",
              "err_connect", "err_read", "err_write", "err_timeout")}
    points = sorted((q, o["requests"] / len(o["q_us"])) for o in outs if o.get("q_us") for q in o["q_us"])
    weight = sum(w for _, w in points)

    def pct(p: float) -> float:
        acc = 0.0
        for q, w in points:
            acc += w
            if acc >= p / 100 * weight:
                return q
        return points[-1][0] if points else float("nan")

    total.update(p50_us=pct(50), p99_us=pct(99), max_us=max(o["max_us"] for o in outs))
    return total


# --------------------------------------------------------------------------- profile


def profile_slipway(pyspy: str, server: Proc, load: Any, seconds: int, out: Path) -> dict[str, Any]:
    """Sample Slipway's granian workers with py-spy while `load()` runs: wall time (--idle) and GIL-holding time.

    Two non-blocking samplers at 100 Hz run side by side: `--idle` counts every sample of a worker (where its
    wall-clock time goes, waits on PostgreSQL included), `--gil` only samples taken while the worker holds the
    GIL (its Python CPU time; waits and most C work that releases the GIL are left out).
    """
    kinds = {"wall": ["--idle"], "gil": ["--gil"]}
    spies = {}
    box: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: box.update(result=load()), daemon=True)
    runner.start()
    time.sleep(1.5)  # sample the steady state: the load runs `seconds` + 2 s, the samplers `seconds`
    for kind, extra in kinds.items():
        raw = out / f"slipway.pyspy-{kind}.txt"
        argv = [pyspy, "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking", "--rate", "100",
                "--duration", str(seconds), "--format", "raw", "--output", str(raw), *extra]
        spies[kind] = (raw, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                             start_new_session=True))
    errs = {}
    try:
        for kind, (_, spy) in spies.items():
            try:
                errs[kind] = spy.communicate(timeout=seconds + 20)[1]
            except subprocess.TimeoutExpired:
                os.kill(spy.pid, signal.SIGINT)
                errs[kind] = spy.communicate(timeout=10)[1]
    finally:
        for _, spy in spies.values():
            if spy.poll() is None:
                os.kill(spy.pid, signal.SIGKILL)
                spy.wait()
        runner.join(seconds + 40)
    if "result" not in box:
        raise BenchError("the load under the profiler did not finish")
    summary: dict[str, Any] = {"load": box["result"]}
    for kind, (raw, _) in spies.items():
        if not raw.exists():
            raise BenchError(f"py-spy ({kind}) wrote nothing: {errs.get(kind, b'').decode(errors='replace')[-1000:]}")
        summary[kind] = summarise_profile(raw)
    return summary


BACKGROUND = "background thread: "


def classify(stack: str) -> str | None:
    """The part of a Slipway request a sampled worker stack belongs to (None: not a worker's)."""
    if "BackgroundEnqueuer" in stack or ("slipway/transport.py" in stack and "Thread.run" in stack):
        # Idle: blocked in queue.get, or in the burst's time.sleep (a C call, so _run itself is the leaf).
        if ("Queue.get (" in stack and "RQTransport" not in stack) or \
                stack.rsplit(";", 1)[-1].startswith("BackgroundEnqueuer._run"):
            return BACKGROUND + "idle, waiting for GUIDs"
        return BACKGROUND + "RQ enqueue off the request path (slipway/transport.py BackgroundEnqueuer)"
    if "wsgi (app/webhooks.py" not in stack:
        if "Flask.__call__" in stack or "wsgi_app" in stack:
            return "Flask (not the webhook path)"
        return None  # granian's own threads (the request's HTTP work happens in Rust, outside Python)
    if "receive (app/webhooks.py" not in stack:
        return "app/webhooks.py mount/_answer: WSGI dispatch, answer document, start_response"
    if "verify_signature (" in stack:
        return "signature check (app/signatures.py verify_signature → githubkit verify, HMAC-SHA256)"
    if "_decode (app/webhooks.py" in stack:
        return "JSON validation + facts of the 25 KB body (app/webhooks.py _decode → simdjson)"
    if "LimitedStream" in stack or "read_body (" in stack:
        return "read the body (app/bodies.py read_body)"
    if "_already_stored (" in stack:
        return "duplicate/replay lookup (app/webhooks.py _already_stored)"
    if ";_enqueue (app/webhooks.py" in stack:
        return "hand-over to the background enqueuer (app/webhooks.py _enqueue → BackgroundEnqueuer.enqueue)"
    if "get_handler (" in stack:
        return "handler lookup (workers/registry.py get_handler)"
    if "_store_and_enqueue (" in stack:
        if "store (workers/groupcommit.py" in stack:
            if "psycopg/" in stack:
                return "DB: the batch INSERT, psycopg execute + wait for PostgreSQL (incl. its commit)"
            if "_lead (" not in stack:
                return "group commit: waiting for the leader's statement (a lock)"
            if "sqlalchemy/" in stack:
                return "group commit leader: pool checkout and check-in (SQLAlchemy)"
            return "group commit leader: batch, parameters, hand-out of results"
        return "app/webhooks.py _store_and_enqueue own lines (values dict, sha256 of the body, utcnow)"
    return "app/webhooks.py receive: other (headers, event name check, facts)"


def summarise_profile(raw: Path) -> dict[str, Any]:
    """Samples by part of the request, and inclusive samples of Slipway's own functions."""
    parts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        part = classify(stack)
        if part is None:
            continue
        count = int(n)
        total += count
        parts[part] += count
        if part.startswith(BACKGROUND):
            continue  # inclusive times: the request thread only
        seen = set()
        for f in stack.split(";"):
            m = re.match(r"(\S+) \(((?:app|models|workers)/\S+?|slipway/(?!cli|server)\S+?):\d+\)", f)
            if m and (key := f"{m.group(2)} {m.group(1)}") not in seen:
                seen.add(key)
                inclusive[key] += count
    background = sum(n for p, n in parts.items() if p.startswith(BACKGROUND))
    return {"samples": total - background, "background": background, "parts": dict(parts),
            "inclusive": dict(inclusive), "raw": str(raw.relative_to(ROOT))}


# --------------------------------------------------------------------------- environment facts


def versions(db: Database, redis: RedisSpace, wrk_version: str | None, probot: ProbotInstall) -> dict[str, str]:
    v = common.version
    return {"Python": platform.python_version(), "Flask": v("flask"), "Werkzeug": v("werkzeug"),
            "granian": v("granian"), "gunicorn": v("gunicorn"), "orjson": v("orjson"), "pysimdjson": v("pysimdjson"),
            "PostgreSQL": str(db.scalar("SHOW server_version")).split()[0],
            "Redis": str(redis.client.info("server")["redis_version"]), "psycopg": v("psycopg"),
            "SQLAlchemy": v("sqlalchemy"), "redis-py": v("redis"), "RQ": v("rq"),
            "Probot": f"{probot.version} (npm, node {probot.node_version})",
            "load generator": wrk_version or "Python selector generator (wrk not installed)"}


def pg_settings(db: Database) -> str:
    names = ["synchronous_commit", "fsync", "shared_buffers", "default_toast_compression"]
    return ", ".join(f"{n}={db.scalar(f'SHOW {n}')}" for n in names)


# --------------------------------------------------------------------------- the doc


def _ms(x: float | None) -> str:
    return "-" if x is None or x != x else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render_section(ctx: dict[str, Any], notes: str) -> str:
    a, b = ctx["a"], ctx["b"]
    a_bare, a_probot, a_sw = a["bare"], a["Probot"], a["Slipway"]
    m, v = ctx["machine"], ctx["versions"]
    lines = [
        "## Ingest",
        "",
        f"Written by `bench/ingest.py` on {ctx['date']} (re-running it replaces this section except the notes block at "
        "its end).",
        "",
        f"- **Machine:** nproc {m['nproc']}, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}. Machine busy in the "
        f"second before the run: {ctx['busy_before']:.0f} %{' (**other processes were using the CPU**)' if ctx['busy_before'] > 25 else ''}.",
        "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- **Command:** `{ctx['command']}` (`make bench-ingest` runs it with the defaults, without `--what-if`).",
        f"- **Slipway:** production mode, `slipway db upgrade` then `slipway serve`: granian (WSGI, HTTP/1, "
        f"{ctx['workers']} workers = WEB_CONCURRENCY, {ctx['blocking_threads']} blocking threads each), PostgreSQL database `slipway_bench_*` on "
        f"127.0.0.1:5432 ({ctx['pg_settings']}), Redis db {ctx['redis_db']} on 127.0.0.1:6379 (reserved like the test "
        f"suite's, `slipway-test:db:<n>`), LOG_LEVEL=warning. Slipway answered the benchmark's deliveries with state "
        f"`{ctx['slipway_state']}`"
        + (" (a handler exists, so each delivery is committed and then handed to RQ from a background thread)"
           if ctx["slipway_state"] == "queued" else "") + ".",
        f"- **Bare receiver:** `bench/bare_receiver.py` (Flask: read the body, HMAC-SHA256 check, 202), on the same "
        f"granian options as Slipway: `{ctx['server_argv']}`.",
        "- **Probot:** the `probot` npm package installed by the benchmark into a temporary folder (removed after), "
        "`probot run ./app.cjs` with APP_ID, PRIVATE_KEY (a throwaway key), the same WEBHOOK_SECRET, LOG_LEVEL=warn, "
        "NODE_ENV=production; the app registers a `pull_request.opened` handler that does nothing. One Node.js "
        "process (Probot has no worker option); it verifies the signature, parses the JSON and answers 200.",
        "- **Checks before measuring:** " + "; ".join(f"{n}: {', '.join(c)}" for n, c in ctx["checks"].items()) + ".",
        f"- **Requests:** `POST {ENDPOINT}`, a {ctx['body_size']:,}-byte `pull_request.opened` body built in "
        "`bench/payload.py`; each request has its own X-GitHub-Delivery GUID and its own body (a sequence number "
        "in a trailing field), signed with X-Hub-Signature-256. wrk keeps its connections alive (all three servers "
        "allow it), and so does the paced generator (b), as a load balancer in front of Slipway would (README, "
        "Scaling out).",
        f"- **Load generator, (a) maximum throughput:** {ctx['gen_a']}. wrk's latency runs from the request's first "
        "byte to the answer's last (the connect is not included).",
        f"- **Load generator, (b) target load:** {ctx['gen_b']}. Rates: 0.5 × bare's rate in (a) (issue #2) and "
        "1.0 × Probot's rate in (a) (issue #8).",
        "- **Counted:** req/s = accepted answers per second: 202 for Slipway (stored deliveries; a 200 duplicate or "
        "replay would not count) and bare, 200 for Probot. Stored rows = rows in `delivery` after the run (before: "
        "`TRUNCATE` + `CHECKPOINT`, Redis `FLUSHDB`); run (a) includes the warm-up's rows, so rows ≥ 202s (warm-up + "
        "run); run (b) checks every 202's GUID in the table. Errors / unanswered: wrk's socket errors and timeouts "
        "in (a); in (b) requests that failed or had no answer within 5 s after the run's end.",
        "",
        "| run | receiver | req/s | p50 ms | p99 ms | max ms | non-2xx | errors / unanswered | accepted | stored rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [*a.values(), *b]
    for r in runs:
        run = (f"(a) max, {ctx['connections']} conn, {r.duration_s:.0f} s" if r.mode == "max"
               else f"(b) paced {r.offered_rate:.0f}/s, {ctx['duration']} s")
        note = "; ".join(x for x in (r.note, f"RQ jobs {r.queued_jobs:,}" if r.queued_jobs is not None else "") if x)
        rows = "-" if r.rows_stored is None else f"{r.rows_stored:,}"
        lines.append(f"| {run} | {r.receiver} | {r.rate:,.0f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {_ms(r.max_ms)} | "
                     f"{r.non2xx} | {r.socket_errors} | {r.n202:,} | {rows}{f' ({note})' if note else ''} |")
    r_bare = a_sw.rate / a_bare.rate if a_bare.rate else 0.0
    r_probot = a_sw.rate / a_probot.rate if a_probot.rate else 0.0

    def p99_ok(r: RunResult) -> bool:
        return r.p99_ms < TARGET_P99_MS and r.n202 >= 0.95 * r.offered_rate * ctx["duration"]  # type: ignore[operator]

    b_half, b_probot = b[1], b[3]
    lines += [
        "",
        f"**Ratios (run a):** Slipway/bare **{r_bare:.2f}** ({a_sw.rate:,.0f} / {a_bare.rate:,.0f} req/s); "
        f"Slipway/Probot **{r_probot:.2f}** ({a_sw.rate:,.0f} / {a_probot.rate:,.0f} req/s); "
        f"Probot/bare {a_probot.rate / a_bare.rate if a_bare.rate else 0:.2f}."
        + (f" What-if, synchronous_commit=off: {a[ASYNC].rate:,.0f} req/s, Slipway/bare "
           f"{a[ASYNC].rate / a_bare.rate:.2f}, Slipway/Probot {a[ASYNC].rate / a_probot.rate:.2f} (not the default: "
           "a 2xx would no longer mean the delivery survives a crash)." if ASYNC in a and a_bare.rate and a_probot.rate
           else ""),
        "",
        f"Targets: issue #2, Slipway ≥ {TARGET_RATIO} × bare with p99 < {TARGET_P99_MS:.0f} ms at that load — rate "
        f"{_verdict(r_bare >= TARGET_RATIO)} ({r_bare:.2f}), p99 {_verdict(p99_ok(b_half))} ({_ms(b_half.p99_ms)} ms at "
        f"{b_half.offered_rate:,.0f} req/s offered, {b_half.rate:,.0f} stored/s). Issue #8, Slipway ≥ "
        f"{TARGET_PROBOT_RATIO} × Probot with p99 < {TARGET_P99_MS:.0f} ms at that load — rate "
        f"{_verdict(r_probot >= TARGET_PROBOT_RATIO)} ({r_probot:.2f}), p99 {_verdict(p99_ok(b_probot))} "
        f"({_ms(b_probot.p99_ms)} ms at {b_probot.offered_rate:,.0f} req/s offered, {b_probot.rate:,.0f} stored/s).",
        "",
    ]
    other = max(r.cpu["other"] for r in runs)
    if other > 15:
        lines += [f"**Caution:** processes outside the benchmark used up to {other:.0f} % of the machine during the "
                  "measured runs (table below), so these figures are lower than a quiet machine gives.", ""]
    lines += [
        "CPU during each measured run (% of one core; the machine has "
        f"{m['nproc']} cores = {int(m['nproc']) * 100} %; PostgreSQL = the benchmark database's backends and the "
        "server's own processes; busy/other in % of the whole machine, 'other' = processes that are not part of the "
        "benchmark, other clients' PostgreSQL backends included):",
        "",
        "| run | receiver | server | PostgreSQL | Redis | load generator | machine busy | other | server CPU µs/req | PostgreSQL CPU µs/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c = r.cpu
        us = (lambda pct: f"{pct * 1e4 / r.rate:,.0f}" if r.rate else "-")  # noqa: E731
        lines.append(f"| {'(a)' if r.mode == 'max' else '(b) ' + r.note.split(';')[0]} | {r.receiver} | "
                     f"{c['server']:.0f} | {c['pg']:.0f} | {c['redis']:.0f} | {c['gen']:.0f} | {c['busy']:.0f} | "
                     f"{c['other']:.0f} | {us(c['server'])} | {us(c['pg']) if r.rows_stored is not None else '-'} |")
    prof = ctx.get("profile")
    if prof:
        wall, gil = prof["wall"], prof["gil"]
        # Little's law: request threads busy on average (their samples / sampled seconds / 100 Hz) per delivery/s
        busy = wall["samples"] / (prof["secs"] * 100)
        per_req = busy * 1000 / prof["rate"] if prof["rate"] else 0.0  # thread-ms per stored delivery
        lines += [
            "",
            "### Where a Slipway worker's time goes (py-spy)",
            "",
            f"{prof['how']} Wall: {wall['samples']:,} samples of the {prof['workers']} workers' request threads, "
            "in any state (waits included); GIL: "
            f"{gil['samples'] + gil['background']:,} samples taken while a worker thread held the GIL, i.e. ran Python "
            "code (on a CPU, or runnable and waiting for one: on a saturated machine these add up to more than the "
            "CPU time). "
            f"On average {busy:.1f} request threads were inside a request (samples / {prof['secs']} s / 100 Hz); "
            f"ms/request = share of wall time × {busy:.1f} / rate = share × {per_req:.2f} ms. "
            + (f"Besides the request thread, each worker has a background thread; it was busy (not waiting for work) "
               f"{100 * sum(n for p, n in wall['parts'].items() if p.startswith(BACKGROUND) and 'idle' not in p) / max(1, wall['samples']):.0f} % "
               "as long as the request threads ran. " if wall["background"] else "")
            + f"Raw stacks: `{wall['raw']}`, `{gil['raw']}` (not committed).",
            "",
            "| part of the request | % of the request thread's wall time | wall ms per request | % of GIL-holding samples (Python CPU) |",
            "|---|---|---|---|",
        ]
        gil_total = max(1, gil["samples"] + gil["background"])
        names = sorted(set(wall["parts"]) | set(gil["parts"]),
                       key=lambda n: (n.startswith(BACKGROUND), -wall["parts"].get(n, 0)))
        for name in names:
            g = gil["parts"].get(name, 0) / gil_total
            if name.startswith(BACKGROUND):
                if "idle" not in name:
                    lines.append(f"| {name} | - | - | {100 * g:.1f} |")
                continue
            w = wall["parts"].get(name, 0) / max(1, wall["samples"])
            lines.append(f"| {name} | {100 * w:.1f} | {w * per_req:.2f} | {100 * g:.1f} |")
        lines += ["", "Slipway's own functions on the request thread, inclusive (% of the request threads' wall "
                  "time / % of all GIL-holding samples):", "",
                  "| function | wall % | GIL % |", "|---|---|---|"]
        top = sorted(wall["inclusive"].items(), key=lambda kv: -kv[1])[:12]
        for name, n in top:
            lines.append(f"| `{name}` | {100 * n / max(1, wall['samples']):.1f} | "
                         f"{100 * gil['inclusive'].get(name, 0) / gil_total:.1f} |")
    elif ctx.get("profile_note"):
        lines += ["", ctx["profile_note"]]
    lines += ["", NOTES_START, notes.strip("\n"), NOTES_END, ""]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured on the project's own machine; each section says how.\n"
    pattern = re.compile(r"^## Ingest\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text.rstrip("\n") + "\n")


def existing_notes() -> str:
    if not DOC.exists():
        return ""
    text = DOC.read_text()
    m = re.search(r"^## Ingest\n.*?(?=^## |\Z)", text, re.S | re.M)
    if not m:
        return ""
    n = re.search(re.escape(NOTES_START) + r"\n?(.*?)" + re.escape(NOTES_END), m.group(0), re.S)
    return n.group(1) if n else ""


# --------------------------------------------------------------------------- main


def slipway_env(settings_fields: list[str], db_url: str, redis_url: str, secret: str, port: int,
                workers: int) -> dict[str, str]:
    """The environment minus anything Slipway's settings would read, plus production-mode settings."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in settings_fields and k != "PGOPTIONS"}
    env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, WEBHOOK_SECRET=secret, HOST="127.0.0.1", PORT=str(port),
               WEB_CONCURRENCY=str(workers), LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
    return env


def web_options(workers: int) -> dict[str, Any]:
    """Slipway's own granian options in production mode (so the bare receiver gets the same)."""
    from slipway.server import granian_options
    from slipway.settings import load_settings

    return granian_options(load_settings(redis_url="redis://127.0.0.1:6379/0", web_concurrency=workers,
                                         log_level="warning", _env_file=None))


def granian_argv(opts: dict[str, Any], port: int | str, target: str) -> list[str]:
    """The granian command line with the options `slipway serve` passes to granian's Python API."""
    argv = [str(BIN / "granian"), "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(HERE)]
    for key, value in opts.items():
        if key in ("address", "port", "log_access"):
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
    return [*argv, target]


def start_receivers(run: Run, args: argparse.Namespace, db: Database, redis: RedisSpace, secret: str,
                    probot: ProbotInstall) -> dict[str, Receiver]:
    """Slipway (granian), the bare receiver on the same granian options, Probot; and the what-if Slipway."""
    from slipway.settings import Settings

    fields = [f.lower() for f in Settings.model_fields]
    opts = web_options(args.workers)
    env = slipway_env(fields, db.url, redis.url, secret, 0, args.workers)
    db.upgrade(run, env)
    out: dict[str, Receiver] = {}

    def add(name: str, argv: list[str], env: dict[str, str], port: int, workers: int, ok: int = 202,
            store: bool = False, cwd: Path | None = None) -> None:
        log_path = run.dir / f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}.log"
        out[name] = Receiver(name, run.start(Proc(name, argv, env, cwd or run.dir, log_path)), port, workers, ok,
                             store)

    port = common.free_port()
    add("Slipway", [str(BIN / "slipway"), "serve"], {**env, "PORT": str(port)}, port, args.workers, store=True)
    if args.what_if:
        port = common.free_port()
        # The same server, every PostgreSQL session of it with synchronous_commit=off (libpq reads PGOPTIONS).
        add(ASYNC, [str(BIN / "slipway"), "serve"], {**env, "PORT": str(port),
                                                    "PGOPTIONS": "-c synchronous_commit=off"}, port, args.workers,
            store=True)
    bare_env = {**{k: v for k, v in os.environ.items() if k.lower() not in fields}, "WEBHOOK_SECRET": secret,
                "PYTHONUNBUFFERED": "1"}
    port = common.free_port()
    add("bare", granian_argv(opts, port, "bare_receiver:app"), bare_env, port, args.workers)
    port = common.free_port()
    pr = probot.proc(run, secret, port)
    add("Probot", pr.argv, pr.env, port, 0, ok=200, cwd=probot.dir)
    for rcv in out.values():
        path = {"Slipway": "/healthz", ASYNC: "/healthz", "Probot": "/ping"}.get(rcv.name, "/")
        common.wait_http(rcv.proc, rcv.port, path, rcv.workers)
    return out


ASYNC = "Slipway, synchronous_commit=off (what-if)"


def cpu_percent(meter: CpuMeter) -> dict[str, float]:
    """common.CpuMeter's figures under this file's names (gen = this process + wrk)."""
    r = meter.result()
    return {"server": r["server"], "pg": r["pg"], "redis": r["redis"], "gen": r["bench"], "busy": r["busy"],
            "other": r["other"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    D = args.duration
    n_max = 4 if args.what_if else 3
    budget = 300 + 60 + n_max * (WARMUP_S + D + 3) + 4 * (PACED_WARMUP_S + D + 6) + (D + 25)
    wrk_exe = None if args.python_generator else shutil.which("wrk")
    pyspy = common.pyspy_path()
    secret = secrets.token_urlsafe(24)
    reqs = Requests(secret)
    ctx: dict[str, Any] = {}
    with Run("ingest", budget) as run:
        log(f"body: {reqs.body_size:,} bytes (pull_request.opened)")
        busy_before = common.wait_quiet(args.wait_quiet)
        if busy_before > 25:
            log(f"WARNING: the machine was {busy_before:.0f} % busy before the run; other processes skew the figures")
        probot = ProbotInstall(run)
        db = Database(run)
        redis = RedisSpace(run)
        rcv = start_receivers(run, args, db, redis, secret, probot)
        checks = {name: check_receiver(r, reqs) for name, r in rcv.items()}

        threads = max(1, min(len(os.sched_getaffinity(0)), args.connections))
        n_warm, n_main = POOL_RATE * WARMUP_S, POOL_RATE * D + args.rounds + 1
        wrk = Wrk(wrk_exe, run.dir, reqs, n_warm + n_main, threads) if wrk_exe else None
        slice_s = max(1, D // args.rounds)  # wrk takes whole seconds
        per_slice = int(POOL_RATE * slice_s) + 1

        def run_max(receivers: list[Receiver]) -> dict[str, RunResult]:
            """(a): a warm-up each, then `rounds` slices of D/rounds seconds, alternating between the receivers,
            so that load from outside the benchmark falls on all alike."""
            tags = {r.name: secrets.token_hex(4) for r in receivers}
            outs: dict[str, list[dict[str, Any]]] = {r.name: [] for r in receivers}
            cpus: dict[str, list[dict[str, float]]] = {r.name: [] for r in receivers}
            warm_ok: dict[str, int] = {}
            for r in receivers:
                if r.store:
                    reset_store(db, redis)
                if wrk:
                    w = wrk.run(r.port, args.connections, WARMUP_S, 0, n_warm, not r.store, tags[r.name], r.ok)
                else:
                    w = run_closed(r.port, reqs, tags[r.name], 0, args.connections, WARMUP_S, r.ok)
                warm_ok[r.name] = w["n202"]
            for k in range(args.rounds):
                for r in receivers:
                    time.sleep(0.3)
                    first = n_warm + k * per_slice
                    with measure(r, db, redis) as cpu:
                        if wrk:
                            out = wrk.run(r.port, args.connections, slice_s, first, per_slice, not r.store,
                                          tags[r.name], r.ok)
                        else:
                            out = run_closed(r.port, reqs, tags[r.name], 100_000_000 + first, args.connections,
                                             slice_s, r.ok)
                    outs[r.name].append(out)
                    cpus[r.name].append(cpu_percent(cpu))
            results = {}
            for r in receivers:
                out = merge_slices(outs[r.name])
                cpu = {k: sum(c[k] for c in cpus[r.name]) / len(cpus[r.name]) for k in cpus[r.name][0]}
                res = RunResult(r.name, "max", out["duration_us"] / 1e6, out["requests"], out["n202"], out["err_status"],
                                out.get("errors", 0) + sum(out.get(k, 0) for k in ("err_connect", "err_read",
                                                                                     "err_write", "err_timeout")),
                                out["p50_us"] / 1000, out["p99_us"] / 1000, out["max_us"] / 1000, cpu=cpu)
                if out.get("wrapped") and r.store:
                    res.note = f"pool exhausted {out['wrapped']} times"
                if r.store:
                    time.sleep(1.0)  # let the workers finish what wrk abandoned at the end of each slice
                    res.rows_stored = len(stored_guids(db))
                    res.queued_jobs = queue_length(redis)
                    answered = res.n202 + warm_ok[r.name]
                    res.note = (res.note + "; " if res.note else "") + f"incl. warm-up; 202s incl. warm-up {answered:,}"
                    if res.rows_stored < answered:
                        raise BenchError(f"{r.name} answered 202 {answered} times but stored only {res.rows_stored} rows")
                log(f"(a) {r.name}: {res.rate:,.0f} req/s, p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms, "
                    f"non-2xx {res.non2xx}, socket errors {res.socket_errors}, accepted {res.n202}, other CPU "
                    f"{res.cpu['other']:.0f} %" + (f", rows {res.rows_stored}, RQ jobs {res.queued_jobs}" if r.store else ""))
                results[r.name] = res
            return results

        def run_target(r: Receiver, rate: float, why: str) -> RunResult:
            tag = secrets.token_hex(4)
            if r.store:
                reset_store(db, redis)
            with measure(r, db, redis) as cpu:
                out = run_paced(r.port, reqs, tag, 200_000_000, rate, D, r.ok)
            non2xx = sum(v for k, v in out["statuses"].items() if not 200 <= k < 300)
            # req/s over the time it took to answer them: the window plus the tail that came after it
            res = RunResult(r.name, "paced", D + out["drain_s"], out["completed"], out["n202"], non2xx, out["errors"],
                            out["p50_ms"], out["p99_ms"], out["max_ms"], offered_rate=rate, cpu=cpu_percent(cpu),
                            note=why)
            if r.store:
                time.sleep(0.5)
                stored = stored_guids(db)
                res.rows_stored = len(stored)
                res.rows_missing = sum(1 for g in out["ok_guids"] if g not in stored)
                res.queued_jobs = queue_length(redis)
                res.note += f"; incl. {PACED_WARMUP_S} s lead-in; 202s missing: {res.rows_missing}"
                if res.rows_missing:
                    raise BenchError(f"{res.rows_missing} deliveries answered 202 are not in the table")
            log(f"(b) {r.name} at {rate:,.0f}/s: {res.rate:,.0f} req/s, p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms, "
                f"max {res.max_ms:.0f} ms, non-2xx {non2xx}, errors {out['errors']}, drain {out['drain_s']:.2f} s"
                + (f", rows {res.rows_stored}" if r.store else ""))
            return res

        a = run_max([rcv["bare"], rcv["Probot"], rcv["Slipway"]])
        if args.what_if:
            a.update(run_max([rcv[ASYNC]]))
        if a["bare"].rate < 1 or a["Probot"].rate < 1:
            raise BenchError("a baseline answered nothing; nothing to pace against")
        half_bare, at_probot = TARGET_RATIO * a["bare"].rate, TARGET_PROBOT_RATIO * a["Probot"].rate
        b = [run_target(rcv["bare"], half_bare, "0.5 x bare"), run_target(rcv["Slipway"], half_bare, "0.5 x bare"),
             run_target(rcv["Probot"], at_probot, "1.0 x Probot"),
             run_target(rcv["Slipway"], at_probot, "1.0 x Probot")]
        ctx.update(a=a, b=b)

        target_ok = (a["Slipway"].rate >= TARGET_RATIO * a["bare"].rate and b[1].p99_ms < TARGET_P99_MS)
        want_profile = args.profile == "always" or (args.profile == "auto" and not target_ok)
        if want_profile and not pyspy:
            ctx["profile_note"] = ("Profile: not taken, py-spy is not installed "
                                   "(`.venv/bin/pip install py-spy`, then re-run).")
        elif want_profile and wrk:
            ctx["profile"] = take_profile(pyspy, rcv["Slipway"], wrk, db, redis, args, n_warm, n_main, run.dir)

        ctx.update(
            date=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), machine=common.machine_facts(),
            versions=versions(db, redis, wrk.version if wrk else None, probot), command=common.command_line(),
            workers=args.workers, blocking_threads=web_options(args.workers)["blocking_threads"], server_argv=shlex.join(granian_argv(web_options(args.workers), "PORT", "bare_receiver:app")),
            pg_settings=pg_settings(db), redis_db=redis.index, slipway_state=checks["Slipway"]["state"],
            checks={name: c["checks"] for name, c in checks.items()}, body_size=reqs.body_size,
            connections=args.connections, duration=D, busy_before=busy_before,
            gen_a=(wrk.settings(args.connections, slice_s, args.rounds) if wrk else
                   f"Python closed loop (bench/ingest.py drive(): one selector loop, non-blocking sockets), "
                   f"{args.connections} connections, {args.rounds} slices of {slice_s} s per receiver, alternating, "
                   f"after a {WARMUP_S} s warm-up each; latency from the connect"),
            gen_b=(f"Python open-loop generator in the benchmark process (bench/ingest.py drive(): one selector loop, "
                   f"non-blocking sockets; a request goes on an idle kept-alive connection, or on a new one when none is "
                   f"idle), request i due at t0 + i/rate, "
                   f"{PACED_WARMUP_S} s lead-in then {D} s measured, at most 256 requests in flight (later ones wait and "
                   "their wait counts); latency from the due time to the answer's last byte, including any connect"),
        )

    section = render_section(ctx, existing_notes())
    print(section)
    if args.no_write:
        log("--no-write: docs/benchmarks.md left as it was")
    else:
        write_doc(section)
        log(f"wrote the Ingest section of {DOC.relative_to(ROOT)}")
    return 0


def take_profile(pyspy: str, sw: Receiver, wrk: Wrk, db: Database, redis: RedisSpace, args: argparse.Namespace,
                 n_warm: int, n_main: int, out_dir: Path) -> dict[str, Any]:
    """py-spy on Slipway's granian workers during an extra run (a)."""
    log("profiling Slipway's workers with py-spy during an extra run (a)")
    reset_store(db, redis)
    secs = max(5, min(args.duration, 10))
    tag = secrets.token_hex(4)

    def load() -> dict[str, Any]:
        return wrk.run(sw.port, args.connections, secs + 2, n_warm, n_main, False, tag)

    prof = profile_slipway(pyspy, sw.proc, load, secs, out_dir)
    lr = prof["load"]
    prof["rate"] = lr["n202"] / (lr["duration_us"] / 1e6)
    prof["workers"] = sw.workers
    prof["secs"] = secs
    prof["how"] = (f"Two `py-spy record --subprocesses --nonblocking --rate 100` samplers (one with `--idle`, one "
                   f"with `--gil`) on the granian master for {secs} s while wrk ran the load of (a) "
                   f"(`-c{args.connections}`; {prof['rate']:,.0f} stored/s under the samplers).")
    wall = prof["wall"]
    log("profile (wall): " + "; ".join(f"{n} {100 * c / max(1, wall['samples']):.0f} %"
                                      for n, c in sorted(wall["parts"].items(), key=lambda kv: -kv[1])[:8]))
    return prof


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds of each measured run (default 10)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections in run (a) (default 32)")
    p.add_argument("--rounds", type=int, default=5,
                   help="run (a) in this many alternating slices per receiver (default 5: 5 x 2 s each with "
                        "--duration 10), so load from outside falls on both receivers alike")
    p.add_argument("--workers", type=int, default=2 * cores,
                   help=f"granian workers for Slipway and the bare receiver (default: Slipway's WEB_CONCURRENCY default, 2 x cores = {2 * cores})")
    p.add_argument("--no-write", action="store_true", help="print the results only; do not touch docs/benchmarks.md")
    p.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                   help="py-spy profile of Slipway in an extra run: when the target is missed (auto), always or never")
    p.add_argument("--wait-quiet", type=int, default=20, metavar="SECONDS",
                   help="wait up to this long for other processes to leave the CPU before measuring (default 20)")
    p.add_argument("--what-if", action="store_true",
                   help="also run (a) against a Slipway whose PostgreSQL sessions have synchronous_commit=off")
    p.add_argument("--python-generator", action="store_true", help="use the Python generator for run (a) even if wrk is installed")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60:
        p.error("--duration must be 1..60 seconds")
    if not 1 <= args.rounds <= args.duration:
        p.error("--rounds must be 1..duration (slices of at least 1 s)")
    if not 1 <= args.connections <= 512:
        p.error("--connections must be 1..512")
    if not 1 <= args.workers <= 64:
        p.error("--workers must be 1..64")
    return args


if __name__ == "__main__":
    common.run_main(main)
