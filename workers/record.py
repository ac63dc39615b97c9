"""The deployment record: store deployments and statuses from any source, then derive current states.

Each write locks the deployment (and then its environment) row, so concurrent workers recording statuses
of one deployment serialise, and the derived state is always computed from the complete history.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from models import Deployment, DeploymentStatus, Environment
from models.base import utcnow
from models.db import Prepared, run
from workers.history import DeploymentFact, StatusFact, deployment_view, environment_view

SLIPWAY_PAYLOAD = "slipway"  # the key under which Slipway's own data travels in a GitHub deployment payload


def parse_time(value: Any) -> datetime | None:
    """GitHub's ISO 8601 timestamps as aware datetimes."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def slipway_payload(dep: dict[str, Any]) -> dict[str, Any]:
    """Slipway's part of a deployment payload (the payload may be an object or a JSON string)."""
    payload = dep.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    mine = payload.get(SLIPWAY_PAYLOAD) if isinstance(payload, dict) else None
    return mine if isinstance(mine, dict) else {}


def _source(dep: dict[str, Any]) -> str:
    """Who made a GitHub deployment: slipway, github_actions, another App's slug, or github."""
    if slipway_payload(dep).get("key"):
        return "slipway"
    app = dep.get("performed_via_github_app")
    slug = app.get("slug") if isinstance(app, dict) else None
    return (str(slug).replace("-", "_") if slug else "github")[:50]


def record_github_deployment(conn: Connection, repository: str, dep: dict[str, Any], *,
                             installation_id: int | None, delivery_guid: str | None) -> int:
    """Store a GitHub deployment once (matching Slipway's own by its key); returns our id."""
    q = _statements(conn.dialect.name)
    key = slipway_payload(dep).get("key")
    gh_id = int(dep["id"])
    if key:
        row_id = run(conn, q.deployment_by_key, {"b_key": str(key)}).scalar()
        if row_id is not None:
            run(conn, q.set_github_id, {"b_id": row_id, "b_github_deployment_id": gh_id})
            return row_id
    row_id = run(conn, q.deployment_by_github_id, {"b_github_deployment_id": gh_id}).scalar()
    if row_id is not None:
        return row_id
    creator = dep.get("creator") if isinstance(dep.get("creator"), dict) else {}
    values = {
        "repository": repository, "environment": str(dep.get("environment") or "production")[:255],
        "sha": dep.get("sha"), "ref": str(dep.get("ref") or "")[:255] or None, "task": str(dep.get("task") or "deploy")[:64],
        "status": "pending", "source": _source(dep), "description": dep.get("description"),
        "deployer": {"name": creator.get("login"), "id": creator.get("id")} if creator else None,
        "github_deployment_id": gh_id, "key": str(key) if key else None,
        "transient": bool(dep.get("transient_environment")), "production": bool(dep.get("production_environment")),
        "installation_id": installation_id, "delivery_guid": delivery_guid,
        "created_at": parse_time(dep.get("created_at")) or utcnow(), "updated_at": utcnow(),
    }
    new_id = run(conn, q.insert_github_deployment, {f"b_{k}": v for k, v in values.items()}).scalar()
    if new_id is None:  # a concurrent worker stored it first
        new_id = run(conn, q.deployment_by_github_id, {"b_github_deployment_id": gh_id}).scalar()
    ensure_environment(conn, repository, values["environment"], "preview" if values["transient"] else "static")
    return int(new_id)


def record_status(conn: Connection, deployment_id: int, *, state: str, created_at: datetime | None = None,
                  github_status_id: int | None = None, description: str | None = None,
                  environment_url: str | None = None, log_url: str | None = None, source: str = "github",
                  delivery_guid: str | None = None, key: str | None = None) -> bool:
    """Store one status (once per GitHub id or key) and refresh the derived states; True if it was new."""
    q = _statements(conn.dialect.name)
    dep = _lock_for_refresh(conn, deployment_id)
    new = run(conn, q.insert_status, {
        "b_deployment_id": deployment_id, "b_state": state, "b_created_at": created_at or utcnow(),
        "b_github_status_id": github_status_id, "b_description": description, "b_environment_url": environment_url,
        "b_log_url": log_url, "b_source": source, "b_delivery_guid": delivery_guid, "b_key": key,
        "b_recorded_at": utcnow()}).first() is not None
    if new:
        refresh_deployment(conn, deployment_id, locked=dep)
    return new


def lock_deployment(conn: Connection, deployment_id: int) -> Any:
    """Lock the deployment row for this transaction (PostgreSQL; SQLite serialises writers anyway)."""
    return conn.execute(_statements(conn.dialect.name).lock_deployment.stmt, {"b_id": deployment_id}).one()


def _lock_for_refresh(conn: Connection, deployment_id: int) -> Any:
    """Lock the deployment row and read what a refresh needs of it."""
    row = run(conn, _statements(conn.dialect.name).lock_for_refresh, {"b_id": deployment_id}).first()
    if row is None:
        from sqlalchemy.exc import NoResultFound

        raise NoResultFound(f"no deployment {deployment_id}")
    return row


def status_facts(conn: Connection, deployment_id: int) -> list[StatusFact]:
    """Every recorded status of a deployment."""
    rows = run(conn, _statements(conn.dialect.name).statuses, {"b_id": deployment_id}).rows
    return [StatusFact(r.state, r.created_at, r.github_status_id, r.id, r.environment_url, r.log_url) for r in rows]


def refresh_deployment(conn: Connection, deployment_id: int, locked: Any = None) -> None:
    """Recompute the deployment's latest status and URLs, then its environment (`locked`: the row, if locked)."""
    q = _statements(conn.dialect.name)
    dep = locked if locked is not None else _lock_for_refresh(conn, deployment_id)
    view = deployment_view(status_facts(conn, deployment_id))
    run(conn, q.update_deployment, {
        "b_id": deployment_id, "b_status": view.status, "b_status_at": view.status_at,
        "b_deployed_at": view.deployed_at, "b_environment_url": view.environment_url or dep.environment_url,
        "b_log_url": view.log_url or dep.log_url, "b_updated_at": utcnow()})
    refresh_environment(conn, dep.repository or dep.service or "", dep.environment)


def ensure_environment(conn: Connection, repository: str, name: str, kind: str = "static") -> None:
    """Create the environment row if it is new (its kind is kept from the first writer that knew it)."""
    run(conn, _statements(conn.dialect.name).insert_environment,
        {"b_repository": repository, "b_name": name, "b_kind": kind, "b_updated_at": utcnow()})


def refresh_environment(conn: Connection, repository: str, name: str) -> None:
    """Recompute what runs in the environment from the deployments that decide it."""
    q = _statements(conn.dialect.name)
    where = {"b_repository": repository, "b_name": name}
    if run(conn, q.lock_environment, where).first() is None:
        ensure_environment(conn, repository, name)
        run(conn, q.lock_environment, where)
    deciding = q.deciding_by_repository if "/" in repository else q.deciding_by_service
    view = environment_view([DeploymentFact(*r) for r in run(conn, deciding, where).rows])
    run(conn, q.update_environment, {
        **where, "b_state": view.state, "b_deployment_id": view.deployment_id, "b_status": view.status,
        "b_sha": view.sha, "b_version": view.version, "b_url": view.url, "b_since": view.since,
        "b_updated_at": utcnow()})


@dataclass(frozen=True)
class _Statements:
    """The record's statements, built once per process and dialect (models.db.Prepared): each status runs
    most of them, and building a statement costs about as much as running a small one. Parameters are
    named b_<column>."""

    lock_deployment: Prepared
    lock_for_refresh: Prepared
    statuses: Prepared
    update_deployment: Prepared
    lock_environment: Prepared
    deciding_by_repository: Prepared
    deciding_by_service: Prepared
    update_environment: Prepared
    insert_environment: Prepared
    insert_status: Prepared
    deployment_by_key: Prepared
    deployment_by_github_id: Prepared
    set_github_id: Prepared
    insert_github_deployment: Prepared


_GITHUB_DEPLOYMENT_COLUMNS = ("repository", "environment", "sha", "ref", "task", "status", "source", "description",
                              "deployer", "github_deployment_id", "key", "transient", "production",
                              "installation_id", "delivery_guid", "created_at", "updated_at")
_STATUS_COLUMNS = ("deployment_id", "state", "created_at", "github_status_id", "description", "environment_url",
                   "log_url", "source", "delivery_guid", "key", "recorded_at")


def _binds(table: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    """{column: bindparam b_<column> of the column's type}."""
    return {c: bindparam(f"b_{c}", type_=table.c[c].type) for c in columns}


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Build the record's statements (first use in this process); INSERTs differ per dialect (ON CONFLICT)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = {"postgresql": postgresql, "sqlite": sqlite}[dialect].insert
    dt, st, et = Deployment.__table__, DeploymentStatus.__table__, Environment.__table__
    d, s, e = dt.c, st.c, et.c
    env_where = (e.repository == bindparam("b_repository"), e.name == bindparam("b_name"))
    return _Statements(
        lock_deployment=Prepared(select(dt).where(d.id == bindparam("b_id")).with_for_update()),
        # What a refresh reads of the locked row (fewer columns: each one costs the driver a description).
        lock_for_refresh=Prepared(select(d.repository, d.service, d.environment, d.environment_url, d.log_url)
                                  .where(d.id == bindparam("b_id")).with_for_update()),
        statuses=Prepared(select(s.state, s.created_at, s.github_status_id, s.id, s.environment_url, s.log_url)
                          .where(s.deployment_id == bindparam("b_id"))),
        update_deployment=Prepared(update(dt).where(d.id == bindparam("b_id")).values(_binds(dt, (
            "status", "status_at", "deployed_at", "environment_url", "log_url", "updated_at")))),
        lock_environment=Prepared(select(e.id).where(*env_where).with_for_update()),
        deciding_by_repository=Prepared(_deciding(d.repository)),
        deciding_by_service=Prepared(_deciding(d.service)),
        update_environment=Prepared(update(et).where(*env_where).values(_binds(et, (
            "state", "deployment_id", "status", "sha", "version", "url", "since", "updated_at")))),
        insert_environment=Prepared(insert(et).values({**_binds(et, ("repository", "name", "kind", "updated_at")),
                                                       "state": "active"}).on_conflict_do_nothing()),
        insert_status=Prepared(insert(st).values(_binds(st, _STATUS_COLUMNS)).on_conflict_do_nothing()
                               .returning(s.id)),
        deployment_by_key=Prepared(select(d.id).where(d.key == bindparam("b_key"))),
        deployment_by_github_id=Prepared(select(d.id).where(d.github_deployment_id == bindparam(
            "b_github_deployment_id", type_=d.github_deployment_id.type))),
        set_github_id=Prepared(update(dt).where(d.id == bindparam("b_id"), d.github_deployment_id.is_(None))
                               .values(_binds(dt, ("github_deployment_id",)))),
        insert_github_deployment=Prepared(insert(dt).values(_binds(dt, _GITHUB_DEPLOYMENT_COLUMNS))
                                          .on_conflict_do_nothing().returning(d.id)),
    )


def _deciding(target: Any) -> Any:
    """The deployments environment_view needs, not the whole history: the newest one, the most recently
    successful one, and any one that is not inactive (so 'destroyed' is judged right). environment_view
    gives the same answer on these as on all of them, while the cost no longer grows with the history."""
    from sqlalchemy import func, union_all

    d = Deployment.__table__.c
    cols = (d.id, d.created_at, d.status, d.status_at, d.sha, d.version, d.environment_url, d.github_deployment_id)
    gh = func.coalesce(d.github_deployment_id, 0)
    base = select(*cols).where(target == bindparam("b_repository"), d.environment == bindparam("b_name"))
    newest = base.order_by(d.created_at.desc(), gh.desc(), d.id.desc()).limit(1)
    live = (base.where(d.status == "success")
            .order_by(func.coalesce(d.status_at, d.created_at).desc(), gh.desc(), d.id.desc()).limit(1))
    not_inactive = base.where(d.status != "inactive").limit(1)
    return union_all(*(q.subquery().select() for q in (newest, live, not_inactive)))
