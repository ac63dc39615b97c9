"""The deployment record: deployments from GitHub and from any CI, their statuses and environments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import bigint_field, json_field, text_field, utcnow


class Deployment(SQLModel, table=True):
    """One deployment of a commit or version to an environment."""

    __tablename__ = "deployment"
    __table_args__ = (
        Index("ix_deployment_env_created", "environment", "created_at"),
        Index("ix_deployment_repo_env_created", "repository", "environment", "created_at"),
        Index("ix_deployment_created", "created_at"),
        # The read API pages newest first by id (keyset), filtered by environment and/or repository.
        Index("ix_deployment_env_id", "environment", "id"),
        Index("ix_deployment_repo_id", "repository", "id"),
        Index("ix_deployment_repo_env_id", "repository", "environment", "id"),
        Index("ix_deployment_svc_id", "service", "id"),
        # DORA: what went live in a period, per environment, and where else a commit was deployed.
        Index("ix_deployment_deployed", "deployed_at"),
        Index("ix_deployment_env_deployed", "environment", "deployed_at"),
        Index("ix_deployment_repo_env_deployed", "repository", "environment", "deployed_at"),
        Index("ix_deployment_svc_env_deployed", "service", "environment", "deployed_at"),
        Index("ix_deployment_sha", "sha"),
    )

    id: int | None = Field(default=None, primary_key=True)
    repository: str | None = Field(default=None, max_length=140)
    service: str | None = Field(default=None, max_length=100)
    environment: str = Field(max_length=255)
    sha: str | None = Field(default=None, max_length=40)
    ref: str | None = Field(default=None, max_length=255)
    version: str | None = Field(default=None, max_length=100)
    task: str = Field(default="deploy", max_length=64)
    status: str = Field(default="pending", max_length=16)
    status_at: datetime | None = None
    source: str = Field(default="github", max_length=50)
    deployer: dict[str, Any] | None = json_field()
    description: str | None = text_field()
    environment_url: str | None = Field(default=None, max_length=2048)
    log_url: str | None = Field(default=None, max_length=2048)
    github_deployment_id: int | None = bigint_field(unique=True)
    key: str | None = Field(default=None, max_length=300, unique=True)  # idempotency key
    build_id: str | None = Field(default=None, max_length=50)
    dedup_id: str | None = Field(default=None, max_length=100)
    transient: bool = False
    production: bool = False
    installation_id: int | None = bigint_field()
    delivery_guid: str | None = Field(default=None, max_length=100)
    extra: dict[str, Any] | None = json_field()
    created_at: datetime = Field(default_factory=utcnow)
    deployed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class DeploymentStatus(SQLModel, table=True):
    """One status of a deployment; the history is ordered by (created_at, github id, id)."""

    __tablename__ = "deployment_status"
    __table_args__ = (
        Index("ix_deployment_status_dep_created", "deployment_id", "created_at"),
        # DORA: which deployments failed in a period, answered from the index alone.
        Index("ix_deployment_status_state_created", "state", "created_at", "deployment_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id")
    state: str = Field(max_length=16)
    description: str | None = text_field()
    environment_url: str | None = Field(default=None, max_length=2048)
    log_url: str | None = Field(default=None, max_length=2048)
    github_status_id: int | None = bigint_field(unique=True)
    key: str | None = Field(default=None, max_length=300, unique=True)
    source: str = Field(default="github", max_length=50)
    created_at: datetime = Field(default_factory=utcnow)
    recorded_at: datetime = Field(default_factory=utcnow)
    delivery_guid: str | None = Field(default=None, max_length=100)


class Environment(SQLModel, table=True):
    """What runs in one environment of one repository (or service) now."""

    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("repository", "name", name="uq_environment_repository_name"),)

    id: int | None = Field(default=None, primary_key=True)
    repository: str = Field(max_length=140)  # owner/name, or a service alias for service-only reports
    name: str = Field(max_length=255)
    kind: str = Field(default="static", max_length=16)  # preview | branch | static
    state: str = Field(default="active", max_length=16)  # active | destroyed
    deployment_id: int | None = None  # the current deployment: the last one that succeeded
    sha: str | None = Field(default=None, max_length=40)
    version: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, max_length=16)
    url: str | None = Field(default=None, max_length=2048)
    since: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
