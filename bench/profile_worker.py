"""Where a worker's time goes, in one process: N deliveries through `process_delivery` under cProfile.

Production mode (a throwaway PostgreSQL database, a reserved Redis db), the fake GitHub in a process of its
own (bench/common.py FakeGitHubProcess), the same deliveries as bench/worker.py. Prints deliveries/s,
CPU ms per delivery, SQL statements and GitHub calls per delivery, and the top functions by own time.

    .venv/bin/python bench/profile_worker.py --kind push -n 200 [--top 40] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Set up, warm up, then process the deliveries under the profiler."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=["push", "deployment_status", "ping", "mix"], default="push")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--rq", action="store_true", help="through RQ: queue the GUIDs and run `slipway worker --burst` "
                                                   "(slipway.server.run_worker) in this process")
    args = p.parse_args(argv)

    from slipway import runtime
    from slipway.settings import load_settings

    with common.Run("profile-worker", 600) as run:
        db = common.Database(run)
        space = common.RedisSpace(run)
        repos = common.repo_names(20)
        fake = common.FakeGitHubProcess(run, repos)  # its own process: its CPU is not counted here
        pem = fake.pem_path.read_bytes()
        from models.db import upgrade

        upgrade(db.url.replace("postgresql://", "postgresql+psycopg://", 1))
        settings = load_settings(_env_file=None, database_url=db.url, redis_url=space.url, webhook_secret="s",
                                 app_id=common.APP_ID, private_key=pem.decode(), github_api_url=fake.url,
                                 log_level="warning", log_format="text")
        rt = runtime.build(settings)
        runtime.install(rt)
        run.on_close("runtime", rt.close)
        from workers import jobs

        gen = common.Deliveries("s", repos)
        kinds = ["push", "deployment_status", "push", "deployment_status", "ping", "deployment_status"]

        def make(n: int) -> list[str]:
            out = []
            for i in range(n):
                kind = kinds[i % len(kinds)] if args.kind == "mix" else args.kind
                d = getattr(gen, kind)()
                _store(rt, d)
                out.append(d.guid)
            return out

        for g in make(len(repos)):  # warm-up: configuration cached, token minted
            jobs.process_delivery(g)
        guids = make(args.n)
        statements = Counter()
        from sqlalchemy import event

        import re

        def _kind(statement: str) -> str:
            first = statement.split(None, 1)[0].upper()
            if first != "WITH":
                return first
            # A data-modifying CTE (WITH x AS (INSERT ...) UPDATE ...) counts as its main statement, after the CTE.
            main = re.findall(r"\)\s*(INSERT|UPDATE|DELETE|SELECT)\b", statement)
            return main[-1] if main else first

        @event.listens_for(rt.engine, "before_cursor_execute")
        def _count(conn, cursor, statement, *a):  # noqa: ANN001, ANN202
            statements[_kind(statement)] += 1

        from models import db as models_db

        # Statements run straight on the psycopg connection (models.db.run) bypass SQLAlchemy's events.
        models_db._sql_observers.append(lambda sql: statements.__setitem__(_kind(sql), statements[_kind(sql)] + 1))

        fake.ask("reset_counts")
        prof = cProfile.Profile()
        t0, c0 = time.perf_counter(), time.thread_time()
        if not args.no_profile:
            prof.enable()
        if args.rq:
            from slipway.server import run_worker

            rt.transport.enqueue(guids)
            run_worker(settings, burst=True)
            states = Counter(_states(rt, guids))
        else:
            states = Counter(jobs.process_delivery(g) for g in guids)
        prof.disable()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        n = len(guids)
        calls = sum(fake.stats()["counts"].values())
        print(f"{n} {args.kind}: {n / wall:.1f}/s, wall {wall / n * 1000:.2f} ms, CPU (job thread) "
              f"{cpu / n * 1000:.2f} ms per delivery; states {dict(states)}")
        print(f"SQL per delivery (BEGIN/COMMIT sent by SQLAlchemy not counted): "
              f"{sum(statements.values()) / n:.1f} {dict(statements)}")
        print(f"GitHub calls per delivery: {calls / n:.1f}")
        if not args.no_profile:
            stats = pstats.Stats(prof)
            print(f"own time per delivery by package (ms; waits are psycopg's wait and socket calls):")
            for label, ms in sorted(_by_package(stats).items(), key=lambda kv: -kv[1]):
                print(f"  {label:<28} {ms / n * 1000:7.2f}")
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
    return 0


PACKAGES = ("sqlalchemy", "psycopg", "githubkit", "httpx", "httpcore", "h11", "pydantic", "redis", "rq",
            "workers", "models", "slipway", "app", "json", "logging", "ssl", "socket", "email", "urllib")


def _by_package(stats: pstats.Stats) -> dict[str, float]:
    """Own (tottime) seconds summed by package; psycopg's wait and socket I/O apart, as waits."""
    out: Counter[str] = Counter()
    for (file, _line, fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if fn == "wait" and "psycopg" in file:
            label = "WAIT PostgreSQL"
        elif fn in ("<method 'recv' of '_socket.socket' objects>", "<method 'recv_into' of '_socket.socket' objects>"):
            label = "WAIT socket recv"
        else:
            parts = file.replace("\\", "/").split("/")
            label = next((p for p in reversed(parts[:-1]) if p in PACKAGES), None) or \
                next((p.removesuffix(".py") for p in parts[-1:] if p.removesuffix(".py") in PACKAGES), "other")
        out[label] += tt
    return dict(out)


def _states(rt, guids: list[str]) -> list[str]:  # noqa: ANN001
    """The deliveries' states after an RQ run."""
    from sqlalchemy import select

    from models import Delivery

    with rt.engine.connect() as conn:
        return list(conn.execute(select(Delivery.state).where(Delivery.guid.in_(guids))).scalars())


def _store(rt, d) -> None:  # noqa: ANN001
    """Store a delivery as the receiver does (state queued)."""
    import json

    from models.base import utcnow
    from workers import inbox

    doc = json.loads(d.body)
    now = utcnow()
    inbox.store(rt.engine, {"guid": d.guid, "event": d.event, "action": doc.get("action"),
                            "installation_id": common.INSTALLATION_ID,
                            "repository": (doc.get("repository") or {}).get("full_name"), "state": "queued",
                            "received_at": now, "queued_at": now, "body_sha256": hashlib.sha256(d.body).hexdigest(),
                            "body": d.body})


if __name__ == "__main__":
    sys.exit(main())
