"""models.db's hot-path helpers: prepared statements, one held connection per delivery, transactions on it."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from models import Environment
from models.base import utcnow
from models.db import Prepared, autocommit, held, run, transaction
from slipway.runtime import Runtime


def _insert() -> Prepared:
    """A plain INSERT (no ON CONFLICT), so a duplicate fails."""
    t = Environment.__table__
    return Prepared(t.insert().values(repository=bindparam("b_repository"), name=bindparam("b_name"),
                                      kind="static", state="active", updated_at=bindparam("b_at", type_=t.c.updated_at.type)))


def _names(rt: Runtime) -> list[str]:
    """Environment names stored, in order."""
    t = Environment.__table__.c
    with rt.engine.connect() as conn:
        return list(conn.execute(select(t.name).order_by(t.name)).scalars())


def test_run_returns_named_rows_and_counts(rt: Runtime) -> None:
    """Rows read by attribute and position, rowcount of an UPDATE, in both databases."""
    t = Environment.__table__
    with autocommit(rt.engine) as conn:
        run(conn, _insert(), {"b_repository": "o/r", "b_name": "staging", "b_at": utcnow()})
        got = run(conn, Prepared(select(t.c.repository, t.c.name).where(t.c.name == bindparam("b_name"))),
                  {"b_name": "staging"})
        touched = run(conn, Prepared(t.update().where(t.c.name == bindparam("b_name")).values(sha="abc")),
                      {"b_name": "staging"})
    assert got.first().repository == "o/r" and got.scalar() == "o/r"
    assert touched.rowcount == 1


def test_held_connection_is_shared_and_errors_are_sqlalchemys(rt: Runtime) -> None:
    """Inside held, every autocommit block gets the same connection (PostgreSQL); a failed statement raises
    SQLAlchemy's IntegrityError and the connection stays usable."""
    values = {"b_repository": "o/r", "b_name": "prod", "b_at": utcnow()}
    with held(rt.engine):
        with autocommit(rt.engine) as a, autocommit(rt.engine) as b:
            same = a is b
        with autocommit(rt.engine) as conn:
            run(conn, _insert(), values)
        with pytest.raises(IntegrityError), autocommit(rt.engine) as conn:
            run(conn, _insert(), values)
        with autocommit(rt.engine) as conn:
            run(conn, _insert(), {**values, "b_name": "qa"})
    assert same == (rt.engine.dialect.name == "postgresql")
    assert _names(rt) == ["prod", "qa"]


def test_transaction_on_the_held_connection_commits_or_rolls_back(rt: Runtime) -> None:
    """A block that fails leaves nothing behind; one that ends is committed (seen from another connection)."""
    with held(rt.engine):
        with pytest.raises(IntegrityError), transaction(rt.engine) as conn:
            run(conn, _insert(), {"b_repository": "o/r", "b_name": "a", "b_at": utcnow()})
            run(conn, _insert(), {"b_repository": "o/r", "b_name": "a", "b_at": utcnow()})
        with transaction(rt.engine) as conn:
            run(conn, _insert(), {"b_repository": "o/r", "b_name": "b", "b_at": utcnow()})
            assert _names(rt) == []  # not committed yet: another connection does not see it
        assert _names(rt) == ["b"]


def test_a_failing_first_statement_rolls_back_and_the_connection_goes_on(rt: Runtime) -> None:
    """The first statement carries the transaction's BEGIN (PostgreSQL): when it fails, the block is rolled back
    and the held connection serves the next transaction."""
    with autocommit(rt.engine) as conn:
        run(conn, _insert(), {"b_repository": "o/r", "b_name": "taken", "b_at": utcnow()})
    with held(rt.engine):
        with pytest.raises(IntegrityError), transaction(rt.engine) as conn:
            run(conn, _insert(), {"b_repository": "o/r", "b_name": "taken", "b_at": utcnow()})
        with transaction(rt.engine) as conn:
            run(conn, _insert(), {"b_repository": "o/r", "b_name": "next", "b_at": utcnow()})
        with transaction(rt.engine):
            pass  # nothing sent: no BEGIN, no COMMIT
    assert _names(rt) == ["next", "taken"]
