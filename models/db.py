"""Engines, sessions and schema upgrades; nothing here runs at import time."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

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
    and a COMMIT, and `engine.connect()` a BEGIN and a ROLLBACK. Inside `held`, the held connection."""
    kept = _held_connection(engine)
    if kept is not None:
        yield kept
        return
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


# ---------------------------------------------------------------- the worker's hot path
#
# A push runs about twenty statements. Through SQLAlchemy's execution each costs more Python time than
# PostgreSQL spends on it, so the hot ones are built once (Prepared), compiled once for PostgreSQL and run
# straight on the pooled psycopg connection; SQLite (the embedded mode) runs the same statements through
# SQLAlchemy, whose bind processors it needs. `held` keeps one pooled connection for a whole delivery.

_held = threading.local()
_sql_observers: list[Any] = []  # bench/profile_worker.py counts raw statements here (empty in production)


class Ran(NamedTuple):
    """What a prepared statement gave back: its rows (named tuples or Rows) and the rows it touched."""

    rows: list[Any]
    rowcount: int

    def first(self) -> Any:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


class Prepared:
    """A statement built once; its PostgreSQL text (psycopg placeholders), the values of its literal
    parameters and the names of its JSON parameters are worked out on first use."""

    __slots__ = ("stmt", "_pg")

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._pg: tuple[str, dict[str, Any], tuple[str, ...]] | None = None

    def pg(self) -> tuple[str, dict[str, Any], tuple[str, ...]]:
        """(SQL text, literal parameters, JSON parameter names) for psycopg."""
        if self._pg is None:
            from sqlalchemy import JSON
            from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

            compiled = self.stmt.compile(dialect=pg_psycopg.dialect())
            required = {k for k, b in compiled.binds.items() if b.required}
            literals = {k: v for k, v in compiled.construct_params(dict.fromkeys(required)).items()
                        if k not in required}
            json_names = tuple(k for k, b in compiled.binds.items() if k in required and isinstance(b.type, JSON))
            self._pg = (str(compiled), literals, json_names)
        return self._pg


def run(conn: Any, p: Prepared, params: dict[str, Any] | None = None) -> Ran:
    """Run a prepared statement on a SQLAlchemy connection (in its transaction, if it has one)."""
    if conn.dialect.name != "postgresql":
        res = conn.execute(p.stmt, params or {})
        return Ran(res.all() if res.returns_rows else [], res.rowcount)
    sql, literals, json_names = p.pg()
    args = {**literals, **params} if params else literals
    if json_names:
        from psycopg.types.json import Jsonb

        for name in json_names:
            if args.get(name) is not None:
                args[name] = Jsonb(args[name])
    return _raw(conn, sql, args)


def _raw(conn: Any, sql: str, args: dict[str, Any] | None) -> Ran:
    """Execute on the psycopg connection under `conn`; errors come out as SQLAlchemy's, as conn.execute's do."""
    from psycopg.rows import namedtuple_row

    for observe in _sql_observers:
        observe(sql)
    dbapi = conn.connection.driver_connection
    try:
        cur = dbapi.cursor(row_factory=namedtuple_row)
        if getattr(_held, "begin_pending", False) and conn is _held.conn:
            # The transaction's BEGIN travels with its first statement (psycopg's pipeline): one round trip.
            _held.begin_pending = False
            with dbapi.pipeline():
                dbapi.execute("BEGIN")
                cur.execute(sql, args)
        else:
            cur.execute(sql, args)
        return Ran(cur.fetchall() if cur.description else [], cur.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        err = dbapi_error(conn.dialect, dbapi, sql, args, exc)
        if err.connection_invalidated:
            conn.invalidate(exc)
        raise err from exc


def dbapi_error(dialect: Any, dbapi: Any, sql: str, args: Any, exc: Exception) -> Any:
    """A psycopg error from a statement run straight on its connection, as SQLAlchemy's DBAPIError (what
    conn.execute would raise), marked invalidated when the connection is gone."""
    from sqlalchemy.exc import DBAPIError

    lost = dbapi.broken or dbapi.closed or dialect.is_disconnect(exc, dbapi, None)
    return DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error,  # type: ignore[arg-type]
                               connection_invalidated=lost, dialect=dialect)


def _held_connection(engine: Engine) -> Any:
    """The connection `held` keeps for this thread and engine, if it is usable now."""
    conn = getattr(_held, "conn", None)
    if conn is None or getattr(_held, "engine", None) is not engine or _held.in_tx or conn.invalidated:
        return None
    return conn


@contextmanager
def held(engine: Engine) -> Iterator[None]:
    """Keep one pooled connection (autocommit) for this thread's statements on `engine` until the block ends:
    a checkout per statement costs more than a small statement. PostgreSQL only; nested blocks share it."""
    if engine.dialect.name != "postgresql" or getattr(_held, "conn", None) is not None:
        yield
        return
    with engine.connect() as conn:
        _held.engine, _held.conn, _held.in_tx = engine, conn.execution_options(isolation_level="AUTOCOMMIT"), False
        try:
            yield
        finally:
            _held.engine = _held.conn = None


@contextmanager
def transaction(engine: Engine) -> Iterator[Any]:
    """A connection in a transaction that commits on success: the held one when there is one (BEGIN and
    COMMIT sent on it), else `engine.begin()`."""
    conn = _held_connection(engine)
    if conn is None:
        with engine.begin() as fresh:
            yield fresh
        return
    _held.in_tx, _held.begin_pending = True, True  # BEGIN is sent with the first statement (_raw)
    try:
        try:
            yield conn
        except BaseException:
            if not _held.begin_pending and not conn.invalidated:
                _raw(conn, "ROLLBACK", None)
            raise
        if not _held.begin_pending:
            _raw(conn, "COMMIT", None)
    finally:
        _held.in_tx = _held.begin_pending = False
