"""Slipway's own GitHub deployments and statuses, each made at most once.

A deployment carries Slipway's key in its payload; the local row with that key is written before GitHub
is called, and a retry after any crash looks for the key on GitHub before creating another. A status is
posted at most once per (deployment, state); a retry looks for it on GitHub first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine

from models import Deployment, DeploymentStatus, Environment
from models.base import utcnow
from models.db import Prepared, autocommit, run, transaction
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
    """The local row for the key (id, github_deployment_id, created_at), created if new, and its environment
    row with it; True when it was created now."""
    values = {"b_key": p.key, "b_repository": p.repository, "b_environment": p.environment, "b_sha": p.sha,
              "b_ref": p.ref, "b_version": p.version, "b_task": p.task, "b_source": p.source,
              "b_description": p.description, "b_transient": p.kind in TRANSIENT_KINDS, "b_production": p.production,
              "b_environment_url": p.environment_url, "b_installation_id": installation_id,
              "b_delivery_guid": p.delivery_guid, "b_extra": p.extra, "b_created_at": utcnow(),
              "b_updated_at": utcnow(), "b_kind": p.kind}
    if engine.dialect.name == "postgresql":
        # One statement (atomic by itself) inserts both rows: no BEGIN and COMMIT round trips.
        with autocommit(engine) as conn:
            row = run(conn, _local_statement(), values).first()
            new = row is not None
            if not new:
                row = run(conn, _by_key_statement(), values).first()
        return row, new
    with transaction(engine) as conn:
        row = run(conn, _local_statement_sqlite(), values).first()
        new = row is not None
        if not new:
            row = run(conn, _by_key_statement(), values).first()
        ensure_environment(conn, p.repository, p.environment, p.kind)
        return row, new


_LOCAL_COLUMNS = ("key", "repository", "environment", "sha", "ref", "version", "task", "source", "description",
                  "transient", "production", "environment_url", "installation_id", "delivery_guid", "extra",
                  "created_at", "updated_at")


def _deployment_insert(insert: Any) -> Any:
    """INSERT the planned deployment (status pending) unless its key is there, returning what ensure needs."""
    t = Deployment.__table__
    values = {c: bindparam(f"b_{c}", type_=t.c[c].type) for c in _LOCAL_COLUMNS}
    return (insert(t).values({**values, "status": "pending"}).on_conflict_do_nothing()
            .returning(t.c.id, t.c.github_deployment_id, t.c.created_at))


@functools.cache
def _local_statement() -> Prepared:
    """PostgreSQL: the environment row (a data-modifying CTE) and the deployment row in one statement."""
    from sqlalchemy.dialects.postgresql import insert

    e = Environment.__table__
    env = (insert(e).values(repository=bindparam("b_repository", type_=e.c.repository.type),
                            name=bindparam("b_environment", type_=e.c.name.type),
                            kind=bindparam("b_kind", type_=e.c.kind.type), state="active",
                            updated_at=bindparam("b_updated_at", type_=e.c.updated_at.type))
           .on_conflict_do_nothing().cte("new_environment"))
    return Prepared(_deployment_insert(insert).add_cte(env))


@functools.cache
def _local_statement_sqlite() -> Prepared:
    """SQLite: the deployment row alone (its environment row follows in the same transaction)."""
    from sqlalchemy.dialects.sqlite import insert

    return Prepared(_deployment_insert(insert))


@functools.cache
def _by_key_statement() -> Prepared:
    """The deployment already stored for a key (a retry)."""
    t = Deployment.__table__.c
    return Prepared(select(t.id, t.github_deployment_id, t.created_at).where(t.key == bindparam("b_key")))


@functools.cache
def _github_id_statement() -> Prepared:
    """Note GitHub's id (and time) on the local row, unless an echo or another attempt did first."""
    t = Deployment.__table__.c
    return Prepared(update(Deployment.__table__).where(t.id == bindparam("b_id"), t.github_deployment_id.is_(None))
                    .values(github_deployment_id=bindparam("b_gh", type_=t.github_deployment_id.type),
                            created_at=bindparam("b_created_at", type_=t.created_at.type),
                            updated_at=bindparam("b_updated_at", type_=t.updated_at.type)))


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
        run(conn, _github_id_statement(), {"b_id": row.id, "b_gh": int(found["id"]), "b_updated_at": utcnow(),
                                           "b_created_at": parse_time(found.get("created_at")) or row.created_at})
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
    with transaction(engine) as conn:
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
    t = Deployment.__table__.c
    with autocommit(engine) as conn:
        row = conn.execute(select(t.key, t.github_deployment_id).where(t.id == deployment_id)).one()
    return row.key or f"gh-{row.github_deployment_id}"
