"""How much of an ingest request is the database write, and what cheaper ways of writing the same row cost.

    .venv/bin/python bench/ingest_db_micro.py [--rows 1500]

No HTTP: one client, sequential, writing the `delivery` row exactly as `app/webhooks.py` builds it (a ~25 KB
pull_request.opened body from bench/payload.py, unique GUID and body per row) into a throwaway PostgreSQL
database (`slipway_micro_<random>`, dropped at the end; admin URL as in bench/ingest.py). Variants:

- `insert_ignore+pre-ping`: Slipway's first ingest path: `make_engine(url, pool_pre_ping=True)`,
  `with engine.begin()`, `models.db.insert_ignore(...)` building a new INSERT ... ON CONFLICT DO NOTHING
  RETURNING per row (BEGIN, SELECT 1, INSERT, COMMIT: four round trips).
- `insert_ignore`: the same without the pre-ping.
- `inbox.store`: `workers.inbox.store(engine, values)`, the path as it is now: one INSERT built once, on an
  AUTOCOMMIT connection (one round trip, still a durable commit before the answer).
- `raw psycopg`: the same statement as SQL text on a pooled DBAPI connection in autocommit (no SQLAlchemy).

The variants run interleaved, in 10 rounds, so load from other processes hits each of them alike.
For each: rows/s, wall µs per row, client CPU µs per row and the PostgreSQL backend's CPU µs per row,
and how PostgreSQL stored the bodies (compression, bytes per row).
Then the enqueue that follows the row for a handled event: `slipway.transport.RQTransport.enqueue([guid])`
against a plain redis-py `RPUSH` of the GUID, on an empty Redis database index of its own (flushed after).
Prints Markdown tables; writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import PG_ADMIN, REDIS_BASE, Database, RedisDb, Requests  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int:
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def row_values(reqs: Requests, tag: str, seq: int) -> dict[str, Any]:
    """The values app/webhooks.py _store_and_enqueue stores for an ignored pull_request.opened."""
    from models.base import utcnow

    raw = reqs.signer.body(seq)
    now = utcnow()
    return {"guid": reqs.guid(tag, seq), "hook_id": "412377105", "event": "pull_request", "action": "opened",
            "installation_id": 48120977, "repository": "acme-payments/payments-api", "state": "ignored",
            "received_at": now, "queued_at": None, "finished_at": now,
            "note": "Slipway does not act on pull_request.opened", "body_sha256": hashlib.sha256(raw).hexdigest(),
            "body": raw}


VARIANTS = ["insert_ignore+pre-ping", "insert_ignore", "inbox.store", "raw psycopg"]

COLUMNS = ["guid", "hook_id", "event", "action", "installation_id", "repository", "state", "attempts", "error", "note",
           "received_at", "queued_at", "started_at", "finished_at", "lease_until", "next_attempt_at", "body_sha256",
           "body"]


class Variant:
    """One way of writing the row, with its own engine and its counters."""

    def __init__(self, name: str, url: str, reqs: Requests, first_seq: int) -> None:
        from sqlalchemy import text

        from models.db import make_engine

        self.name, self.reqs, self.seq = name, reqs, first_seq
        self.tag = secrets.token_hex(4)
        self.engine = make_engine(url, pool_pre_ping=name.endswith("pre-ping"))
        self.table = "delivery"
        self.raw_conn: Any = None
        if name.startswith("raw psycopg"):
            self.raw_conn = self.engine.raw_connection()  # a pooled DBAPI connection, kept for the whole run
            self.raw_conn.driver_connection.autocommit = True
            self.sql = (f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES "
                        f"({', '.join('%(' + c + ')s' for c in COLUMNS)}) ON CONFLICT DO NOTHING RETURNING id")
            self.backend = self.raw_conn.driver_connection.info.backend_pid
        else:
            with self.engine.connect() as conn:
                self.backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        self.rows = 0
        self.wall = self.client = self.pg = 0.0

    def one(self) -> None:
        from models import Delivery
        from models.db import insert_ignore
        from workers import inbox

        values = row_values(self.reqs, self.tag, self.seq)
        self.seq += 1
        if self.name.startswith("insert_ignore"):
            with self.engine.begin() as conn:
                stored = insert_ignore(conn, Delivery, values, returning=Delivery.id)
        elif self.name.startswith("inbox.store"):
            stored = inbox.store(self.engine, values)
        else:
            cur = self.raw_conn.driver_connection.execute(self.sql, {**_defaults(), **values})
            stored = cur.fetchone()[0]
        assert stored is not None

    def chunk(self, n: int) -> None:
        """n rows, timed (the pool keeps one connection, so the backend stays the same)."""
        pg0, cpu0, t0 = _ticks(self.backend), time.process_time(), time.perf_counter()
        for _ in range(n):
            self.one()
        self.wall += time.perf_counter() - t0
        self.client += time.process_time() - cpu0
        self.pg += (_ticks(self.backend) - pg0) / CLK_TCK
        self.rows += n

    def result(self) -> dict[str, float]:
        r = self.rows
        return {"rows/s": r / self.wall, "wall": self.wall / r * 1e6, "client": self.client / r * 1e6,
                "pg": self.pg / r * 1e6}

    def close(self) -> None:
        if self.raw_conn is not None:
            self.raw_conn.close()
        self.engine.dispose()


def _defaults() -> dict[str, Any]:
    from workers import inbox

    return dict(getattr(inbox, "_DELIVERY_DEFAULTS", {"attempts": 0}))


def enqueue_costs(n: int) -> dict[str, dict[str, float]]:
    """RQ's enqueue as Slipway does it, against one RPUSH, interleaved in 10 rounds."""
    from slipway.transport import RQTransport

    rdb = RedisDb(REDIS_BASE, None)
    try:
        transport = RQTransport(rdb.url)
        ops = {"RQTransport.enqueue (RQ job per delivery)": lambda g: transport.enqueue([g]),
               "redis-py RPUSH of the GUID": lambda g: rdb.client.rpush("micro:ids", g)}
        acc = {k: [0.0, 0.0, 0] for k in ops}
        for k, op in ops.items():
            for i in range(20):
                op(f"warm-{k[:3]}-{i}")
        for r in range(10):
            for k, op in ops.items():
                c0, t0 = time.process_time(), time.perf_counter()
                for i in range(max(1, n // 10)):
                    op(f"{r}-{i}-{secrets.token_hex(4)}")
                acc[k][0] += time.perf_counter() - t0
                acc[k][1] += time.process_time() - c0
                acc[k][2] += max(1, n // 10)
        return {k: {"rate": c / w, "wall": w / c * 1e6, "client": cpu / c * 1e6} for k, (w, cpu, c) in acc.items()}
    finally:
        rdb.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1500)
    args = p.parse_args()
    reqs = Requests(secrets.token_urlsafe(16))
    db = Database(PG_ADMIN)
    db.name = db.name.replace("slipway_bench_", "slipway_micro_")
    db.url = db.url.rsplit("/", 1)[0] + "/" + db.name
    results = {}
    storage: dict[str, Any] = {}
    try:
        db.create()
        from models.db import upgrade

        upgrade(db.url)
        variants = [Variant(name, db.url, reqs, (n + 1) * 1_000_000) for n, name in enumerate(VARIANTS)]
        for v in variants:  # warm caches, prepared statements, the pool
            v.chunk(50)
            v.rows = 0
            v.wall = v.client = v.pg = 0.0
        rounds = 10
        for _ in range(rounds):  # interleaved, so load from other processes hits every variant alike
            for v in variants:
                v.chunk(max(1, args.rows // rounds))
        storage = {t: db.conn().execute(
            f"SELECT string_agg(DISTINCT coalesce(pg_column_compression(body), 'none'), ','), "
            f"pg_total_relation_size('{t}') / greatest(count(*), 1) FROM {t}").fetchone()
            for t in ("delivery",)}
        for v in variants:
            results[v.name] = r = v.result()
            v.close()
            print(f"{v.name}: {r['rows/s']:,.0f} rows/s, wall {r['wall']:,.0f} µs, client CPU {r['client']:,.0f} µs, "
                  f"PostgreSQL CPU {r['pg']:,.0f} µs per row", file=sys.stderr)
    finally:
        db.drop()
    enq = enqueue_costs(args.rows)
    print(f"\n{args.rows} rows of {reqs.body_size:,} bytes per variant, one client, sequential:\n")
    print("| variant | rows/s | wall µs/row | client CPU µs/row | PostgreSQL backend CPU µs/row |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows/s']:,.0f} | {r['wall']:,.0f} | {r['client']:,.0f} | {r['pg']:,.0f} |")
    print("\nStorage: " + "; ".join(f"`{t}` body compression {c}, {b:,} bytes per row with TOAST and indexes"
                                     for t, (c, b) in storage.items()))
    print(f"\n{args.rows} enqueues per variant, one client, sequential:\n")
    print("| enqueue | per second | wall µs | client CPU µs |")
    print("|---|---|---|---|")
    for name, r in enq.items():
        print(f"| {name} | {r['rate']:,.0f} | {r['wall']:,.0f} | {r['client']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
