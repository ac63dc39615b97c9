"""The webhook inbox: every verified GitHub delivery, stored before it is acknowledged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import bigint_field, blob_field, text_field, utcnow

STATES = ("received", "queued", "processing", "done", "ignored", "failed")
TERMINAL = ("done", "ignored", "failed")


class Delivery(SQLModel, table=True):
    """One GitHub webhook delivery and where it is in its life."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_state_next", "state", "next_attempt_at"),
        Index("ix_delivery_received", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    guid: str = Field(max_length=100, unique=True)
    hook_id: str | None = Field(default=None, max_length=40)
    event: str = Field(max_length=64, index=True)
    action: str | None = Field(default=None, max_length=64)
    installation_id: int | None = bigint_field()   # not indexed: no query filters deliveries by it
    repository: str | None = Field(default=None, max_length=140)
    state: str = Field(default="received", max_length=16)
    attempts: int = 0
    error: str | None = text_field()       # the last failure
    note: str | None = text_field()        # how it ended: what was done, or why it was ignored
    received_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: datetime | None = None
    next_attempt_at: datetime | None = None
    body_sha256: str = Field(max_length=64, unique=True)
    body: bytes = blob_field()
