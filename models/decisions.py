"""CI-gate decisions with their reasons."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import json_field, utcnow

VERDICTS = ("deploy", "wait", "block", "skip", "superseded")


class Decision(SQLModel, table=True):
    """One decision about deploying a commit to an environment, and why."""

    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_sha", "sha"),)  # DORA: when a commit was first seen

    id: int | None = Field(default=None, primary_key=True)
    repository: str = Field(max_length=140, index=True)
    environment: str = Field(max_length=255)
    sha: str | None = Field(default=None, max_length=40)
    verdict: str = Field(max_length=16)
    reasons: list[str] | None = json_field()
    delivery_guid: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, index=True)
