"""Shared column helpers and the metadata naming convention."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Named constraints let Alembic's SQLite batch mode drop and alter them later.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the columns refuse naive values)."""
    return datetime.now(timezone.utc)


def json_field(**kw: Any) -> Any:
    """A JSON column: JSONB on PostgreSQL, JSON text on SQLite."""
    return Field(default=None, sa_column=Column(JSONType, nullable=True), **kw)


def text_field(**kw: Any) -> Any:
    """An unbounded nullable text column."""
    return Field(default=None, sa_column=Column(Text, nullable=True), **kw)


def bigint_field(*, nullable: bool = True, index: bool = False, unique: bool = False, primary_key: bool = False) -> Any:
    """A 64-bit integer column (GitHub ids outgrow 32 bits)."""
    return Field(
        default=None,
        sa_column=Column(BigInteger, nullable=nullable, index=index, unique=unique, primary_key=primary_key,
                         autoincrement=False),
    )


def blob_field() -> Any:
    """Raw bytes (the delivery body)."""
    return Field(sa_column=Column(LargeBinary, nullable=False))
