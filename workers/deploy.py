"""Slipway's own GitHub deployments and statuses, each made at most once.

A deployment carries Slipway's key in its payload; the local row with that key is written before GitHub
is called, and a retry after any crash looks for the key on GitHub before creating another. A status is
posted at most once per (deployment, state); a retry looks for it on GitHub first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from models import Deployment, DeploymentStatus
from models.base import utcnow
from models.db import autocommit, insert_or_get
from workers.github import Repo
from workers.record import SLIPWAY_PAYLOAD, ensure_environment, parse_time, record_status, slipway_payload


TRANSIENT_KINDS = ("preview", "branch")  # environments that are torn down: "destroyed" in GitHub's UI when inactive


@dataclass(frozen=True)
class Planned:
    """A deployment Slipway wants in GitHub."""

    key: str
    repository: str
    environment: str
    kind: str  # preview | branch | static
    ref: str
    sha: str
    description: str
    delivery_guid: str | None = None
    version: str | None = None
    production: bool = False
    environment_url: str | None = None
    task: str = "deploy"
    source: str = "slipway"
    extra: dict[str, Any] | None = None


class Ensured(NamedTuple):
    """A deployment that exists on GitHub: our id, GitHub's id, and whether this call created it there."""

    id: int
    github_id: int
    created: bool


def _local(engine: Engine, p: Planned, installation_id: int | None) -> tuple[Any, bool]:
    """The local row for the key, created if new; True when it was created now."""
    with engine.begin() as conn:
        row, new = insert_or_get(conn, Deployment, {
            "key": p.key, "repository": p.repository, "environment": p.environment, "sha": p.sha, "ref": p.ref,
            "version": p.version, "task": p.task, "status": "pending", "source": p.source,
            "description": p.description, "transient": p.kind in TRANSIENT_KINDS, "production": p.production,
            "environment_url": p.environment_url, "installation_id": installation_id,
            "delivery_guid": p.delivery_guid, "extra": p.extra, "created_at": utcnow(), "updated_at": utcnow()},
            Deployment.key == p.key)
        ensure_environment(conn, p.repository, p.environment, p.kind)
        return row, new


def ensure_deployment(engine: Engine, repo: Repo, p: Planned) -> Ensured:
    """The deployment for `p.key` on GitHub, created there only if it is not there yet."""
    row, new = _local(engine, p, repo.installation_id)
    if row.github_deployment_id:
        return Ensured(row.id, row.github_deployment_id, False)
    # The local row is written before GitHub is called: when it is new, no earlier attempt can have created
    # the deployment, so only a retry has to look for it.
    found = None if new else next((d for d in repo.list_deployments(sha=p.sha, environment=p.environment)
                                   if slipway_payload(d).get("key") == p.key), None)
    created = found is None
    if found is None:
        payload = {SLIPWAY_PAYLOAD: {"key": p.key, "delivery": p.delivery_guid, "version": p.version}}
        found = repo.create_deployment(ref=p.sha or p.ref, environment=p.environment, payload=payload,
                                       description=p.description, transient=p.kind in TRANSIENT_KINDS,
                                       production=p.production, task=p.task)
    with autocommit(engine) as conn:
        conn.execute(update(Deployment).where(Deployment.id == row.id, Deployment.github_deployment_id.is_(None))
                     .values(github_deployment_id=int(found["id"]), created_at=parse_time(found.get("created_at"))
                             or row.created_at, updated_at=utcnow()))
    return Ensured(row.id, int(found["id"]), created)


def post_status(engine: Engine, repo: Repo, deployment_id: int, github_deployment_id: int, state: str, *,
                description: str = "", environment_url: str | None = None, log_url: str | None = None,
                auto_inactive: bool | None = None, delivery_guid: str | None = None,
                mirror_of: int | None = None, new_deployment: bool = False, key: str | None = None) -> bool:
    """Post `state` on the deployment unless Slipway already did; True if posted now.

    `mirror_of` names a status already in the record (reported by a CI through the deploy webhook): the
    GitHub status is then linked to it instead of being recorded a second time. `new_deployment` says this
    job created the GitHub deployment, so it has no statuses on GitHub but the ones recorded here. `key` is
    the deployment's idempotency key when the caller knows it.
    """
    key = f"{key or _key_of(engine, deployment_id)}/{state}"
    existing = None
    if not new_deployment:
        with autocommit(engine) as conn:
            if conn.execute(select(DeploymentStatus.id).where(DeploymentStatus.key == key)).first():
                return False
        existing = next((s for s in repo.list_deployment_statuses(github_deployment_id)
                         if s.get("state") == state and (s.get("description") or "") == description[:140]), None)
    posted = existing or repo.create_deployment_status(
        github_deployment_id, state=state, description=description, environment_url=environment_url,
        log_url=log_url, auto_inactive=auto_inactive)
    if mirror_of is not None:
        _link_status(engine, deployment_id, mirror_of, int(posted["id"]), key)
        return existing is None
    with engine.begin() as conn:
        new = record_status(conn, deployment_id, state=state, created_at=parse_time(posted.get("created_at")),
                            github_status_id=posted.get("id"), description=description[:140] or None,
                            environment_url=environment_url, log_url=log_url, source="slipway",
                            delivery_guid=delivery_guid, key=key)
        if not new:
            # The echo of this status was recorded first (same GitHub id, without our key): give it the key.
            conn.execute(update(DeploymentStatus).where(DeploymentStatus.github_status_id == posted.get("id"),
                                                        DeploymentStatus.key.is_(None)).values(key=key))
    return existing is None


def _link_status(engine: Engine, deployment_id: int, status_id: int, github_status_id: int, key: str) -> None:
    """Give a recorded status its GitHub twin's id; an echo recorded first is the same status, so it goes."""
    from sqlalchemy import delete

    from workers.record import lock_deployment, refresh_deployment

    with engine.begin() as conn:
        lock_deployment(conn, deployment_id)
        conn.execute(delete(DeploymentStatus).where(DeploymentStatus.github_status_id == github_status_id,
                                                    DeploymentStatus.id != status_id))
        conn.execute(update(DeploymentStatus).where(DeploymentStatus.id == status_id)
                     .values(github_status_id=github_status_id, key=key))
        refresh_deployment(conn, deployment_id)


def _key_of(engine: Engine, deployment_id: int) -> str:
    """The idempotency key of a local deployment (its GitHub id stands in for deployments Slipway did not make)."""
    with autocommit(engine) as conn:
        row = conn.execute(select(Deployment.key, Deployment.github_deployment_id)
                           .where(Deployment.id == deployment_id)).one()
    return row.key or f"gh-{row.github_deployment_id}"
