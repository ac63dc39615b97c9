"""Group commit of the delivery INSERT (workers/groupcommit.py) against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.base import utcnow
from models.db import make_engine
from workers import inbox
from workers.groupcommit import GroupCommit


def values(n: int, guid: str | None = None, body: bytes | None = None) -> dict[str, Any]:
    """A new delivery row as the webhook builds it."""
    body = body if body is not None else b'{"n": %d}' % n
    now = utcnow()
    return {"guid": guid or f"gc-{n}", "event": "push", "action": None, "state": "queued", "received_at": now,
            "queued_at": now, "body_sha256": hashlib.sha256(body).hexdigest(), "body": body}


@pytest.fixture
def engine(pg_url: str):  # noqa: ANN201
    eng = make_engine(pg_url, pool_size=20)
    yield eng
    eng.dispose()


def run_together(n: int, fn: Any) -> list[Any]:
    """Call fn(i) in n threads released at the same moment; results (or exceptions) by i."""
    barrier, out = threading.Barrier(n), [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_concurrent_stores_share_statements_and_all_commit(engine) -> None:
    """32 threads × 20 rows: every call gets its own id, every row is in the table, and rows shared statements."""
    gc = inbox._committer(engine)
    before = (gc.statements, gc.rows)
    ids = run_together(32, lambda i: [inbox.store(engine, values(i * 100 + j)) for j in range(20)])
    flat = [x for per in ids for x in per]
    assert all(isinstance(x, int) for x in flat) and len(set(flat)) == 640
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT guid, id FROM delivery")).all())
    assert len(stored) == 640
    assert sorted(stored.values()) == sorted(flat)
    assert gc.rows - before[1] == 640
    # With 32 threads waiting on one another's commits, batches form; fewer statements than rows.
    assert gc.statements - before[0] < 640


def test_copies_of_one_guid_in_one_batch_store_one_row(engine) -> None:
    """Copies that meet in a statement: one gets the id, the others None (the webhook's duplicate answer)."""
    got = run_together(16, lambda i: inbox.store(engine, values(0, guid="gc-same", body=b"same")))
    assert sum(isinstance(x, int) for x in got) == 1
    assert got.count(None) == 15
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM delivery WHERE guid = 'gc-same'")).scalar() == 1


def test_a_replayed_body_is_not_stored_twice(engine) -> None:
    """Two GUIDs, one body: the body's hash is unique, so the second is not stored."""
    assert isinstance(inbox.store(engine, values(1, guid="gc-a", body=b"x")), int)
    assert inbox.store(engine, values(1, guid="gc-b", body=b"x")) is None


def test_a_failed_statement_fails_every_row_in_it() -> None:
    """Database unreachable: every waiting call raises DBAPIError (503 at the webhook), none hangs."""
    eng = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none")
    got = run_together(8, lambda i: inbox.store(eng, values(i)))
    assert all(isinstance(x, DBAPIError) for x in got), got
    eng.dispose()


def test_the_lead_passes_on_when_rows_wait(engine) -> None:
    """A leader whose statement is slow finds rows queued behind it; the next leader sends them together."""
    def row(n: int) -> dict[str, Any]:
        return {**inbox._DELIVERY_DEFAULTS, **values(n)}

    gc = GroupCommit(engine, list(row(0)))
    release, sent = threading.Event(), []
    real = gc._insert

    def slow_insert(rows: list[dict[str, Any]]) -> list[int | None]:
        sent.append(len(rows))
        if len(sent) == 1:
            release.wait(10)  # the first statement waits until the others have queued up
        return real(rows)

    gc._insert = slow_insert  # type: ignore[method-assign]
    first = threading.Thread(target=lambda: gc.store(row(1)))
    first.start()
    while not sent:
        threading.Event().wait(0.001)
    others = [threading.Thread(target=lambda i=i: gc.store(row(10 + i))) for i in range(5)]
    for t in others:
        t.start()
    while len(gc._pending) < 5:
        threading.Event().wait(0.001)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert sent == [1, 5]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM delivery")).scalar() == 6


def test_a_connection_killed_while_idle_is_replaced(engine) -> None:
    """The committer's own connection dies (database restart): the next store reconnects and succeeds."""
    assert isinstance(inbox.store(engine, values(1)), int)
    pid = inbox._committer(engine)._conn.info.backend_pid
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    assert isinstance(inbox.store(engine, values(2)), int)
    assert inbox._committer(engine)._conn.info.backend_pid != pid


def test_dispose_closes_the_committers_connection(pg_url: str) -> None:
    """engine.dispose() (runtime close) also closes the connection taken out of the pool."""
    eng = make_engine(pg_url)
    inbox.store(eng, values(1))
    conn = inbox._committer(eng)._conn
    eng.dispose()
    assert conn.closed
