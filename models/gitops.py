"""GitOps state: deploy candidates waiting for their gate, and each repository's configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import bigint_field, json_field, text_field, utcnow

OPEN = ("waiting", "blocked")  # candidates that new check results can still move


class Candidate(SQLModel, table=True):
    """A commit that should go to an environment once its gate passes."""

    __tablename__ = "candidate"
    __table_args__ = (
        Index("ix_candidate_repo_sha_state", "repository", "sha", "state"),
        Index("ix_candidate_repo_env_state", "repository", "environment", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)  # one candidate per (repository, environment, sha, trigger)
    repository: str = Field(max_length=140)
    environment: str = Field(max_length=255)
    kind: str = Field(default="static", max_length=16)  # preview | branch | static
    trigger: str = Field(max_length=32)  # pull_request | push | release | tag | workflow_run | branch | rollback
    sha: str = Field(max_length=40)
    ref: str | None = Field(default=None, max_length=255)
    version: str | None = Field(default=None, max_length=100)
    required_checks: list[str] | None = json_field()
    ordinal: float = 0.0  # GitHub's time of the triggering change: a higher one supersedes a lower one
    state: str = Field(default="waiting", max_length=16)  # waiting | blocked | deployed | superseded | skipped
    reason: str | None = text_field()
    not_before: datetime | None = None  # frozen until then
    environment_url: str | None = Field(default=None, max_length=2048)
    pr_number: int | None = None
    production: bool = False
    installation_id: int | None = bigint_field()
    delivery_guid: str | None = Field(default=None, max_length=100)
    deployment_id: int | None = None
    last_commit_status: str | None = Field(default=None, max_length=300)
    extra: dict[str, Any] | None = json_field()
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RepoConfig(SQLModel, table=True):
    """The cached `.github/slipway.yml` of a repository, with the last good version kept."""

    __tablename__ = "repo_config"

    repository: str = Field(max_length=140, primary_key=True)
    text: str | None = text_field()        # what the file holds now (None: no file)
    good_text: str | None = text_field()   # the last text that parsed (used while `text` is invalid)
    error: str | None = text_field()
    fetched_at: datetime = Field(default_factory=utcnow)
