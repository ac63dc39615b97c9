"""Alembic migrations are the only source of the schema, and they agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import models  # noqa: F401
from models.db import alembic_config, make_engine, pending_migrations, upgrade


def diff(url: str) -> list:
    """Differences between the migrated database and the models."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, SQLModel.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_models_and_migrations_agree(backend: str, request: pytest.FixtureRequest) -> None:
    """Autogenerate finds nothing to add after `upgrade head`."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    assert diff(url) == []
    assert not pending_migrations(url)


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path) -> None:
    """The migration chain can be walked down and up again."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'walk.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    assert diff(url) == []


def test_postgres_delivery_body_is_lz4(pg_url: str) -> None:
    """The big column uses lz4 compression on PostgreSQL."""
    from sqlalchemy import text

    engine = make_engine(pg_url)
    with engine.connect() as conn:
        method = conn.execute(text(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'delivery'::regclass AND attname = 'body'"
        )).scalar()
    engine.dispose()
    assert method == "l"
