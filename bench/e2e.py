"""End-to-end benchmark: signed push webhook -> GitHub deployment created on the fake GitHub, at 50 deliveries/s.

    .venv/bin/python bench/e2e.py [--rate 50] [--duration 20] [--no-write]

What it does, all on 127.0.0.1, bounded in time (budget 235 s; 1.5-3 minutes):
1. Sets up (bench/common.py): a PostgreSQL database `slipway_bench_<hex>` (`slipway db upgrade`), a reserved Redis
   database index, the fake GitHub API (tests/fakegithub.py) in its own process with one installation and
   20 repositories whose `.github/slipway.yml` deploys pushes to main to `staging` with `required_checks: []`.
2. Starts production mode: `slipway serve` (WEB_CONCURRENCY=2 granian worker processes) and four `slipway worker`
   processes, and waits until both workers are registered with RQ.
3. Warm-up (not measured): one push per repository; waits for their deployments.
4. A reference run at --low-rate (default 4/s, 15 s) where the workers keep up, then the target run.
   Each: an open-loop generator (one selector loop, a new connection per request, as GitHub does) sends
   signed `push` deliveries, each with a new commit sha, at --rate per second for --lead-in + --duration
   seconds (request i is due at t0 + i/rate whatever happened before). The fake GitHub records the moment it
   answers each `POST /repos/{o}/{r}/deployments` (201) with the `ref` Slipway sent (the push's sha);
   latency = that moment - the moment the push's first byte was sent (both CLOCK_MONOTONIC on this machine).
   Pushes whose deployment did not appear within --drain seconds after the last request count as missing
   (percentiles over all pushes, missing ones as infinitely late).
5. Breaks the latency down per push from the database (received_at, started_at = claimed by a worker) and the
   fake's wall-clock time of the deployment POST; measures CPU of every process group and of the machine.
6. Writes the section "End to end" of docs/benchmarks.md unless --no-write; stops every process by PID,
   drops the database, flushes and releases the Redis index (also on error and Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_P50_MS = 50.0
TARGET_P99_MS = 250.0
N_REPOS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=50.0, help="deliveries per second (default 50)")
    p.add_argument("--duration", type=int, default=20, help="measured seconds (default 20)")
    p.add_argument("--lead-in", type=int, default=2, help="seconds sent first and not counted (default 2)")
    p.add_argument("--drain", type=int, default=45,
                   help="seconds to wait after the last request for outstanding deployments (default 45)")
    p.add_argument("--web-concurrency", type=int, default=2)
    # Four: a worker waits for PostgreSQL, GitHub and Redis about two thirds of its time, so two per core
    # overlap those waits (2 workers: 34.8 deployments/s at 50/s offered, 4: 44.2/s, same busy machine).
    p.add_argument("--workers", type=int, default=4, help="`slipway worker` processes (default 4, two per core here)")
    p.add_argument("--low-rate", type=float, default=4.0,
                   help="rate of a reference run before the target run (0 = none; default 4/s)")
    p.add_argument("--low-duration", type=int, default=15, help="measured seconds of the reference run (default 15)")
    p.add_argument("--wait-quiet", type=int, default=20, metavar="SECONDS",
                   help="wait up to this long for the machine to be under 25 %% busy before measuring")
    p.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    if not 1 <= args.rate <= 500 or not 5 <= args.duration <= 60 or not 0 <= args.lead_in <= 10:
        p.error("--rate 1..500, --duration 5..60, --lead-in 0..10")
    if not 5 <= args.drain <= 90 or not 1 <= args.workers <= 8 or not 1 <= args.web_concurrency <= 8:
        p.error("--drain 5..90, --workers 1..8, --web-concurrency 1..8")
    return args


def wait_workers(stack: c.Stack, procs: list[c.Proc], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while stack.redis.client.scard(f"rq:workers:{c.QUEUE}") < len(procs):
        for p in procs:
            if not p.alive():
                raise c.BenchError(f"{p.name} exited; log:\n{p.log_tail()}")
        if time.monotonic() > deadline:
            raise c.BenchError("the workers did not register with RQ in time")
        time.sleep(0.1)


def wait_deployed(stack: c.Stack, shas: set[str], since: int, until: float) -> dict[str, list[float]]:
    """Poll the fake until every sha has a deployment or `until` (monotonic) passes."""
    seen: dict[str, list[float]] = {}
    while True:
        seen.update({k: v for k, v in stack.fake.deploy_times(since).items() if k in shas})
        if len(seen) >= len(shas) or time.monotonic() > until:
            return seen
        time.sleep(0.25)


def measure(stack: c.Stack, port: int, gen: c.Deliveries, groups: dict[str, Any], rate: float, duration: int,
            lead_in: int, drain: int) -> dict[str, Any]:
    """One open-loop run of pushes at `rate`; per push: answer, deployment time, database stages."""
    n_lead = int(rate * lead_in)
    n = int(rate * duration)
    items = [gen.push() for _ in range(n_lead + n)]
    base = stack.fake.stats()["deployments"]
    meter = c.CpuMeter(groups)
    c.log(f"sending {n_lead} + {n} pushes at {rate:g}/s")
    with meter:
        sent = c.paced(port, items, rate=rate, drain=10)
    t_sent = time.monotonic()
    measured = sorted(sent, key=lambda r: r["due"])[n_lead:]
    deployed = wait_deployed(stack, {r["sha"] for r in sent}, base, t_sent + drain)
    waited = time.monotonic() - t_sent
    depth = stack.redis.queue_state(c.QUEUE)
    in_window = [v[0] for k, v in deployed.items()]
    t_first, t_last = measured[0]["sent"] if measured else 0, max((r["sent"] for r in measured), default=0)
    throughput = sum(1 for t in in_window if t_first <= t <= t_last) / max(1e-6, t_last - t_first)
    rows = {g: (rcv, st, note) for g, rcv, st, note in stack.db.rows(
        "SELECT guid, extract(epoch FROM received_at), extract(epoch FROM started_at), coalesce(note, error, '') "
        "FROM delivery WHERE guid = ANY(%s)", [r["guid"] for r in measured])}
    got = sum(1 for r in measured if r["sha"] in deployed)
    missing = [r["guid"] for r in measured if r["sha"] not in deployed]
    why = stack.db.rows("SELECT state, left(coalesce(note, error, ''), 160), count(*) FROM delivery "
                        "WHERE guid = ANY(%s) GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5", missing) if missing else []
    if why:
        c.log(f"pushes without a deployment, by state: {why}")
    c.log(f"{got} of {len(measured)} measured pushes deployed {waited:.0f} s after the last request; "
          f"queue now {depth[0]}")
    return {"rate": rate, "duration": duration, "lead_in": lead_in, "measured": measured, "deployed": deployed,
            "rows": rows, "cpu": meter.result(), "waited": waited, "depth": depth, "throughput": throughput,
            "drain": drain, "why": why}


def clear_backlog(stack: c.Stack, workers: list[c.Proc]) -> int:
    """After an overloaded run: stop the workers, drop what is still queued (marked `ignored` with a note in
    the benchmark's own database, so no sweeper re-queues it) and start the workers again."""
    for w in workers:
        w.stop()
    stack.redis.client.delete(f"rq:queue:{c.QUEUE}", f"rq:queue:{c.QUEUE}:intermediate")
    n = stack.db.conn().execute(
        "UPDATE delivery SET state = 'ignored', note = 'dropped by bench/e2e.py after an overloaded run', "
        "finished_at = now(), lease_until = NULL WHERE state IN ('received', 'queued', 'processing')").rowcount
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = c.command_line()
    busy = c.wait_quiet(args.wait_quiet)
    with c.Run("e2e", 235) as run:
        repos = c.repo_names(N_REPOS)
        stack = c.make_stack(run, repos)
        facts = c.facts_lines(stack, busy, command)
        serve, port = stack.serve(args.web_concurrency)
        workers = [stack.worker(name=f"slipway worker {i + 1}", log_name=f"worker-{i + 1}.log")
                   for i in range(args.workers)]
        wait_workers(stack, workers)
        gen = c.Deliveries(stack.secret, repos)

        # warm-up: one push per repository (configuration cached, token minted), not measured
        warm = [gen.push() for _ in repos]
        base = stack.fake.stats()["deployments"]
        res = c.paced(port, warm, rate=10)
        if any(r["status"] != 202 for r in res):
            raise c.BenchError(f"warm-up answers: {[r['status'] for r in res]}; log:\n{serve.log_tail()}")
        got = wait_deployed(stack, {d.sha for d in warm if d.sha}, base, time.monotonic() + 60)
        if len(got) != len(warm):
            raise c.BenchError(f"warm-up: only {len(got)} of {len(warm)} deployments; log:\n{workers[0].log_tail()}")
        c.log(f"warm-up done ({len(warm)} pushes deployed)")

        redis_pid = stack.redis.server_pid()
        groups = {"web": serve.tree, "workers": lambda: [p for w in workers for p in w.tree()],
                  "postgres": lambda: c.pg_pids(stack.db.name), "redis": lambda: [redis_pid] if redis_pid else [],
                  "fake GitHub": lambda: [stack.fake.pid]}
        runs = []
        if args.low_rate:
            runs.append(measure(stack, port, gen, groups, args.low_rate, args.low_duration, 1, 20))
            if runs[-1]["depth"][0]:
                c.log(f"the reference run left {clear_backlog(stack, workers)} deliveries; workers restarted")
                workers[:] = [stack.worker(name=f"slipway worker {i + 1}", log_name=f"worker-{i + 1}b.log")
                              for i in range(args.workers)]
                wait_workers(stack, workers)
        runs.append(measure(stack, port, gen, groups, args.rate, args.duration, args.lead_in, args.drain))
        fake_stats = stack.fake.stats()
        ctx = {"facts": facts, "args": args, "runs": runs, "fake": fake_stats,
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        section = render(ctx)
    print(section)
    if not args.no_write:
        c.write_section("End to end", section)
    return 0


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    lat, ingest, queue_wait, job_to_deploy, send_lag = [], [], [], [], []
    missing = superseded = 0
    for m in r["measured"]:
        note = r["rows"].get(m["guid"], (None, None, ""))[2]
        if m["sha"] not in r["deployed"] and "superseded" in note:
            superseded += 1  # a newer push for the same repository was decided first: no deployment by design
            continue
        if m["status"] in (200, 202):
            ingest.append((m["answered"] - m["sent"]) * 1000)
        if m["sent"]:
            send_lag.append((m["sent"] - m["due"]) * 1000)
        d = r["deployed"].get(m["sha"])
        if d is None or not m["sent"]:
            missing += 1
            lat.append(math.inf)
            continue
        lat.append((d[0] - m["sent"]) * 1000)
        rcv, started, _note = r["rows"].get(m["guid"], (None, None, ""))
        if rcv is not None and started is not None:
            queue_wait.append((float(started) - float(rcv)) * 1000)
            job_to_deploy.append((d[1] - float(started)) * 1000)
    ok2xx = sum(1 for m in r["measured"] if m["status"] in (200, 202))
    return {"lat": lat, "ingest": ingest, "queue": queue_wait, "job": job_to_deploy, "lag": send_lag,
            "missing": missing, "superseded": superseded, "ok2xx": ok2xx, "p50": c.pct(lat, 50), "p99": c.pct(lat, 99)}


def render(ctx: dict[str, Any]) -> str:
    args, runs = ctx["args"], ctx["runs"]
    sums = [summarise(r) for r in runs]
    target, ts = runs[-1], sums[-1]
    fmt = lambda x: "∞" if x == math.inf else c.fmt_ms(x)  # noqa: E731
    ok50, ok99 = ts["p50"] < TARGET_P50_MS, ts["p99"] < TARGET_P99_MS
    L = ["## End to end", "",
         f"Written by `bench/e2e.py` on {ctx['when']} (re-running it replaces this section).", ""]
    L += ctx["facts"]
    L += [f"- **Set-up:** production mode: `slipway serve` (granian, WEB_CONCURRENCY={args.web_concurrency} worker processes) "
          f"+ {args.workers} `slipway worker` processes (RQ SimpleWorker + sweeper), PostgreSQL database `slipway_bench_*` "
          "on 127.0.0.1:5432, a reserved Redis db on 127.0.0.1:6379, LOG_LEVEL=warning. The fake GitHub API "
          f"(`tests/fakegithub.py`, TCP_NODELAY set) runs in its own process: one installation, {N_REPOS} repositories "
          "whose `.github/slipway.yml` is `environments: {staging: {on: push, required_checks: []}}`, so every push "
          "to main becomes a `slipway/staging` commit status, a GitHub deployment and its `queued` status (5 GitHub "
          "calls). The fake's rate limit is raised to 10^9 requests/hour: GitHub's own, 5,000-15,000 per installation "
          "and hour, allows 1,000-3,000 such pushes an hour, and 50 pushes/s would exhaust it in 20-60 s.",
          "- **Load:** signed `push` deliveries (~7 KB, GitHub-shaped, a new commit sha each, round the repositories), "
          "open loop (request i due at t0 + i/rate, sent whatever happened before), a new connection per request, "
          "a lead-in not counted. A warm-up of one push per repository ran first (configuration cached, token minted). "
          + (f"A reference run at {args.low_rate:g}/s ran before the target run at {args.rate:g}/s"
             + (" (its left-over backlog was dropped and the workers restarted)." if len(runs) > 1 and runs[0]['depth'][0] else ".")
             if args.low_rate else ""),
          "- **Latency:** from the moment a push's first byte was sent to the moment the fake GitHub answered the "
          "`POST /repos/{o}/{r}/deployments` whose `ref` is that push's sha (CLOCK_MONOTONIC in both processes). "
          "A push without a deployment when the wait after the last request ends counts as infinitely late (∞).",
          ""]
    L += ["| offered rate | measured pushes | answered 2xx | deployed in time (wait after the last request) | deployments/s while sending | p50 ms | p90 ms | p99 ms | max ms |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r, s in zip(runs, sums):
        L.append(f"| {r['rate']:g}/s for {r['duration']} s | {len(r['measured']):,} | {s['ok2xx']:,} | "
                 f"{len(r['measured']) - s['missing'] - s['superseded']:,} ({r['waited']:.0f} s) | {r['throughput']:.1f} | {fmt(s['p50'])} | "
                 f"{fmt(c.pct(s['lat'], 90))} | {fmt(s['p99'])} | {fmt(max(s['lat']) if s['lat'] else math.nan)} |")
    L += ["", f"**Target** (at {args.rate:g} deliveries/s): p50 < {TARGET_P50_MS:.0f} ms — **{'PASS' if ok50 else 'FAIL'}** "
          f"({fmt(ts['p50'])} ms); p99 < {TARGET_P99_MS:.0f} ms — **{'PASS' if ok99 else 'FAIL'}** ({fmt(ts['p99'])} ms)."]
    for r, s in zip(runs, sums):
        if s["superseded"]:
            L.append(f"\nAt {r['rate']:g}/s, {s['superseded']} pushes were superseded (a newer push to the same repository "
                     "was decided first, so by design no deployment was made); they are left out of the percentiles.")
    if ts["missing"]:
        L.append(f"\n{ts['missing']} of {len(target['measured'])} pushes had no deployment {target['waited']:.0f} s after "
                 f"the last request (queue still holding {target['depth'][0]} jobs): the {args.workers} workers made "
                 f"{target['throughput']:.1f} deployments/s against {args.rate:g} pushes/s offered.")
        if target.get("why"):
            L.append("Their deliveries by state and note: " + "; ".join(
                f"{state} × {n} ({note or '-'})" for state, note, n in target["why"]) + ".")
    L += ["", "Where the time goes (per deployed push, ms; from the database's `received_at`, `started_at` (claimed by a "
          "worker) and the fake's wall-clock time of the deployment POST):", "",
          "| run | stage | p50 | p90 | p99 |", "|---|---|---|---|---|"]
    for r, s in zip(runs, sums):
        for label, vals in (("generator: due → first byte sent", s["lag"]), ("web: sent → 2xx answer", s["ingest"]),
                            ("queue: stored → claimed by a worker", s["queue"]),
                            ("worker: claimed → deployment POST answered", s["job"])):
            L.append(f"| {r['rate']:g}/s | {label} | {c.fmt_ms(c.pct(vals, 50))} | {c.fmt_ms(c.pct(vals, 90))} | "
                     f"{c.fmt_ms(c.pct(vals, 99))} |")
    nproc = int(c.machine_facts()["nproc"])
    L += ["", f"CPU while sending (% of one core; the machine has {nproc} cores = {100 * nproc} %; 'machine busy' and "
          "'other' = processes outside the benchmark, in % of the whole machine):", "",
          "| run | web | workers | PostgreSQL | Redis | fake GitHub | load generator | machine busy | other |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cpu = r["cpu"]
        L.append(f"| {r['rate']:g}/s | {cpu['web']:.0f} | {cpu['workers']:.0f} | {cpu['postgres']:.0f} | {cpu['redis']:.0f} | "
                 f"{cpu['fake GitHub']:.0f} | {cpu['bench']:.0f} | {cpu['busy']:.0f} | {cpu['other']:.0f} |")
    cpu, thr = target["cpu"], target["throughput"]
    if thr > 0:
        answered = ts["ok2xx"] / max(1e-6, target["duration"])
        per = {"web": cpu["web"] * 10 / max(1e-6, answered)}
        per.update({k: cpu[k] * 10 / thr for k in ("workers", "postgres", "redis", "fake GitHub")})
        total = sum(per.values())
        L += ["", f"**Reading:** while sending at {args.rate:g}/s the {args.workers} workers made {thr:.1f} deployments/s. "
              f"CPU per push: web {per['web']:.1f} ms (per answered request), workers {per['workers']:.1f} ms, PostgreSQL "
              f"{per['postgres']:.1f} ms, Redis {per['redis']:.1f} ms, fake GitHub {per['fake GitHub']:.1f} ms (per "
              f"deployment) = {total:.0f} ms, so {args.rate:g} pushes/s need about {total * args.rate / 1000:.1f} cores "
              f"(the machine has {nproc}). Each worker was on a CPU {cpu['workers'] / args.workers:.0f} % of the time: the "
              "rest it waits for PostgreSQL, Redis and GitHub round trips one after the other."
              + (f" When the workers keep up (the {runs[0]['rate']:g}/s run) a push is deployed in {fmt(sums[0]['p50'])} ms "
                 f"(p50; p99 {fmt(sums[0]['p99'])} ms), most of it the worker's own path from claim to the deployment POST."
                 if len(runs) > 1 else "")]
    caution = c.cpu_caution([(str(r["rate"]), r["cpu"]) for r in runs])
    if caution:
        L += ["", caution]
    if ctx["fake"].get("n_errors"):
        L += ["", f"The fake GitHub recorded {ctx['fake']['n_errors']} errors of its own: {ctx['fake']['errors']}"]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    c.run_main(main)
