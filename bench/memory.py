"""Memory benchmark: RSS of one web process and one `slipway worker` after 10,000 deliveries (the mix of bench/worker.py).

    .venv/bin/python bench/memory.py [--deliveries 10000] [--full] [--no-write]

What it does, all on 127.0.0.1:
1. Sets up (bench/common.py): a PostgreSQL database `slipway_bench_<hex>` (`slipway db upgrade`), a reserved Redis
   database index, the fake GitHub API in its own process (one installation, 20 repositories whose
   `.github/slipway.yml` deploys pushes to main to `staging` with `required_checks: []`).
2. Starts production mode with ONE web process and ONE worker, so each of them sees every delivery:
   `slipway serve` with WEB_CONCURRENCY=1 (the server's main process + one worker process) and one `slipway worker`.
3. Warm-up: 60 deliveries of the mix (every code path ran once: imports, caches, token), then the baseline
   sample. Then POSTs --deliveries signed deliveries (2 push : 3 deployment_status : 1 ping) in batches of
   1,000 through 4 connections while the worker processes them.
4. Samples VmRSS and VmHWM (/proc/<pid>/status) of the web worker process after every batch, and of the
   `slipway worker` every 2 s with the number of deliveries it has finished.
5. Bounded in time: without --full the run stops 170 s after the start of loading even if the worker is not
   through (on a 2-core machine it is not: a push costs it ~100-200 ms of CPU); then the worker's RSS at N
   finished deliveries is reported with its growth per 1,000 and a linear extrapolation to --deliveries,
   marked as such. --full waits (up to 20 minutes; about 6 on this machine) until every delivery is finished.
6. Writes the section "Memory" of docs/benchmarks.md unless --no-write; stops every process by PID, drops the
   database, flushes and releases the Redis index (also on error and Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_WEB_MB = 150.0
TARGET_WORKER_MB = 250.0
N_REPOS = 20
BATCH = 1000
WARM = 60
BOUNDED_S = 170          # loading + processing time without --full
FULL_S = 20 * 60


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=10_000, help="deliveries to send (default 10000)")
    p.add_argument("--full", action="store_true",
                   help="wait until the worker finished every delivery (up to 20 min) instead of 170 s")
    p.add_argument("--wait-quiet", type=int, default=20, metavar="SECONDS",
                   help="wait up to this long for the machine to be under 25 %% busy before measuring")
    p.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    if not BATCH <= args.deliveries <= 50_000:
        p.error(f"--deliveries must be {BATCH}..50000")
    return args


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


class Sampler(threading.Thread):
    """Every 2 s: (seconds, finished deliveries, worker VmRSS/VmHWM kB, web VmRSS kB)."""

    def __init__(self, stack: c.Stack, worker_pid: int, web_pid: int, t0: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.worker_pid, self.web_pid, self.t0 = stack, worker_pid, web_pid, t0
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.error: str | None = None

    def finished(self, conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM delivery WHERE state IN ('done', 'ignored', 'failed')")
                   .fetchone()[0])

    def sample(self, conn: Any) -> dict[str, Any]:
        w, web = c.memory_kb(self.worker_pid), c.memory_kb(self.web_pid)
        s = {"t": time.monotonic() - self.t0, "finished": self.finished(conn), "worker_rss": w.get("VmRSS"),
             "worker_hwm": w.get("VmHWM"), "web_rss": web.get("VmRSS")}
        self.samples.append(s)
        return s

    def run(self) -> None:
        try:
            conn = self.stack.db.psycopg.connect(self.stack.db.url, autocommit=True, connect_timeout=5)
            with conn:
                while not self.stop_event.wait(2.0):
                    self.sample(conn)
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"


def fit_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than 2 distinct x)."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = c.command_line()
    busy = c.wait_quiet(args.wait_quiet)
    limit = FULL_S if args.full else BOUNDED_S
    with c.Run("memory", limit + 60) as run:
        repos = c.repo_names(N_REPOS)
        stack = c.make_stack(run, repos)
        facts = c.facts_lines(stack, busy, command)
        serve, port = stack.serve(1)
        worker = stack.worker(name="slipway worker")
        web_pid = serve.children()[0]
        gen = c.Deliveries(stack.secret, repos)

        warm = [gen.push() for _ in repos] + gen.mix(WARM - len(repos))
        statuses = c.post_all(port, warm, concurrency=4)
        deadline = time.monotonic() + 120
        while stack.db.scalar("SELECT count(*) FROM delivery WHERE state IN ('done', 'ignored', 'failed')") < len(warm):
            if time.monotonic() > deadline or not worker.alive():
                raise c.BenchError(f"warm-up not finished; log:\n{worker.log_tail()}")
            time.sleep(0.2)
        if set(statuses) - {200, 202}:
            raise c.BenchError(f"warm-up answers {dict(statuses)}")
        base = {"web": c.memory_kb(web_pid), "worker": c.memory_kb(worker.pid), "master": c.memory_kb(serve.pid)}
        c.log(f"warm-up done; web {mb(base['web'].get('VmRSS'))} MB, worker {mb(base['worker'].get('VmRSS'))} MB")

        t0 = time.monotonic()
        redis_pid = stack.redis.server_pid()
        meter = c.CpuMeter({"web": serve.tree, "worker": worker.tree, "postgres": lambda: c.pg_pids(stack.db.name),
                            "redis": lambda: [redis_pid] if redis_pid else [], "fake GitHub": lambda: [stack.fake.pid]})
        meter.__enter__()
        sampler = Sampler(stack, worker.pid, web_pid, t0)
        sampler.start()
        web_samples: list[dict[str, Any]] = []
        sent = 0
        bad: dict[int, int] = {}
        total = len(warm) + args.deliveries
        while sent < args.deliveries:
            batch = gen.mix(min(BATCH, args.deliveries - sent))
            for k, v in c.post_all(port, batch, concurrency=4).items():
                if k not in (200, 202):
                    bad[k] = bad.get(k, 0) + v
            sent += len(batch)
            m = c.memory_kb(web_pid)
            web_samples.append({"sent": sent, "t": time.monotonic() - t0, "rss": m.get("VmRSS"), "hwm": m.get("VmHWM")})
            c.log(f"sent {sent:,}: web VmRSS {mb(m.get('VmRSS'))} MB (VmHWM {mb(m.get('VmHWM'))})")
            if time.monotonic() - t0 > limit:
                raise c.BenchError("loading alone took longer than the time limit")
        t_loaded = time.monotonic() - t0
        while True:
            s = sampler.samples[-1] if sampler.samples else {"finished": 0}
            if s["finished"] >= total or time.monotonic() - t0 > limit or not worker.alive():
                break
            time.sleep(1.0)
        sampler.stop_event.set()
        meter.__exit__()
        sampler.join(10)
        final_conn = stack.db.conn()
        last = sampler.sample(final_conn)
        web_end = c.memory_kb(web_pid)
        worker_end = c.memory_kb(worker.pid)
        states = dict(stack.db.rows("SELECT state, count(*) FROM delivery GROUP BY state"))
        ctx = {"facts": facts, "args": args, "base": base, "web_samples": web_samples, "samples": sampler.samples,
               "last": last, "web_end": web_end, "worker_end": worker_end, "master_end": c.memory_kb(serve.pid),
               "states": states, "total": total, "warm": len(warm), "bad": bad, "t_loaded": t_loaded,
               "limit": limit, "sampler_error": sampler.error, "cpu": meter.result(), "alive": worker.alive(),
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        section = render(ctx)
    print(section)
    if not args.no_write:
        c.write_section("Memory", section)
    return 0


def render(ctx: dict[str, Any]) -> str:
    args, base, last = ctx["args"], ctx["base"], ctx["last"]
    warm = ctx["warm"]
    done = last["finished"] - warm      # measured deliveries the worker finished
    web_rss, web_hwm = ctx["web_end"].get("VmRSS", 0), ctx["web_end"].get("VmHWM", 0)
    wrk_rss, wrk_hwm = ctx["worker_end"].get("VmRSS", 0), ctx["worker_end"].get("VmHWM", 0)
    complete = done >= args.deliveries
    # growth of the worker per 1,000 finished deliveries, over the samples after the first 1,000
    pts = [(s["finished"] - warm, s["worker_rss"] / 1024) for s in ctx["samples"]
           if s["worker_rss"] and s["finished"] - warm >= min(1000, done // 2)]
    slope = fit_slope(pts) * 1000
    projected = wrk_rss / 1024 + max(0.0, slope) * (args.deliveries - done) / 1000
    web_pts = [(s["sent"], s["rss"] / 1024) for s in ctx["web_samples"] if s["rss"]]
    web_slope = fit_slope(web_pts[1:]) * 1000 if len(web_pts) > 2 else 0.0
    ok_web = web_rss / 1024 < TARGET_WEB_MB and web_hwm / 1024 < TARGET_WEB_MB
    worker_value = max(wrk_rss / 1024, projected) if not complete else wrk_rss / 1024
    ok_worker = worker_value < TARGET_WORKER_MB and (wrk_hwm / 1024 < TARGET_WORKER_MB)
    L = ["## Memory", "", f"Written by `bench/memory.py` on {ctx['when']} (re-running it replaces this section).", ""]
    L += ctx["facts"]
    L += [f"- **Set-up:** production mode with one process of each kind, so each sees every delivery: `slipway serve` "
          "with WEB_CONCURRENCY=1 (the server's main process + one worker process) and one `slipway worker`; PostgreSQL database "
          "`slipway_bench_*` on 127.0.0.1:5432, a reserved Redis db, LOG_LEVEL=warning; the fake GitHub API in its "
          f"own process (one installation, {N_REPOS} repositories deploying pushes to `staging`, `required_checks: []`; "
          "TCP_NODELAY set, rate limit raised to 10^9/hour, see End to end).",
          f"- **Deliveries:** {args.deliveries:,} signed GitHub-shaped deliveries after a warm-up of {warm} ({c.MIX_TEXT}; "
          "pushes make a commit status, a GitHub deployment and its status; see the Worker section), POSTed in "
          f"batches of {BATCH:,} through 4 connections while the worker processes them.",
          "- **Measured:** `VmRSS` (resident now) and `VmHWM` (peak resident) from `/proc/<pid>/status` of the web "
          "worker (the process that runs Slipway's Flask app) and of the `slipway worker` process.", ""]
    L += ["| process | after warm-up VmRSS MB | at the end VmRSS MB | VmHWM MB | deliveries it handled | growth MB per 1,000 |",
          "|---|---|---|---|---|---|",
          f"| web (the worker process, `slipway serve`'s child) | {mb(base['web'].get('VmRSS'))} | {mb(web_rss)} | "
          f"{mb(web_hwm)} | {args.deliveries + warm - sum(ctx['bad'].values()):,} received | {web_slope:+.2f} |",
          f"| `slipway worker` | {mb(base['worker'].get('VmRSS'))} | {mb(wrk_rss)} | {mb(wrk_hwm)} | "
          f"{last['finished']:,} finished | {slope:+.2f} |",
          f"| (the server's main process, for reference) | {mb(base['master'].get('VmRSS'))} | {mb(ctx['master_end'].get('VmRSS'))} | "
          f"{mb(ctx['master_end'].get('VmHWM'))} | - | - |", ""]
    L.append(f"**Target:** web < {TARGET_WEB_MB:.0f} MB after {args.deliveries:,} deliveries — "
             f"**{'PASS' if ok_web else 'FAIL'}** (VmRSS {mb(web_rss)} MB, VmHWM {mb(web_hwm)} MB).")
    if complete:
        L.append(f"**Target:** worker < {TARGET_WORKER_MB:.0f} MB after {args.deliveries:,} deliveries — "
                 f"**{'PASS' if ok_worker else 'FAIL'}** (VmRSS {mb(wrk_rss)} MB, VmHWM {mb(wrk_hwm)} MB).")
    else:
        L.append(f"**Target:** worker < {TARGET_WORKER_MB:.0f} MB after {args.deliveries:,} deliveries — "
                 f"**{'PASS' if ok_worker else 'FAIL'} (extrapolated)**: within the {ctx['limit']} s limit the worker "
                 f"finished {done:,} of the {args.deliveries:,} deliveries (the web process had received all of them "
                 f"after {ctx['t_loaded']:.0f} s); VmRSS {mb(wrk_rss)} MB, VmHWM {mb(wrk_hwm)} MB, growing "
                 f"{slope:+.2f} MB per 1,000 → about {projected:.0f} MB projected at {args.deliveries:,}. "
                 "`--full` waits until all are done (about 6 minutes on this machine).")
    L += ["", "Samples (web after each batch; worker every 2 s, thinned to about every 1,000 finished):", "",
          "| s | sent | web VmRSS MB | finished by the worker | worker VmRSS MB | worker VmHWM MB |",
          "|---|---|---|---|---|---|"]
    rows: list[tuple[float, str, str, str, str, str]] = []
    for w in ctx["web_samples"]:
        rows.append((w["t"], f"{w['sent']:,}", mb(w["rss"]), "", "", ""))
    next_mark = 0
    for i, s in enumerate(ctx["samples"]):
        if i == len(ctx["samples"]) - 1 and i and s["finished"] == ctx["samples"][i - 1]["finished"] \
                and s["finished"] - warm < next_mark:
            break  # the final sample repeats the sampler's last one
        if s["finished"] - warm >= next_mark or i == len(ctx["samples"]) - 1:
            rows.append((s["t"], "", mb(s["web_rss"]), f"{s['finished'] - warm:,}", mb(s["worker_rss"]),
                         mb(s["worker_hwm"])))
            next_mark = (s["finished"] - warm) // 1000 * 1000 + 1000
    for r in sorted(rows, key=lambda r: r[0]):
        L.append(f"| {r[0]:.0f} | " + " | ".join(r[1:]) + " |")
    L += ["", "Deliveries by state at the end: " + ", ".join(f"{k} {v:,}" for k, v in sorted(ctx["states"].items())) + "."]
    cpu = ctx["cpu"]
    L += ["", f"CPU over the {cpu['seconds']:.0f} s of loading and processing (% of one core): web {cpu['web']:.0f}, "
          f"worker {cpu['worker']:.0f}, PostgreSQL {cpu['postgres']:.0f}, Redis {cpu['redis']:.0f}, fake GitHub "
          f"{cpu['fake GitHub']:.0f}, load generator {cpu['bench']:.0f}; machine busy {cpu['busy']:.0f} %, other "
          f"processes {cpu['other']:.0f} % of the machine."]
    caution = c.cpu_caution([("run", cpu)])
    if caution:
        L += ["", caution.replace("these figures are lower than a quiet machine gives",
                                  "the worker finished fewer deliveries than a quiet machine allows")]
    if ctx["bad"]:
        L.append(f"Non-2xx answers while loading: {ctx['bad']}.")
    if ctx["sampler_error"]:
        L.append(f"The sampler stopped early: {ctx['sampler_error']}.")
    if not ctx["alive"]:
        L.append("**The worker process exited during the run.**")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    c.run_main(main)
