"""Delivery state transitions in the database: claim, finish, retry, sweep.

Every transition is one conditional UPDATE, so concurrent workers and sweepers never both win.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Engine

from models import Delivery
from models.base import utcnow
from models.db import Prepared, autocommit, run

# Backoff for retryable failures (server errors, timeouts); rate limits use GitHub's own wait.
BACKOFF_SECONDS = (5, 30, 120, 300, 600, 900)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker now owns until the lease ends."""

    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    attempts: int
    body: bytes


@functools.cache
def _claim_statement() -> Prepared:
    """The claim UPDATE, built once: every delivery runs it, and building a statement costs as much as running it."""
    t = Delivery.__table__.c
    now = bindparam("now", type_=t.started_at.type)
    # Equalities rather than IN: a prepared statement's text is compiled once, without expanding parameters.
    due = and_(or_(t.state == "received", t.state == "queued"), or_(t.next_attempt_at.is_(None), t.next_attempt_at <= now))
    crashed = and_(t.state == "processing", t.lease_until < now)
    return Prepared(update(Delivery.__table__).where(t.guid == bindparam("b_guid"), or_(due, crashed))
                    .values(state="processing", attempts=t.attempts + 1, started_at=now,
                            lease_until=bindparam("b_lease_until", type_=t.lease_until.type))
                    .returning(t.id, t.guid, t.event, t.action, t.installation_id, t.repository, t.attempts, t.body))


def claim(engine: Engine, guid: str, lease_seconds: int) -> Claim | None:
    """Take a due delivery (or one whose worker died) for processing; None if another has it or it is done."""
    now = utcnow()
    with autocommit(engine) as conn:
        row = run(conn, _claim_statement(), {"b_guid": guid, "now": now,
                                             "b_lease_until": now + timedelta(seconds=lease_seconds)}).first()
    return Claim(*row) if row else None


@functools.cache
def _finish_statement(failed: bool) -> Prepared:
    """The terminal-state UPDATE, fenced on the attempt, built once (see _claim_statement).

    A failure keeps the note an earlier attempt left; its reason goes to `error`.
    """
    t = Delivery.__table__.c
    values = {"state": bindparam("b_state"), "finished_at": bindparam("b_finished_at", type_=t.finished_at.type),
              "lease_until": None, "next_attempt_at": None, "error": bindparam("b_error")}
    if not failed:
        values["note"] = bindparam("b_note")
    return Prepared(update(Delivery.__table__)
                    .where(t.id == bindparam("cid"), t.state == "processing", t.attempts == bindparam("cattempts"))
                    .values(**values))


def finish(engine: Engine, c: Claim, state: str, note: str | None = None) -> bool:
    """Record a terminal state; fenced on the attempt so a stale worker cannot overwrite a newer one."""
    failed = state == "failed"
    params = {"cid": c.id, "cattempts": c.attempts, "b_state": state, "b_finished_at": utcnow(),
              "b_error": note if failed else None, "b_note": note}
    with autocommit(engine) as conn:
        return run(conn, _finish_statement(failed), params).rowcount == 1


def retry_later(engine: Engine, c: Claim, after: float | None, error: str, max_attempts: int) -> str:
    """Schedule another attempt (the sweeper queues it when due), or fail once attempts are spent."""
    if c.attempts >= max_attempts:
        finish(engine, c, "failed", f"gave up after {c.attempts} attempts: {error}")
        return "failed"
    wait = after if after is not None else BACKOFF_SECONDS[min(c.attempts - 1, len(BACKOFF_SECONDS) - 1)]
    with autocommit(engine) as conn:  # one fenced UPDATE: atomic by itself
        run(conn, _retry_statement(), {"cid": c.id, "cattempts": c.attempts, "b_error": error,
                                       "b_next": utcnow() + timedelta(seconds=max(wait, 0))})
    return "queued"


@functools.cache
def _retry_statement() -> Prepared:
    """The fenced UPDATE that puts a delivery back for a later attempt, built once (see _claim_statement)."""
    t = Delivery.__table__.c
    return Prepared(update(Delivery.__table__)
                    .where(t.id == bindparam("cid"), t.state == "processing", t.attempts == bindparam("cattempts"))
                    .values(state="queued", queued_at=None, lease_until=None, error=bindparam("b_error"),
                            next_attempt_at=bindparam("b_next", type_=t.next_attempt_at.type)))


def mark_queued(engine: Engine, guids: list[str]) -> None:
    """Note that these deliveries were handed to the transport just now."""
    if not guids:
        return
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.guid.in_(guids), Delivery.state == "received")
                     .values(state="queued", queued_at=utcnow()))


def mark_unqueued(engine: Engine, guids: list[str]) -> None:
    """The transport refused them: leave them for the sweeper."""
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.guid.in_(guids), Delivery.state == "queued")
                     .values(state="received", queued_at=None))


def stranded(now: datetime, requeue_after: int) -> list:
    """Conditions for deliveries that need (re)queueing: never queued, lost in the queue, or whose worker died."""
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    lost = or_(Delivery.queued_at.is_(None), Delivery.queued_at < now - timedelta(seconds=requeue_after))
    return [or_(and_(Delivery.state.in_(("received", "queued")), due, lost),
                and_(Delivery.state == "processing", Delivery.lease_until < now))]


def take_stranded(engine: Engine, requeue_after: int, limit: int = 500) -> list[str]:
    """Mark up to `limit` stranded deliveries as queued now and return their GUIDs."""
    now = utcnow()
    conds = stranded(now, requeue_after)
    ids = select(Delivery.id).where(*conds).order_by(Delivery.id).limit(limit)
    # The conditions are repeated on the UPDATE so that a concurrent sweeper re-checks them under the row lock.
    stmt = (update(Delivery).where(Delivery.id.in_(ids.scalar_subquery()), *conds)
            .values(state="queued", queued_at=now).returning(Delivery.guid))
    with engine.begin() as conn:
        return [r[0] for r in conn.execute(stmt)]


def fail_exhausted(engine: Engine, max_attempts: int) -> int:
    """Crashed deliveries that have used every attempt end as failed instead of looping forever."""
    now = utcnow()
    stmt = (update(Delivery)
            .where(Delivery.state == "processing", Delivery.lease_until < now, Delivery.attempts >= max_attempts)
            .values(state="failed", finished_at=now, lease_until=None,
                    error=f"worker lost the job {max_attempts} times (crash or timeout)"))
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


def requeue(engine: Engine, guid: str) -> bool:
    """Put a finished delivery back in line (replay and same-GUID redelivery of a failed one)."""
    stmt = (update(Delivery).where(Delivery.guid == guid, Delivery.state.in_(("done", "ignored", "failed")))
            .values(state="queued", queued_at=utcnow(), next_attempt_at=None, finished_at=None, attempts=0))
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def submit_internal(engine: Engine, transport: object, event: str, payload: dict) -> str:
    """Store and queue a job of Slipway's own (e.g. mirroring a CI deploy into GitHub) as a delivery.

    Internal events are named `slipway.<what>`; the dot keeps them out of reach of the GitHub endpoint,
    whose event names are [a-z_]. They get the same durability, retries, sweeper and inbox view.
    """
    import hashlib
    import json
    import uuid

    from models.db import insert_ignore

    guid = f"slipway-{uuid.uuid4()}"
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    now = utcnow()
    with engine.begin() as conn:
        insert_ignore(conn, Delivery, {
            "guid": guid, "event": event, "action": payload.get("action"), "repository": payload.get("repository"),
            "installation_id": payload.get("installation_id"), "state": "queued", "received_at": now,
            "queued_at": now, "body_sha256": hashlib.sha256(guid.encode() + body).hexdigest(), "body": body})
    try:
        transport.enqueue([guid])  # type: ignore[attr-defined]
    except Exception:
        mark_unqueued(engine, [guid])  # the sweeper queues it
    return guid


@functools.cache
def _delivery_insert(dialect: str) -> object:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING id, built once per dialect (hot path).

    PostgreSQL gets the SQL text with psycopg's `%(name)s` placeholders, run straight on the DBAPI
    connection; other dialects (SQLite) get the SQLAlchemy statement with bound parameters.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    mod = {"postgresql": postgresql, "sqlite": sqlite}[dialect]
    cols = [c.name for c in Delivery.__table__.columns if c.name != "id"]
    stmt = (mod.insert(Delivery).values({c: bindparam(c, type_=Delivery.__table__.c[c].type) for c in cols})
            .on_conflict_do_nothing().returning(Delivery.id))
    if dialect == "postgresql":
        # Every column is a plain str/int/datetime/bytes that psycopg adapts itself: no bind processors.
        return str(stmt.compile(dialect=postgresql.psycopg.dialect()))
    return stmt


_DELIVERY_DEFAULTS = {"hook_id": None, "action": None, "installation_id": None, "repository": None, "attempts": 0,
                      "error": None, "note": None, "queued_at": None, "started_at": None, "finished_at": None,
                      "lease_until": None, "next_attempt_at": None}


def store(engine: Engine, values: dict) -> int | None:
    """Store a new delivery in one autocommitted statement; None when its GUID or body is already stored."""
    from sqlalchemy.exc import DBAPIError

    params = {**_DELIVERY_DEFAULTS, **values}
    run = _insert_psycopg if engine.dialect.name == "postgresql" else _insert_sqlalchemy
    for attempt in (1, 2):
        try:
            return run(engine, params)
        except DBAPIError as exc:
            # Pooled connections are not pinged first (a round trip per request); a connection that died
            # while idle (database restart) is invalidated and the statement tried once more.
            if attempt == 2 or not exc.connection_invalidated:
                raise
    return None


def _insert_sqlalchemy(engine: Engine, params: dict) -> int | None:
    """The INSERT through SQLAlchemy's execution (SQLite: its bind processors store the datetimes)."""
    with autocommit(engine) as conn:
        return conn.execute(_delivery_insert(conn.dialect.name), params).scalar()  # type: ignore[arg-type]


def _insert_psycopg(engine: Engine, params: dict) -> int | None:
    """The INSERT straight on the pooled psycopg connection in autocommit: one round trip, no SQLAlchemy
    execution context (the profile's largest Python cost per delivery after the server itself)."""
    from sqlalchemy.exc import DBAPIError

    sql = _delivery_insert("postgresql")
    error = engine.dialect.loaded_dbapi.Error
    try:
        fairy = engine.raw_connection()
    except error as exc:  # as engine.connect() would raise it: the webhook answers 503
        raise DBAPIError.instance(sql, None, exc, error, dialect=engine.dialect) from exc  # type: ignore[arg-type]
    dbapi = fairy.driver_connection
    try:
        dbapi.autocommit = True
        row = dbapi.execute(sql, params).fetchone()  # type: ignore[union-attr]
    except Exception as exc:
        lost = dbapi is None or dbapi.broken or dbapi.closed or engine.dialect.is_disconnect(exc, dbapi, None)
        if lost:
            fairy.invalidate(exc)
        else:
            _give_back(fairy, dbapi)
        if isinstance(exc, error):
            raise DBAPIError.instance(sql, None, exc, error, connection_invalidated=lost,  # type: ignore[arg-type]
                                      dialect=engine.dialect) from exc
        raise
    _give_back(fairy, dbapi)
    return row[0] if row else None


def _give_back(fairy: object, dbapi: object) -> None:
    """Return the connection to the pool as SQLAlchemy expects it: not in autocommit."""
    try:
        dbapi.autocommit = False  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - a connection that cannot be reset is not reused
        fairy.invalidate(exc)  # type: ignore[attr-defined]
        return
    fairy.close()  # type: ignore[attr-defined]
