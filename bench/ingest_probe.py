"""Slipway's ingest alone, quickly: a few short slices of wrk (or paced) load, CPU per request, GUIDs per RQ job.

    .venv/bin/python bench/ingest_probe.py [--workers 4] [--slices 2] [--secs 5] [--paced RATE] [--py-spy FILE]
                                           [--bare] [--env NAME=VALUE ...]

For trying a change to the ingest path in a minute instead of bench/ingest.py's few (no Probot, no bare
receiver beside it unless --bare, nothing written to docs/). Production mode on a throwaway PostgreSQL
database and a reserved Redis db, as bench/ingest.py sets them up; `slipway serve` with WEB_CONCURRENCY
= --workers (--env adds or overrides environment variables of the server). Each slice prints req/s,
p50/p99, the server's and PostgreSQL's CPU and their CPU per request; at the end, rows stored and RQ
jobs made. --paced sends open-loop at RATE/s on kept-alive connections (bench/ingest.py drive()) instead
of wrk's closed loop; --py-spy FILE records the server's GIL-holding stacks (raw format) during the
first slice; `bench/ingest.py classify` names their parts.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
import ingest  # noqa: E402
from common import CpuMeter, Database, Proc, RedisSpace, Run, descendants  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Set up, load, print, tear down."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--slices", type=int, default=2)
    p.add_argument("--secs", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--paced", type=float, default=0.0, metavar="RATE")
    p.add_argument("--bare", action="store_true", help="bench/bare_receiver.py on the same granian options instead")
    p.add_argument("--py-spy", default="", metavar="FILE")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    a = p.parse_args(argv)
    from slipway.settings import Settings

    with Run("ingest-probe", 120 + a.slices * (a.secs + 15)) as run:
        db, redis, secret = Database(run), RedisSpace(run), secrets.token_hex(16)
        env = ingest.slipway_env([f.lower() for f in Settings.model_fields], db.url, redis.url, secret, 0, a.workers)
        env.update(kv.split("=", 1) for kv in a.env)
        db.upgrade(run, env)
        port = common.free_port()
        argv_ = (ingest.granian_argv(ingest.web_options(a.workers), port, "bare_receiver:app") if a.bare
                 else [str(ingest.BIN / "slipway"), "serve"])
        server = run.start(Proc("server", argv_, {**env, "PORT": str(port)}, run.dir, run.dir / "server.log"))
        common.wait_http(server, port, "/" if a.bare else "/healthz", a.workers)
        reqs = ingest.Requests(secret)
        per_slice = int(8000 * a.secs)
        wrk = ingest.Wrk(shutil.which("wrk") or "wrk", run.dir, reqs, per_slice * (a.slices + 1), 2)
        wrk.run(port, a.connections, 2, 0, per_slice, False, "warm")
        spy = _py_spy(server.pid, a.py_spy, a.secs) if a.py_spy else None
        for i in range(a.slices):
            first = per_slice * (i + 1)
            groups = {"server": lambda: descendants(server.pid), "pg": lambda: common.pg_pids(db.name)}
            with CpuMeter(groups) as meter:
                if a.paced:
                    res = ingest.drive(port, reqs, f"p{i}", first, a.secs, rate=a.paced, keepalive=True)
                    rate, p50, p99 = res["n202"] / a.secs, res["p50_ms"], res["p99_ms"]
                else:
                    res = wrk.run(port, a.connections, a.secs, first, per_slice, False, f"s{i}")
                    rate, p50, p99 = res["n202"] / a.secs, res["p50_us"] / 1000, res["p99_us"] / 1000
            cpu = meter.result()
            print(f"slice {i}: {rate:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; CPU % of a core: server "
                  f"{cpu['server']:.0f}, PostgreSQL {cpu['pg']:.0f}, machine busy {cpu['busy']:.0f} % (other "
                  f"{cpu['other']:.0f}); µs per request: server {cpu['server'] * 1e4 / max(rate, 1):,.0f}, "
                  f"PostgreSQL {cpu['pg'] * 1e4 / max(rate, 1):,.0f}", flush=True)
        if spy is not None:
            spy.wait(a.secs + 30)
        if not a.bare:
            rows = db.scalar("SELECT count(*) FROM delivery")
            jobs = sum(1 for _ in redis.client.scan_iter("rq:job:*", count=1000))
            print(f"rows stored {rows:,}, RQ jobs {jobs:,} ({rows / max(jobs, 1):.1f} GUIDs per job)")
    return 0


def _py_spy(pid: int, out: str, seconds: int) -> subprocess.Popen:
    """py-spy on the server's processes, GIL-holding samples only, raw stacks to `out`."""
    exe = shutil.which("py-spy") or str(ingest.BIN / "py-spy")
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil",
                             "--rate", "100", "--format", "raw", "-o", out, "-d", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


if __name__ == "__main__":
    sys.exit(main())
