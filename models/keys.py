"""API keys for the deploy webhook, the read API and the admin API; only hashes are stored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import json_field, utcnow

SCOPES = ("deploy", "read", "admin")


class ApiKey(SQLModel, table=True):
    """A named, scoped, revocable key."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scope: str = Field(default="deploy", max_length=16)
    environments: list[str] | None = json_field()
    rate: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
