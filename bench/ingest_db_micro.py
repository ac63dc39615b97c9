"""How much of an ingest request is the database write, and what cheaper ways of writing the same row cost.

    .venv/bin/python bench/ingest_db_micro.py [--rows 1500]

No HTTP: one client, sequential, writing the `delivery` row exactly as `app/webhooks.py` builds it (a ~25 KB
pull_request.opened body from bench/payload.py, unique GUID and body per row) into a throwaway PostgreSQL
database (`slipway_micro_<random>`, dropped at the end; admin URL as in bench/ingest.py). Variants:

- `current`: Slipway's path today: `make_engine(url)` (pool_pre_ping=True), `with engine.begin()`,
  `models.db.insert_ignore(...)` building a new INSERT ... ON CONFLICT DO NOTHING RETURNING per row.
- `no-pre-ping`: the same with `pool_pre_ping=False` (one round trip less: no `SELECT 1` per checkout).
- `prebuilt`: no pre-ping, and one INSERT statement built once, executed with the row as parameters.
- `autocommit`: `prebuilt` on an AUTOCOMMIT connection: no BEGIN/COMMIT round trips (one statement, still a
  durable commit before the answer).
- `autocommit+lz4`: the same after `ALTER TABLE delivery ALTER COLUMN body SET COMPRESSION lz4`.

For each: rows/s, wall µs per row, client CPU µs per row and the PostgreSQL backend's CPU µs per row.
Prints a Markdown table; writes nothing.
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

from ingest import PG_ADMIN, Database, Requests  # noqa: E402

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


def run_variant(name: str, url: str, reqs: Requests, rows: int, first_seq: int) -> dict[str, float]:
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql import insert

    from models import Delivery
    from models.db import insert_ignore, make_engine

    engine = make_engine(url, pool_pre_ping=(name == "current"))
    stmt = insert(Delivery).on_conflict_do_nothing().returning(Delivery.id)
    tag = secrets.token_hex(4)
    with engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()

    def one(seq: int) -> None:
        values = row_values(reqs, tag, seq)
        if name in ("current", "no-pre-ping"):
            with engine.begin() as conn:
                stored = insert_ignore(conn, Delivery, values, returning=Delivery.id)
        elif name == "prebuilt":
            with engine.begin() as conn:
                stored = conn.execute(stmt, values).scalar()
        else:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                stored = conn.execute(stmt, values).scalar()
        assert stored is not None

    for i in range(50):  # warm caches, prepared statements, the pool
        one(first_seq + i)
    pg0, cpu0, t0 = _ticks(backend), time.process_time(), time.perf_counter()
    for i in range(rows):
        one(first_seq + 50 + i)
    wall, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, (_ticks(backend) - pg0) / CLK_TCK
    engine.dispose()
    return {"rows/s": rows / wall, "wall": wall / rows * 1e6, "client": cpu / rows * 1e6, "pg": pg / rows * 1e6}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1500)
    args = p.parse_args()
    reqs = Requests(secrets.token_urlsafe(16))
    db = Database(PG_ADMIN)
    db.name = db.name.replace("slipway_bench_", "slipway_micro_")
    db.url = db.url.rsplit("/", 1)[0] + "/" + db.name
    results = {}
    try:
        db.create()
        from models.db import upgrade

        upgrade(db.url)
        for n, name in enumerate(["current", "no-pre-ping", "prebuilt", "autocommit", "autocommit+lz4"]):
            if name == "autocommit+lz4":
                db.conn().execute("ALTER TABLE delivery ALTER COLUMN body SET COMPRESSION lz4")
            db.reset()
            results[name] = run_variant(name, db.url, reqs, args.rows, (n + 1) * 1_000_000)
            r = results[name]
            print(f"{name}: {r['rows/s']:,.0f} rows/s, wall {r['wall']:,.0f} µs, client CPU {r['client']:,.0f} µs, "
                  f"PostgreSQL CPU {r['pg']:,.0f} µs per row", file=sys.stderr)
    finally:
        db.drop()
    print(f"\n{args.rows} rows of {reqs.body_size:,} bytes per variant, one client, sequential:\n")
    print("| variant | rows/s | wall µs/row | client CPU µs/row | PostgreSQL backend CPU µs/row |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows/s']:,.0f} | {r['wall']:,.0f} | {r['client']:,.0f} | {r['pg']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
