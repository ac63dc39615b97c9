"""Group commit for the delivery INSERT on PostgreSQL: rows that arrive together share one statement and one commit.

Every request thread still waits until its own row is committed before it answers (a 2xx means stored).
While one thread's statement is at the database, the rows that arrive meanwhile queue up; when it returns,
the first of them leads the next statement for all of them. No writer thread: a hand-off to one would cost a
thread switch per batch under the GIL, and the reference measurements found that such a writer batched
only ~4 rows. Here the leader is a request thread that had to wait anyway.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from models.db import dbapi_error

MAX_BATCH = 64  # rows per statement: 64 × ~25 KB bodies is ~1.6 MB, well inside one round trip


class _Slot:
    """One request's row, and what became of it."""

    __slots__ = ("params", "ready", "lead", "result", "error")

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        # A lock taken now and released by whoever hands this row its outcome or the lead: a bare lock is
        # all C, where threading.Event runs a Condition in Python on every wait and set.
        self.ready = threading.Lock()
        self.ready.acquire()
        self.lead = False           # woken to lead the next statement rather than with a result
        self.result: int | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Batches concurrent `store` calls of one process into multi-row INSERTs, leader/follower style."""

    def __init__(self, engine: Engine, columns: list[str]) -> None:
        self.engine, self.columns = engine, tuple(columns)
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._leading = False
        self._conn: Any = None  # the leader's own psycopg connection, taken out of the pool (see _connection)
        event.listen(engine, "engine_disposed", lambda _engine: self._drop())  # closed with the pool
        self.statements = 0  # statements sent (rows / statements = batch size; read by tests and benchmarks)
        self.rows = 0

    def store(self, params: dict[str, Any]) -> int | None:
        """Insert one row, committed when this returns; its id, or None when a unique key already held it."""
        slot = _Slot(params)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.ready.acquire()
            if not slot.lead:
                return _outcome(slot)
        self._lead()
        return _outcome(slot)

    def _lead(self) -> None:
        """Send what is pending as one statement, then pass the lead to the first row that arrived meanwhile."""
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            ids = self._insert([s.params for s in batch])
            for slot, row_id in zip(batch, ids):
                slot.result = row_id
        except BaseException as exc:  # every row of the statement shares its fate; each request answers 503
            for slot in batch:
                slot.error = exc
        with self._lock:
            self.statements += 1
            self.rows += len(batch)
            nxt = self._pending[0] if self._pending else None
            if nxt is None:
                self._leading = False
        for slot in batch:  # every slot of a batch is held: by its waiting follower, or by the leader itself
            slot.ready.release()
        if nxt is not None:
            nxt.lead = True
            nxt.ready.release()

    def _insert(self, rows: list[dict[str, Any]]) -> list[int | None]:
        """One INSERT .. VALUES (..), (..) ON CONFLICT DO NOTHING in autocommit; ids in the order of `rows`."""
        flat = [r[c] for r in rows for c in self.columns]
        stored = {guid: row_id for row_id, guid in self._execute(_statement(self.columns, len(rows)), flat)}
        # Two copies of one GUID in a batch: the first gets the id, the second is the duplicate.
        return [stored.pop(r["guid"], None) for r in rows]

    def _execute(self, sql: str, params: list[Any]) -> list[tuple]:
        """Run the statement on the committer's connection; a connection that died while idle (database
        restart) is replaced and the statement tried once more. Errors come out as SQLAlchemy's DBAPIError,
        as engine.connect() would raise them (the webhook answers 503)."""
        try:
            return self._run(sql, params)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._run(sql, params)

    def _run(self, sql: str, params: list[Any]) -> list[tuple]:
        """One try of _execute; a lost connection is dropped, so the next try opens another."""
        from psycopg import RawCursor

        error = self.engine.dialect.loaded_dbapi.Error
        try:
            conn = self._connection()
        except error as exc:  # the database does not answer: as engine.connect() would raise it
            raise DBAPIError.instance(sql, None, exc, error, dialect=self.engine.dialect) from exc  # type: ignore[arg-type]
        try:
            with RawCursor(conn) as cur:  # $1 placeholders, sent as they are
                return cur.execute(sql, params).fetchall()
        except error as exc:
            err = dbapi_error(self.engine.dialect, conn, sql, None, exc)  # no bodies in the error text
            if err.connection_invalidated:
                self._drop()
            raise err from exc

    def _connection(self) -> Any:
        """The leader's connection: one per process, only ever used by the current leader, in autocommit.

        Detached from the pool, so a statement pays no checkout, check-in or autocommit switch (a tenth
        of the web tier's Python time at a thousand deliveries a second, with batches of one or two rows).
        """
        if self._conn is None:
            fairy = self.engine.raw_connection()
            conn = fairy.driver_connection
            fairy.detach()
            conn.autocommit = True  # type: ignore[union-attr]
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        """Forget a dead connection; the next statement opens another."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        except Exception:  # noqa: BLE001 - it is gone either way
            pass


def _outcome(slot: _Slot) -> int | None:
    """The row's id, or the statement's error raised in this request's own thread."""
    if slot.error is not None:
        raise slot.error
    return slot.result


@functools.cache
def _statement(columns: tuple[str, ...], n: int) -> str:
    """The INSERT of n rows as one VALUES list, in PostgreSQL's own $1 placeholders (psycopg's RawCursor).

    psycopg caches its %s conversion only for statements of up to 50 parameters; a batch has more.
    Measured against one unnest() of binary arrays per column: as fast with many rows, twice as cheap
    with one, and batches here are mostly small.
    """
    width = len(columns)
    rows = ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(n))
    return f"INSERT INTO delivery ({', '.join(columns)}) VALUES {rows} ON CONFLICT DO NOTHING RETURNING id, guid"
