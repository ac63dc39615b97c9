"""Worker benchmark: deliveries per second of ONE `slipway worker` process vs RQ's own no-op job rate.

    .venv/bin/python bench/worker.py [--no-write] [--profile auto|always|never]

What it does, all on 127.0.0.1, bounded in time (budget 230 s; about 2-3 minutes with the defaults):
1. Sets up (bench/common.py): a PostgreSQL database `slipway_bench_<hex>` migrated by `slipway db upgrade`, a
   reserved Redis database index, the fake GitHub API (tests/fakegithub.py) in its own process with one
   installation and 20 repositories whose `.github/slipway.yml` deploys pushes to main to `staging` with
   `required_checks: []`, and `slipway serve` (production mode, 2 web processes) used only to load deliveries.
2. Warm-up (not measured): one push per repository through a `slipway worker --burst` (the configuration of
   each repository gets cached, the installation token minted and shared through Redis).
3. Each measured run: the deliveries are POSTed, signed, through the real web server (stored and queued by
   Slipway itself, in RQ jobs of up to 16 GUIDs as its web processes batch them); once every GUID sits in a
   job in RQ's `slipway` queue the web server is idle and `slipway worker --burst` is started. The benchmark
   counts the run's unfinished deliveries in the database every 5 ms; the measured window starts when the
   first 18 deliveries are finished (start-up, imports and first-call costs stay out) and ends when none is
   left. rate = deliveries finished in the window / window. Afterwards every delivery must be `done`.
   RQ's no-op baseline is counted in jobs (one per GUID), from the queue, the same way.
   Baseline: RQ's `SimpleWorker` (the class `slipway worker` uses) in burst mode on a queue of no-op jobs
   (`common.noop(guid)` returns None), enqueued with the options Slipway's transport uses (result_ttl=0,
   same timeout/failure_ttl/description, one pipeline), with the same Redis client options and the same
   logging level, measured the same way; run before and after the Slipway mix and averaged.
4. Runs: RQ no-op, Slipway mix, RQ no-op again, then each kind alone (push, deployment_status, ping).
5. With --profile (by default when the target is missed and py-spy is installed) an extra mixed run is
   sampled with py-spy (wall time incl. waits, and GIL-holding time) and summarised by where the time goes.
   With --what-if (by default when the target is missed) push-only runs follow: as shipped, and with parts
   of Slipway patched in memory (bench/common.py WHAT_IF: a kept-alive GitHub client; no look-up before a
   first attempt; fewer Redis round trips; synchronous_commit=off; all), counting GitHub calls, SQL statements and commits per
   push (bench/common.py `patched-worker`; Slipway's files are not touched): the expected gain of each
   suggested change, measured.
6. Writes the section "Worker" of docs/benchmarks.md unless --no-write; stops every process by PID, drops the
   database, flushes and releases the Redis index (also on error and Ctrl-C).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_RATIO = 0.75
WHAT_IF_RUNS = ("none", "redis", "asynccommit", "notx", "redis,notx", "none")  # client, nolookup: shipped now
BUDGET_S = 235
WARM_JOBS = 18
POLL_S = 0.005
N_REPOS = 20
GIL_NOTE = ("wall = every sample of the worker's main thread, waits included; GIL = only samples in which it "
            "held the GIL (ran Python)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mix", type=int, default=360, help="deliveries in the mixed run (default 360)")
    p.add_argument("--noop", type=int, default=2000, help="no-op jobs per RQ baseline run (default 2000)")
    p.add_argument("--push", type=int, default=80, help="deliveries in the push-only run (default 80)")
    p.add_argument("--deployment-status", type=int, default=300, help="deliveries in the deployment_status-only run")
    p.add_argument("--ping", type=int, default=600, help="deliveries in the ping-only run (default 600)")
    p.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                   help="py-spy profile of an extra mixed run: when the target is missed (auto), always or never")
    p.add_argument("--profile-deliveries", type=int, default=150)
    p.add_argument("--what-if", choices=["auto", "always", "never"], default="auto",
                   help="push-only runs with parts of Slipway patched in memory (bench/common.py WHAT_IF): "
                        "when the target is missed (auto), always or never")
    p.add_argument("--what-if-pushes", type=int, default=100)
    p.add_argument("--wait-quiet", type=int, default=20, metavar="SECONDS",
                   help="wait up to this long for the machine to be under 25 %% busy before measuring")
    p.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    for name in ("mix", "noop", "push", "deployment_status", "ping"):
        if not WARM_JOBS + 10 <= getattr(args, name) <= 20000:
            p.error(f"--{name.replace('_', '-')} must be {WARM_JOBS + 10}..20000")
    return args


# --------------------------------------------------------------------------- one burst run


def measure_burst(stack: c.Stack, proc: c.Proc, left: Any, n: int, groups: dict[str, Any],
                  timeout: float = 150.0) -> dict[str, Any]:
    """Poll `left()` (units not finished yet) until a burst worker has done all n; the post-warm-up rate."""
    t_spawn = proc.started_at
    t_first = t_warm = None
    done_at_warm = 0
    meter = c.CpuMeter(groups)
    deadline = time.monotonic() + timeout
    max_waiting = 0
    while True:
        waiting = left()
        now = time.monotonic()
        max_waiting = max(max_waiting, waiting)
        if t_first is None and waiting < n:
            t_first = now
        if t_warm is None and waiting <= n - WARM_JOBS:
            t_warm = now
            done_at_warm = n - waiting
            meter.__enter__()
        if t_warm is not None and waiting == 0:
            t_end = now
            meter.__exit__()
            break
        if now > deadline:
            raise c.BenchError(f"{proc.name} did not finish {n} in {timeout:.0f} s "
                               f"(left: {waiting}); log:\n{proc.log_tail()}")
        if not proc.alive() and waiting:
            raise c.BenchError(f"{proc.name} exited with {waiting} left; log:\n{proc.log_tail()}")
        time.sleep(POLL_S)
    rc = proc.wait(30)
    t_exit = time.monotonic()
    jobs = n - done_at_warm
    window = t_end - t_warm
    return {"n": n, "jobs": jobs, "window": window, "rate": jobs / window, "cpu": meter.result(),
            "startup_s": (t_first or t_end) - t_spawn, "wall_s": t_exit - t_spawn, "exit": rc,
            "max_waiting": max_waiting}


def jobs_left(stack: c.Stack, queue: str) -> Any:
    """RQ jobs not finished: waiting, being moved to a worker, or started."""
    return lambda: sum(stack.redis.queue_state(queue))


def deliveries_left(stack: c.Stack, items: list[c.Delivery]) -> Any:
    """Deliveries of this run not finished yet, from the database (one RQ job carries several)."""
    first = stack.db.scalar("SELECT min(id) FROM delivery WHERE guid = ANY(%s)", [d.guid for d in items])
    return lambda: stack.db.scalar("SELECT count(*) FROM delivery WHERE id >= %s AND finished_at IS NULL", first)


def noop_run(stack: c.Stack, n: int, label: str) -> dict[str, Any]:
    guids = [f"noop-{label}-{i:08d}" for i in range(n)]
    c.enqueue_jobs(stack.redis.url, c.NOOP_QUEUE, c.NOOP_PATH, guids)
    proc = stack.noop_worker()
    res = measure_burst(stack, proc, jobs_left(stack, c.NOOP_QUEUE), n, groups_for(stack, proc))
    proc.stop()
    failed = stack.redis.client.zcard(f"rq:failed:{c.NOOP_QUEUE}")
    if failed:
        raise c.BenchError(f"{failed} no-op jobs failed; see {proc.log_path}")
    c.log(f"RQ no-op ({label}): {res['rate']:.0f} jobs/s ({res['jobs']} jobs in {res['window']:.2f} s)")
    return res


def groups_for(stack: c.Stack, worker: c.Proc) -> dict[str, Any]:
    redis_pid = stack.redis.server_pid()
    return {"worker": worker.tree, "postgres": lambda: c.pg_pids(stack.db.name),
            "redis": lambda: [redis_pid] if redis_pid else [], "fake GitHub": lambda: [stack.fake.pid]}


def load(stack: c.Stack, port: int, items: list[c.Delivery]) -> float:
    """POST the deliveries through `slipway serve`, wait until every GUID is in a queued job; GUIDs per job."""
    from redis import Redis
    from rq import Queue

    statuses = c.post_all(port, items, concurrency=4)
    bad = {s: k for s, k in statuses.items() if s not in (200, 202)}
    if bad:
        raise c.BenchError(f"the web server answered {bad} while loading deliveries")
    queue = Queue(c.QUEUE, connection=Redis.from_url(stack.redis.url))
    deadline = time.monotonic() + 30
    while sum(len(job.args[0]) for job in queue.jobs) < len(items):
        if time.monotonic() > deadline:
            raise c.BenchError("the web server did not queue every delivery within 30 s")
        time.sleep(0.05)
    return len(items) / max(1, queue.count)


def slipway_run(stack: c.Stack, port: int, items: list[c.Delivery], label: str,
                profile: Any = None) -> dict[str, Any]:
    per_job = load(stack, port, items)
    stack.fake.ask("reset_counts")
    proc = stack.worker(burst=True, name=f"slipway worker --burst ({label})", log_name=f"worker-{label}.log")
    spies = profile(proc) if profile else None
    res = measure_burst(stack, proc, deliveries_left(stack, items), len(items), groups_for(stack, proc))
    if spies:
        for spy in spies:
            spy.wait(30)
    proc.stop()
    guids = [d.guid for d in items]
    states = dict(stack.db.rows("SELECT state, count(*) FROM delivery WHERE guid = ANY(%s) GROUP BY state", guids))
    if states.get("done", 0) != len(items):
        errors = stack.db.rows("SELECT event, state, error FROM delivery WHERE guid = ANY(%s) AND state <> 'done' "
                               "LIMIT 5", guids)
        raise c.BenchError(f"not every delivery ended done: {states}; e.g. {errors}; log:\n{proc.log_tail()}")
    res["job_ms"] = {k: (float(mean), float(p50), int(cnt)) for k, mean, p50, cnt in stack.db.rows(
        "SELECT event, avg(extract(epoch FROM finished_at - started_at)) * 1000, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) * 1000, count(*) "
        "FROM delivery WHERE guid = ANY(%s) GROUP BY event", guids)}
    res["calls"] = stack.fake.stats()["counts"]
    res["kinds"] = collections.Counter(d.kind for d in items)
    res["per_job"] = per_job
    c.log(f"Slipway ({label}): {res['rate']:.1f} deliveries/s ({res['jobs']} in {res['window']:.2f} s)")
    return res


def what_if_run(stack: c.Stack, port: int, items: list[c.Delivery], patch: str) -> dict[str, Any]:
    """Push-only burst with the in-memory patch `patch` (bench/common.py _patched_worker_main)."""
    load(stack, port, items)
    stack.fake.ask("reset_counts")
    proc = stack.patched_worker(patch, f"worker-what-if-{patch.replace(',', '+')}.log")
    res = measure_burst(stack, proc, deliveries_left(stack, items), len(items), groups_for(stack, proc))
    proc.stop()
    done = stack.db.scalar("SELECT count(*) FROM delivery WHERE guid = ANY(%s) AND state = 'done'",
                           [d.guid for d in items])
    if done != len(items):
        raise c.BenchError(f"what-if {patch}: only {done} of {len(items)} deliveries done; log:\n{proc.log_tail()}")
    lines = [ln for ln in proc.log_path.read_text(errors="replace").splitlines() if ln.startswith("BENCHSQL ")]
    sql = json.loads(lines[-1][len("BENCHSQL "):]) if lines else {}
    res["sql"] = sql
    res["calls"] = stack.fake.stats()["counts"]
    c.log(f"what-if {patch}: {res['rate']:.1f} pushes/s; {sql}")
    return res


# --------------------------------------------------------------------------- profile


def start_spies(pyspy: str, out_dir: Path, seconds: int) -> Any:
    def attach(proc: c.Proc) -> list[subprocess.Popen[bytes]]:
        time.sleep(1.5)  # past the imports; the samplers stop when the worker exits
        spies = []
        for kind, flag in (("wall", "--idle"), ("gil", "--gil")):
            argv = [pyspy, "record", "--pid", str(proc.pid), "--rate", "100", "--nonblocking", "--format", "raw",
                    "--duration", str(seconds), flag, "--output", str(out_dir / f"worker.pyspy-{kind}.txt")]
            spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(out_dir / f"pyspy-{kind}.log", "wb"),
                                          start_new_session=True))
        return [_Spy(s) for s in spies]
    return attach


class _Spy:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    def wait(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            self.popen.wait(5)


TLS = "TLS context built for every GitHub call (`ssl.create_default_context` loads the CA bundle)"
WAIT_PG = "PostgreSQL round trips (psycopg sends a statement, BEGIN, COMMIT or ROLLBACK and waits for the answer)"
WAIT_GH = "waiting for the fake GitHub (connect, send, read the answer)"
WAIT_REDIS = "waiting for Redis"
PACKAGES = [  # (label, first path segment of the deepest frame that belongs to a package)
    ("SQLAlchemy (Python: building, compiling, executing statements, rows)", ("sqlalchemy", "sqlmodel")),
    ("psycopg (Python)", ("psycopg",)),
    ("githubkit + httpx + httpcore + pydantic (Python)", ("githubkit", "httpx", "httpcore", "h11", "pydantic",
                                                          "pydantic_core", "hishel", "anyio", "jwt")),
    ("redis-py (Python)", ("redis",)),
    ("RQ (Python: dequeue, job hash, registries, finish)", ("rq",)),
    ("Slipway's own code (handlers, policy, record, inbox)", ("workers", "models", "slipway", "app")),
]


def classify_stack(frames: list[str]) -> str:
    """One label per sample: a TLS set-up anywhere in the stack, a wait at the leaf, else the package of
    the deepest frame that belongs to a package (standard-library frames count for their caller)."""
    joined = ";".join(frames)
    if re.search(r"create_default_context|load_verify_locations|create_ssl_context", joined):
        return TLS
    leaf = frames[-1]
    if "(psycopg/" in leaf and re.search(r"\bwait|waiting|_execute_send|_exec_command", leaf):
        return WAIT_PG
    if "(httpcore/_backends" in leaf or (re.match(r"(create_connection|getaddrinfo|socket\.)", leaf)
                                         and "httpcore" in joined):
        return WAIT_GH
    if re.search(r"\(redis/_parsers/socket|send_packed_command", leaf):
        return WAIT_REDIS
    for frame in reversed(frames):
        m = re.search(r"\(([\w.]+)/", frame)
        if not m:
            continue
        for label, pkgs in PACKAGES:
            if m.group(1) in pkgs:
                return label
    return "other (standard library, logging, start-up)"


def classify_profile(raw: Path) -> dict[str, Any]:
    """Share of the worker's main-thread samples (inside RQ's work loop) per label, per handler, per function."""
    totals: collections.Counter[str] = collections.Counter()
    funcs: collections.Counter[str] = collections.Counter()
    pg_by: collections.Counter[str] = collections.Counter()
    n = 0
    if not raw.exists():
        return {"n": 0, "shares": {}, "funcs": {}}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "run_worker" not in stack or "work (rq/" not in stack or "teardown" in stack:
            continue
        k = int(count)
        n += k
        frames = stack.split(";")
        label = classify_stack(frames)
        totals[label] += k
        if label == WAIT_PG:  # which of Slipway's functions made the round trip
            own = [f for f in frames if re.search(r"\((workers|models|app|slipway)/", f)]
            if own:
                fn = re.match(r"([\w.<>]+) \(([\w/]+\.py)", own[-1])
                pg_by[f"{fn.group(2)} {fn.group(1)}" if fn else own[-1]] += k
        if "process_delivery" in stack:
            totals["__job__"] += k
        for handler in ("on_push", "on_deployment_status", "on_ping"):
            if f"{handler} (" in stack:
                totals[f"__{handler}__"] += k
        for fn in {(m.group(2), m.group(1)) for m in re.finditer(r"([\w.<>]+) \(((?:workers|slipway|models|app)/[\w/]+\.py)", stack)}:
            funcs[f"{fn[0]} {fn[1]}"] += k
    return {"n": n, "shares": {k: v / n * 100 for k, v in totals.items()} if n else {},
            "funcs": {k: v / n * 100 for k, v in funcs.most_common(14)} if n else {},
            "pg_by": {k: v / n * 100 for k, v in pg_by.most_common(10)} if n else {}}


# --------------------------------------------------------------------------- report


def render(ctx: dict[str, Any]) -> str:
    res = ctx["runs"]
    noop = (res["noop1"]["rate"] + res["noop2"]["rate"]) / 2
    mix = res["mix"]["rate"]
    ratio = mix / noop
    ok = ratio >= TARGET_RATIO
    L = ["## Worker", "",
         f"Written by `bench/worker.py` on {ctx['when']} (re-running it replaces this section).", ""]
    L += c.facts_lines(ctx["stack"], ctx["busy_before"], ctx["command"])
    L += [f"- **Set-up:** production mode; PostgreSQL database `slipway_bench_*` on 127.0.0.1:5432 (`slipway db upgrade`), "
          f"Redis db {ctx['stack'].redis.index} on 127.0.0.1:6379 (reserved with `slipway-test:db:<n>` in db 0), "
          f"LOG_LEVEL=warning for Slipway and for RQ's logger in both workers. The fake GitHub API "
          f"(`tests/fakegithub.py`; TCP_NODELAY set, rate limit raised to 10^9/hour, see End to end) runs in its own "
          f"process: one installation, {N_REPOS} repositories whose "
          "`.github/slipway.yml` is `environments: {staging: {on: push, required_checks: []}}`.",
          f"- **Deliveries:** signed GitHub-shaped bodies (bench/common.py `Deliveries`): `push` to main "
          f"(~7 KB, a new commit each, rising `pushed_at`, round the repositories) → Slipway posts the `slipway/staging` "
          "commit status, looks for and creates the GitHub deployment, looks for and posts its `queued` status; "
          "`deployment_status` (~8.5 KB; queued/in_progress/success of deployments another tool made) → recorded "
          f"only; `ping` (~0.4 KB) → recorded. Mix: {c.MIX_TEXT}.",
          "- **Loading:** the deliveries are POSTed through the real web server (`slipway serve`, production mode, "
          "WEB_CONCURRENCY=2, 4 connections at a time; it stores them and queues them in RQ jobs of up to 16 GUIDs, "
          "as its web processes batch them); the worker starts once every GUID is in a queued job. A warm-up "
          f"(one push per repository, not measured) caches each repository's configuration and mints the token.",
          f"- **Timing:** `slipway worker --burst` (Slipway's SimpleWorker subclass + sweeper thread). The benchmark "
          f"counts the run's unfinished deliveries in the database every {POLL_S * 1000:.0f} ms; the window opens when "
          f"the first {WARM_JOBS} are finished (start-up and first-call costs left out) and closes when none is left; "
          "rate = deliveries finished inside the window / window. Every delivery was checked `done` afterwards. "
          "RQ's no-op runs are counted in jobs from the queue (waiting, moving to a worker, started), the same way.",
          "- **Baseline:** `rq.SimpleWorker([queue]).work(burst=True, with_scheduler=False)` in its own process "
          "(`python bench/common.py noop-worker`) on no-op jobs (`common.noop(guid)` returns None) enqueued with "
          "Slipway's options (`result_ttl=0`, `failure_ttl=7d`, `timeout=110`, one pipeline), same Redis client "
          "options and log level, timed the same way; run before and after the Slipway mix.",
          ""]
    L += ["| run | done in window (RQ: jobs; Slipway: deliveries) | window s | per s | GUIDs per RQ job | worker CPU % | worker CPU ms each | PostgreSQL % | Redis % | fake GitHub % | machine busy % | other % |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    names = [("noop1", "RQ no-op (before)"), ("mix", "Slipway, mix"), ("noop2", "RQ no-op (after)"),
             ("push", "Slipway, push only"), ("deployment_status", "Slipway, deployment_status only"),
             ("ping", "Slipway, ping only")]
    for key, label in names:
        r = res[key]
        cpu = r["cpu"]
        per_job = f"{r['per_job']:.2f}" if "per_job" in r else "1"
        L.append(f"| {label} | {r['jobs']:,} | {r['window']:.2f} | {r['rate']:,.1f} | {per_job} | {cpu['worker']:.0f} | "
                 f"{cpu['worker'] / 100 * r['window'] / r['jobs'] * 1000:.2f} | {cpu['postgres']:.0f} | "
                 f"{cpu['redis']:.0f} | {cpu['fake GitHub']:.0f} | {cpu['busy']:.0f} | {cpu['other']:.0f} |")
    L += ["", "CPU columns: % of one core over the window (the machine has "
          f"{c.machine_facts()['nproc']} cores); PostgreSQL = our database's backends + the server's own processes; "
          "'other' = what processes outside the benchmark used, in % of the whole machine.", ""]
    L.append(f"**Target:** Slipway's worker ≥ {TARGET_RATIO} × RQ's no-op rate — **{'PASS' if ok else 'FAIL'}**: "
             f"mix {mix:,.1f} deliveries/s vs RQ no-op {noop:,.0f} jobs/s (mean of {res['noop1']['rate']:,.0f} and "
             f"{res['noop2']['rate']:,.0f}) = **{ratio:.3f}**.")
    L += ["", "Per kind (each kind alone; job time = the delivery's `finished_at - started_at` in the database, "
          "i.e. inside `process_delivery`, RQ's own work excluded; GitHub calls from the fake's log):", "",
          "| kind | deliveries/s alone | ratio to RQ no-op | job time mean / p50 ms (alone) | job time mean ms (in the mix) | GitHub calls per delivery |",
          "|---|---|---|---|---|---|"]
    for kind in c.Deliveries.KINDS:
        r = res[kind]
        event = kind
        mean, p50, _ = r["job_ms"].get(event, (float("nan"),) * 3)
        mix_mean = res["mix"]["job_ms"].get(event, (float("nan"),))[0]
        calls = sum(r["calls"].values()) / max(1, r["n"])
        L.append(f"| `{kind}` | {r['rate']:,.1f} | {r['rate'] / noop:.3f} | {mean:.1f} / {p50:.1f} | {mix_mean:.1f} | "
                 f"{calls:.1f} |")
    trips_per_push = 0.0
    if ctx.get("what_if"):
        sql = ctx["what_if"]["none"][0]["sql"]
        trips_per_push = sum(sql.get(k, 0) for k in ("statements", "begins", "commits", "rollbacks")) / max(1, sql.get("jobs", 1))
    budget = 1000 / (TARGET_RATIO * noop)
    rq_ms = 1000 / noop
    weights = {"push": 2, "deployment_status": 3, "ping": 1}
    mix_job = sum(weights[k] * res["mix"]["job_ms"].get(k, (0.0,))[0] for k in weights) / sum(weights.values())
    per_job = res["mix"]["per_job"]
    push_calls_n = sum(res["push"]["calls"].values()) / max(1, res["push"]["n"])
    trips = f" and {trips_per_push:.0f} PostgreSQL round trips, see What if" if trips_per_push else ""
    L += ["", f"**Reading:** at {TARGET_RATIO} × RQ's no-op rate a delivery may take {budget:.2f} ms of the worker's "
          f"time in all; RQ's own work per job takes {rq_ms:.2f} ms (1 / its no-op rate). Measured inside "
          f"`process_delivery` in the mix: push {res['mix']['job_ms'].get('push', (float('nan'),))[0]:.1f} ms, "
          f"deployment_status {res['mix']['job_ms'].get('deployment_status', (float('nan'),))[0]:.1f} ms, ping "
          f"{res['mix']['job_ms'].get('ping', (float('nan'),))[0]:.1f} ms; {mix_job:.1f} ms on average over the mix. "
          f"RQ's per-job cost is shared by the deliveries of a job: the web processes put {per_job:.2f} GUIDs in each "
          f"job of the mix on average, so it came to {rq_ms / per_job:.2f} ms per delivery. What decides the rate is "
          f"the deliveries' own work, a push's most ({push_calls_n:.0f} GitHub calls{trips})."]
    push_calls = res["push"]["calls"]
    if push_calls:
        L += ["", "GitHub calls of the push-only run: " + ", ".join(
            f"`{k}` × {v}" for k, v in sorted(push_calls.items(), key=lambda kv: -kv[1])) + "."]
    caution = c.cpu_caution([(k, res[k]["cpu"]) for k, _ in names])
    if caution:
        L += ["", caution]
    prof = ctx.get("profile")
    if prof and prof.get("wall", {}).get("n"):
        L += ["", "### Where the worker's time goes (py-spy)", "",
              f"`py-spy record --pid <worker> --rate 100 --nonblocking --idle` and `--gil` side by side on "
              f"`slipway worker --burst` during an extra mixed run of {ctx['profile_n']} deliveries "
              f"({prof['rate']:.1f} deliveries/s under the samplers); main thread only ({GIL_NOTE}). "
              f"Raw stacks: `{prof['dir']}/worker.pyspy-*.txt` (not committed).", "",
              "| part | % of wall samples | % of GIL samples |", "|---|---|---|"]
        wall, gil = prof["wall"]["shares"], prof["gil"]["shares"]
        keys = [k for k in sorted(set(wall) | set(gil), key=lambda k: (-wall.get(k, 0), -gil.get(k, 0)))
                if not k.startswith("__")]
        for k in keys:
            wall.setdefault(k, 0.0)
        for k in keys:
            L.append(f"| {k} | {wall[k]:.1f} | {gil.get(k, 0.0):.1f} |")
        L.append(f"| (inside `process_delivery`, all parts) | {wall.get('__job__', 0):.1f} | {gil.get('__job__', 0):.1f} |")
        L += ["", "Slipway's own functions, inclusive (% of wall samples):", "",
              "| function | wall % |", "|---|---|"]
        for fn, share in prof["wall"]["funcs"].items():
            L.append(f"| `{fn}` | {share:.1f} |")
        if prof["wall"].get("pg_by"):
            L += ["", "PostgreSQL round trips by the Slipway function that made them (% of all wall samples): "
                  + ", ".join(f"`{fn}` {share:.1f}" for fn, share in prof["wall"]["pg_by"].items()) + "."]
        L += ["", "By handler (% of wall / GIL samples): " + ", ".join(
            f"`{h}` {wall.get(f'__{h}__', 0):.1f} / {gil.get(f'__{h}__', 0):.1f}"
            for h in ("on_push", "on_deployment_status", "on_ping")) + "."]
    wi = ctx.get("what_if")
    if wi:
        L += ["", "### What if (push only, parts of Slipway patched in memory by the benchmark; its files unchanged)", "",
              "`python bench/common.py patched-worker` runs `slipway worker --burst` after patching Slipway in memory "
              "(`BENCH_PATCH`), and counts the job thread's SQL statements and commits with SQLAlchemy events. "
              "Each row is the expected gain of one suggested change, measured:", ""]
        L += [f"- `{name}`: {text}." for name, text in c.WHAT_IF.items()]
        L += ["", "PostgreSQL round trips = SQL statements + BEGINs (psycopg sends BEGIN on its own) + COMMITs + "
              "ROLLBACKs (the pool rolls back a connection handed back inside a read-only transaction). "
              "'as shipped' ran first and last; × is against the mean of those two runs. Repeats of a 100-push run "
              "differ by up to about 10-15 %, so single gains below that are within the noise.", "",
              "| variant | pushes | pushes/s | × as shipped | worker CPU ms/push | GitHub calls/push | SQL statements/push | PostgreSQL round trips/push (BEGIN / COMMIT / ROLLBACK) | machine busy % | other % |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        base_rate = sum(r["rate"] for r in wi["none"]) / len(wi["none"])
        for patch in dict.fromkeys(WHAT_IF_RUNS):
            for r in wi.get(patch, []):
                sql = r["sql"]
                jobs = max(1, sql.get("jobs", r["n"]))
                sent = ("statements",) if "notx" in patch else ("statements", "begins", "commits", "rollbacks")
                trips = sum(sql.get(k, 0) for k in sent) / jobs
                label = "as shipped" if patch == "none" else " + ".join(f"`{p}`" for p in patch.split(","))
                L.append(f"| {label} | {r['n']} | {r['rate']:.1f} | {r['rate'] / base_rate:.2f} | "
                         f"{r['cpu']['worker'] / 100 * r['window'] / r['jobs'] * 1000:.1f} | "
                         f"{sum(r['calls'].values()) / r['n']:.1f} | {sql.get('statements', 0) / jobs:.1f} | "
                         + (f"{trips:.1f} (0 / 0 / 0) |" if "notx" in patch else
                            f"{trips:.1f} ({sql.get('begins', 0) / jobs:.1f} / {sql.get('commits', 0) / jobs:.1f} / "
                            f"{sql.get('rollbacks', 0) / jobs:.1f}) |") + f" {r['cpu']['busy']:.0f} | {r['cpu']['other']:.0f} |")
        if ctx.get("skipped"):
            L += ["", f"Not run for lack of time (budget {BUDGET_S} s): " + ", ".join(f"`{p}`" for p in ctx["skipped"]) + "."]
        caution = c.cpu_caution([(p, r["cpu"]) for p, rs in wi.items() for r in rs])
        if caution:
            L += ["", caution.replace("these figures are lower", "the what-if rates are lower and noisier")
                  + " Worker CPU ms/push is the steadier column."]
    if ctx.get("notes"):
        L += ["", *ctx["notes"]]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = c.command_line()
    busy = c.wait_quiet(args.wait_quiet)
    with c.Run("worker", BUDGET_S) as run:
        repos = c.repo_names(N_REPOS)
        stack = c.make_stack(run, repos)
        _serve, port = stack.serve(2)
        gen = c.Deliveries(stack.secret, repos)
        warm = [gen.push() for _ in repos]
        c.log("warm-up: one push per repository")
        slipway_run(stack, port, warm + gen.mix(WARM_JOBS + 10), "warm-up")
        runs: dict[str, Any] = {}
        runs["noop1"] = noop_run(stack, args.noop, "before")
        runs["mix"] = slipway_run(stack, port, gen.mix(args.mix), "mix")
        runs["noop2"] = noop_run(stack, args.noop, "after")
        for kind in c.Deliveries.KINDS:
            n = getattr(args, kind)
            runs[kind] = slipway_run(stack, port, [gen.make(kind) for _ in range(n)], kind)
        noop = (runs["noop1"]["rate"] + runs["noop2"]["rate"]) / 2
        ratio = runs["mix"]["rate"] / noop
        pyspy = c.pyspy_path()
        profile = None
        if args.profile == "always" or (args.profile == "auto" and ratio < TARGET_RATIO):
            if pyspy is None:
                c.log("py-spy is not installed; no profile (.venv/bin/pip install py-spy)")
            else:
                items = gen.mix(args.profile_deliveries)
                r = slipway_run(stack, port, items, "profile", profile=start_spies(pyspy, run.dir, 60))
                profile = {k: classify_profile(run.dir / f"worker.pyspy-{k}.txt") for k in ("wall", "gil")}
                profile["rate"] = r["rate"]
                profile["dir"] = run.dir.relative_to(c.ROOT)
        what_if = None
        skipped: list[str] = []
        if args.what_if == "always" or (args.what_if == "auto" and ratio < TARGET_RATIO):
            what_if = {}
            last = 0.0
            for i, patch in enumerate(WHAT_IF_RUNS):  # "none" first and last: the baseline is their mean
                if run.elapsed() + 1.5 * last > BUDGET_S - 25 and i:
                    c.log(f"what-if: no time left for {WHAT_IF_RUNS[i:]} within the {BUDGET_S} s budget")
                    skipped.extend(p for p in WHAT_IF_RUNS[i:] if p not in what_if)
                    break
                t = time.monotonic()
                r = what_if_run(stack, port, [gen.push() for _ in range(args.what_if_pushes)], patch)
                what_if.setdefault(patch, []).append(r)
                last = time.monotonic() - t
        ctx = {"runs": runs, "stack": stack, "busy_before": busy, "command": command, "profile": profile,
               "profile_n": args.profile_deliveries, "what_if": what_if, "skipped": skipped,
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        section = render(ctx)
    print(section)
    if not args.no_write:
        c.write_section("Worker", section)
    return 0


if __name__ == "__main__":
    c.run_main(main)
