"""Engines, sessions and schema upgrades; nothing here runs at import time."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (SQLAlchemy 2.0 defaults to psycopg2)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def make_engine(url: str, **kw: Any) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so several threads and processes can write."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip per checkout on the ingest path. Callers that must survive a
    # database restart retry once on an invalidated connection (workers.inbox.store); jobs are retried anyway.
    kw.setdefault("pool_pre_ping", False)
    if kw.get("poolclass") is None:
        kw.setdefault("pool_size", 5)
        kw.setdefault("max_overflow", 10)
    kw.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kw)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL for concurrent readers, a busy timeout instead of 'database is locked', foreign keys on."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Any:
    """An Alembic Config pointing at the packaged migrations and the given database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema up to date: Alembic migrations are the only way the schema is made."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def pending_migrations(url: str) -> bool:
    """True when the database is behind the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    return current != set(script.get_heads())


def _dialect_insert(conn: Any, model: Any) -> Any:
    """INSERT construct of the connection's dialect (both offer ON CONFLICT)."""
    from sqlalchemy.dialects import postgresql, sqlite

    mod = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
    return mod.insert(model)


@contextmanager
def autocommit(engine: Engine) -> Iterator[Any]:
    """A connection on which each statement is its own transaction, for single reads and single-statement
    writes (which are atomic by themselves): one round trip each, where `engine.begin()` adds a BEGIN
    and a COMMIT, and `engine.connect()` a BEGIN and a ROLLBACK."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@functools.cache
def _ignoring_insert(dialect: str, table: Any, returning: tuple[Any, ...]) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING .., built once per table: the columns come from the
    parameters at execution, and building a statement costs about as much as running a small one."""
    from sqlalchemy.dialects import postgresql, sqlite

    mod = {"postgresql": postgresql, "sqlite": sqlite}[dialect]
    return mod.insert(table).on_conflict_do_nothing().returning(*returning)


def insert_ignore(conn: Any, model: Any, values: dict[str, Any], returning: Any = None) -> Any:
    """Insert unless any unique key already holds the row; returns the `returning` column or None."""
    table = model.__table__
    if returning is None:
        # rowcount is not reliable for INSERT .. ON CONFLICT through every driver; RETURNING is.
        pk = list(table.primary_key.columns)[0]
        return conn.execute(_ignoring_insert(conn.dialect.name, table, (pk,)), values).first() is not None
    return conn.execute(_ignoring_insert(conn.dialect.name, table, (returning,)), values).scalar()


def insert_or_get(conn: Any, model: Any, values: dict[str, Any], *where: Any) -> tuple[Any, bool]:
    """The row inserted now (True), or the one already there that `where` finds (False)."""
    from sqlalchemy import select

    table = model.__table__
    row = conn.execute(_ignoring_insert(conn.dialect.name, table, tuple(table.c)), values).first()
    if row is not None:
        return row, True
    return conn.execute(select(*table.c).where(*where)).one(), False


def upsert(conn: Any, model: Any, values: dict[str, Any], keys: list[str], update: list[str]) -> None:
    """Insert or update the named columns of the row identified by `keys`."""
    stmt = _dialect_insert(conn, model).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt)
