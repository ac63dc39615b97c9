"""Delivery state transitions in the database: claim, finish, retry, sweep.

Every transition is one conditional UPDATE, so concurrent workers and sweepers never both win.
"""

from __future__ import annotations

import functools
import threading
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
def _delivery_insert() -> object:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING id for SQLite (and any non-PostgreSQL dialect), built once."""
    from sqlalchemy.dialects import sqlite

    cols = [c.name for c in Delivery.__table__.columns if c.name != "id"]
    return (sqlite.insert(Delivery).values({c: bindparam(c, type_=Delivery.__table__.c[c].type) for c in cols})
            .on_conflict_do_nothing().returning(Delivery.id))


_DELIVERY_DEFAULTS = {"hook_id": None, "action": None, "installation_id": None, "repository": None, "attempts": 0,
                      "error": None, "note": None, "queued_at": None, "started_at": None, "finished_at": None,
                      "lease_until": None, "next_attempt_at": None}
_COMMITTERS_LOCK = threading.Lock()
# Columns a new delivery never sets (its id comes from the sequence; the rest only from later transitions):
# left out of the INSERT, so each row sends fewer parameters.
_NEVER_NEW = ("id", "error", "started_at", "lease_until", "next_attempt_at")


def store(engine: Engine, values: dict) -> int | None:
    """Store a new delivery, committed when this returns; None when its GUID or body is already stored.

    PostgreSQL: concurrent calls of a process share one multi-row INSERT and one commit
    (workers/groupcommit.py). SQLite: one autocommitted statement (its single writer lock
    serialises writers anyway).
    """
    params = {**_DELIVERY_DEFAULTS, **values}
    if engine.dialect.name == "postgresql":
        return _committer(engine).store(params)
    with autocommit(engine) as conn:
        return conn.execute(_delivery_insert(), params).scalar()  # type: ignore[arg-type]


def _committer(engine: Engine) -> Any:
    """The engine's group committer, made on first use; it lives on the engine, so it goes with it."""
    gc = getattr(engine, "_slipway_group_commit", None)
    if gc is None:
        from workers.groupcommit import GroupCommit

        with _COMMITTERS_LOCK:
            gc = getattr(engine, "_slipway_group_commit", None)
            if gc is None:
                gc = GroupCommit(engine, [c.name for c in Delivery.__table__.columns if c.name not in _NEVER_NEW])
                engine._slipway_group_commit = gc  # type: ignore[attr-defined]
    return gc
