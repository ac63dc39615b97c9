"""The read side's queries, shared by the JSON API and the dashboard: engine + filters in, API-shaped dicts out.

Lists are newest first by id and paged by keyset (`id < cursor`): ids only grow, so rows recorded while a
client pages appear on a first page, never inside a later one, and no row is skipped or shown twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from app import dora
from app.pagination import encode_cursor
from models import Candidate, Decision, Deployment, DeploymentStatus, Environment

FAILED_STATES = ("failure", "error")
CHUNK = 500  # values per IN list (SQLite caps bound parameters per statement)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection without a transaction: each answer is one consistent statement, and no BEGIN or ROLLBACK
    costs a round trip to the database."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _page(items: list[dict[str, Any]], ids: list[int], limit: int) -> dict[str, Any]:
    """The list answer from `limit + 1` fetched rows."""
    if len(items) > limit:
        return {"items": items[:limit], "next_cursor": encode_cursor(ids[limit - 1])}
    return {"items": items, "next_cursor": None}


# --------------------------------------------------------------------------- deployments


@dataclass(frozen=True)
class DeploymentFilter:
    """Filters of the deployment list (None = any); times bound created_at, [since, until)."""

    repository: str | None = None
    service: str | None = None
    environment: str | None = None
    status: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[Any]:
        """The SQL conditions."""
        conds = [col == value for col, value in ((Deployment.repository, self.repository),
                                                 (Deployment.service, self.service),
                                                 (Deployment.environment, self.environment),
                                                 (Deployment.status, self.status),
                                                 (Deployment.source, self.source)) if value is not None]
        if self.since is not None:
            conds.append(Deployment.created_at >= self.since)
        if self.until is not None:
            conds.append(Deployment.created_at < self.until)
        return conds


DEPLOYMENT_COLUMNS = (
    Deployment.id, Deployment.repository, Deployment.service, Deployment.environment, Deployment.sha,
    Deployment.ref, Deployment.version, Deployment.task, Deployment.status, Deployment.status_at,
    Deployment.source, Deployment.deployer, Deployment.description, Deployment.environment_url,
    Deployment.log_url, Deployment.github_deployment_id, Deployment.build_id, Deployment.production,
    Deployment.transient, Deployment.created_at, Deployment.deployed_at, Deployment.updated_at,
)


def deployment_json(row: Any) -> dict[str, Any]:
    """A deployment as the API shows it."""
    return {
        "id": row.id, "repository": row.repository, "service": row.service, "environment": row.environment,
        "sha": row.sha, "ref": row.ref, "version": row.version, "task": row.task, "status": row.status,
        "status_at": iso(row.status_at), "source": row.source, "deployer": row.deployer,
        "description": row.description, "environment_url": row.environment_url, "log_url": row.log_url,
        "github_deployment_id": row.github_deployment_id, "build_id": row.build_id,
        "production": bool(row.production), "transient": bool(row.transient), "created_at": iso(row.created_at),
        "deployed_at": iso(row.deployed_at), "updated_at": iso(row.updated_at),
    }


def list_deployments(engine: Engine, f: DeploymentFilter, *, limit: int = 20,
                     after: int | None = None) -> dict[str, Any]:
    """Newest first, `limit` per page, starting after the cursor's id."""
    query = select(*DEPLOYMENT_COLUMNS).where(*f.where()).order_by(Deployment.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Deployment.id < after)
    with reading(engine) as conn:
        rows = list(conn.execute(query))
    return _page([deployment_json(r) for r in rows], [r.id for r in rows], limit)


STATUS_COLUMNS = (
    DeploymentStatus.id, DeploymentStatus.state, DeploymentStatus.description, DeploymentStatus.environment_url,
    DeploymentStatus.log_url, DeploymentStatus.source, DeploymentStatus.github_status_id,
    DeploymentStatus.created_at, DeploymentStatus.recorded_at,
)


def status_json(row: Any) -> dict[str, Any]:
    """One status of a deployment's history."""
    return {"id": row.id, "state": row.state, "description": row.description,
            "environment_url": row.environment_url, "log_url": row.log_url, "source": row.source,
            "github_status_id": row.github_status_id, "created_at": iso(row.created_at),
            "recorded_at": iso(row.recorded_at)}


def get_deployment(engine: Engine, deployment_id: int) -> dict[str, Any] | None:
    """One deployment with its statuses oldest first (GitHub's time, then GitHub's id, then ours); None if unknown."""
    with reading(engine) as conn:  # statuses are only ever added, so two statements need no snapshot
        row = conn.execute(select(*DEPLOYMENT_COLUMNS).where(Deployment.id == deployment_id)).first()
        if row is None:
            return None
        statuses = conn.execute(select(*STATUS_COLUMNS).where(DeploymentStatus.deployment_id == deployment_id)
                                .order_by(DeploymentStatus.created_at,
                                          func.coalesce(DeploymentStatus.github_status_id, 0), DeploymentStatus.id))
        return {**deployment_json(row), "statuses": [status_json(s) for s in statuses]}


# --------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class EnvironmentFilter:
    """Filters of the environment list (None = any); `repository` also matches a service alias."""

    repository: str | None = None
    environment: str | None = None
    kind: str | None = None
    state: str | None = None

    def where(self) -> list[Any]:
        """The SQL conditions."""
        pairs = ((Environment.repository, self.repository), (Environment.name, self.environment),
                 (Environment.kind, self.kind), (Environment.state, self.state))
        return [col == value for col, value in pairs if value is not None]


ENVIRONMENT_COLUMNS = (
    Environment.id, Environment.repository, Environment.name, Environment.kind, Environment.state,
    Environment.deployment_id, Environment.sha, Environment.version, Environment.status, Environment.url,
    Environment.since, Environment.updated_at, Deployment.ref, Deployment.deployer, Deployment.source,
)


def environment_json(row: Any) -> dict[str, Any]:
    """An environment and what runs in it now."""
    owner = row.repository
    return {
        "repository": owner if "/" in owner else None, "service": None if "/" in owner else owner,
        "environment": row.name, "kind": row.kind, "state": row.state, "deployment_id": row.deployment_id,
        "sha": row.sha, "ref": row.ref, "version": row.version, "status": row.status, "url": row.url,
        "since": iso(row.since), "deployer": row.deployer, "source": row.source, "updated_at": iso(row.updated_at),
    }


def list_environments(engine: Engine, f: EnvironmentFilter, *, limit: int = 20,
                      after: int | None = None) -> dict[str, Any]:
    """Every (repository, environment), newest first, with its current deployment's sha, version and deployer."""
    query = (select(*ENVIRONMENT_COLUMNS)
             .join(Deployment, Deployment.id == Environment.deployment_id, isouter=True)
             .where(*f.where()).order_by(Environment.id.desc()).limit(limit + 1))
    if after is not None:
        query = query.where(Environment.id < after)
    with reading(engine) as conn:
        rows = list(conn.execute(query))
    return _page([environment_json(r) for r in rows], [r.id for r in rows], limit)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class DecisionFilter:
    """Filters of the decision list (None = any); a short sha matches as a prefix."""

    repository: str | None = None
    environment: str | None = None
    sha: str | None = None
    verdict: str | None = None

    def where(self) -> list[Any]:
        """The SQL conditions."""
        pairs = ((Decision.repository, self.repository), (Decision.environment, self.environment),
                 (Decision.verdict, self.verdict))
        conds = [col == value for col, value in pairs if value is not None]
        if self.sha is not None:
            conds.append(Decision.sha == self.sha if len(self.sha) == 40 else Decision.sha.startswith(self.sha))
        return conds


DECISION_COLUMNS = (Decision.id, Decision.repository, Decision.environment, Decision.sha, Decision.verdict,
                    Decision.reasons, Decision.delivery_guid, Decision.created_at)


def decision_json(row: Any) -> dict[str, Any]:
    """A CI-gate decision with its reasons."""
    return {"id": row.id, "repository": row.repository, "environment": row.environment, "sha": row.sha,
            "verdict": row.verdict, "reasons": list(row.reasons or []), "delivery": row.delivery_guid,
            "created_at": iso(row.created_at)}


def list_decisions(engine: Engine, f: DecisionFilter, *, limit: int = 20, after: int | None = None) -> dict[str, Any]:
    """Newest first."""
    query = select(*DECISION_COLUMNS).where(*f.where()).order_by(Decision.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Decision.id < after)
    with reading(engine) as conn:
        rows = list(conn.execute(query))
    return _page([decision_json(r) for r in rows], [r.id for r in rows], limit)


# --------------------------------------------------------------------------- DORA


@dataclass(frozen=True)
class DoraFilter:
    """Which deployments DORA looks at (None = all)."""

    repository: str | None = None
    service: str | None = None
    environment: str | None = None

    def where(self) -> list[Any]:
        """The SQL conditions."""
        return DeploymentFilter(self.repository, self.service, self.environment).where()


def dora_metrics(engine: Engine, f: DoraFilter, since: datetime, until: datetime) -> dict[str, Any]:
    """The four keys over [since, until) for the filtered deployments (see docs/dora.md)."""
    with reading(engine) as conn:
        window = _window(conn, f, since, until)
        context = _neighbours(conn, f, since, until)
        earlier, seen = _same_commits(conn, window, since)
        _merge_seen(seen, _commits_seen(conn, {(r.owner, r.sha) for r in window
                                               if r.sha and r.deployed_at and not r.committed_at and "/" in r.owner}))
    return dora.summarize(window + context + earlier, since, until, first_seen=seen)  # window first: it wins


def _live(since: datetime, until: datetime) -> list[Any]:
    """Deployments whose first success is in the period."""
    return [Deployment.deployed_at >= since, Deployment.deployed_at < until]


def _failing(since: datetime, until: datetime) -> Any:
    """Ids of deployments with a failure status in the period (an index-only scan of the status index)."""
    return (select(DeploymentStatus.deployment_id)
            .where(DeploymentStatus.state.in_(FAILED_STATES), DeploymentStatus.created_at >= since,
                   DeploymentStatus.created_at < until))


def _window(conn: Connection, f: DoraFilter, since: datetime, until: datetime) -> list[dora.DeployRow]:
    """The deployments the period counts: those that went live in it, and those with a failure in it."""
    live = _dora_rows(conn, *_live(since, until), *f.where())
    # Ids first, rows second: joining on ids alone reads indexes only, then few rows are fetched.
    ids = [r[0] for r in conn.execute(select(Deployment.id).where(Deployment.id.in_(_failing(since, until)),
                                                                  *f.where()))]
    failed: list[dora.DeployRow] = []
    for i in range(0, len(ids), CHUNK):
        failed += _dora_rows(conn, Deployment.id.in_(ids[i:i + CHUNK]))
    return live + failed


def _dora_columns() -> tuple[Any, ...]:
    """What DORA reads of a deployment: its times, what it deployed and the commit time a CI reported."""
    failed_at = (select(func.min(DeploymentStatus.created_at))
                 .where(DeploymentStatus.deployment_id == Deployment.id, DeploymentStatus.state.in_(FAILED_STATES))
                 .correlate(Deployment).scalar_subquery())
    return (Deployment.id, Deployment.repository, Deployment.service, Deployment.environment, Deployment.sha,
            Deployment.version, Deployment.created_at, Deployment.deployed_at, failed_at.label("failed_at"),
            Deployment.extra[("commit", "date")].as_string().label("commit_date"),
            Deployment.extra[("extra_data", "commit_timestamp")].as_string().label("commit_timestamp"))


def _dora_rows(conn: Connection, *where: Any, context: bool = False) -> list[dora.DeployRow]:
    """Deployments as DORA rows; context rows are not counted, they only tell what came before and after."""
    rows = conn.execute(select(*_dora_columns()).where(*where))
    return [dora.DeployRow(
        id=r.id, owner=r.repository or r.service or "", environment=r.environment, created_at=r.created_at,
        sha=r.sha, version=r.version, deployed_at=r.deployed_at, failed_at=r.failed_at,
        committed_at=_parse_time(r.commit_date) or _parse_time(r.commit_timestamp), counted=not context)
        for r in rows]


def _parse_time(value: Any) -> datetime | None:
    """A reported ISO 8601 time as aware UTC; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _neighbours(conn: Connection, f: DoraFilter, since: datetime, until: datetime) -> list[dora.DeployRow]:
    """Per environment of the period: the last success before it and the first one after it."""
    ids: set[int] = set()
    for owner in (Deployment.repository, Deployment.service):  # one statement each, so each probe uses its index
        envs = _period_environments(f, since, until, owner)
        same = (owner == envs.c.owner, Deployment.environment == envs.c.environment)
        if owner is Deployment.service:
            same += (Deployment.repository.is_(None),)
        before = (select(Deployment.id).where(*same, Deployment.deployed_at < since)
                  .order_by(Deployment.deployed_at.desc()).limit(1).correlate(envs).scalar_subquery())
        after = (select(Deployment.id).where(*same, Deployment.deployed_at >= until)
                 .order_by(Deployment.deployed_at).limit(1).correlate(envs).scalar_subquery())
        for row in conn.execute(select(before, after).select_from(envs)):
            ids.update(i for i in row if i is not None)
    return _by_ids(conn, sorted(ids))


def _period_environments(f: DoraFilter, since: datetime, until: datetime, owner: Any) -> Any:
    """The distinct (owner, environment) of the period's deployments, owned by a repository or by a service."""
    owned = owner.is_not(None) if owner is Deployment.repository else Deployment.repository.is_(None)
    cols = (owner.label("owner"), Deployment.environment.label("environment"))
    live = select(*cols).where(*_live(since, until), *f.where(), owned)
    failed = select(*cols).where(Deployment.id.in_(_failing(since, until)), *f.where(), owned)
    return live.union(failed).subquery("envs")


def _by_ids(conn: Connection, ids: list[int]) -> list[dora.DeployRow]:
    """Context rows by id."""
    rows: list[dora.DeployRow] = []
    for i in range(0, len(ids), CHUNK):
        rows += _dora_rows(conn, Deployment.id.in_(ids[i:i + CHUNK]), context=True)
    return rows


def _same_commits(conn: Connection, window: list[dora.DeployRow],
                  since: datetime) -> tuple[list[dora.DeployRow], dict[tuple[str, str], datetime]]:
    """Where else the period's commits were deployed, grouped: each one's first success per environment before
    the period (a later success there is a redeploy, no new change), and when each commit was first seen."""
    shas = sorted({r.sha for r in window if r.sha and r.deployed_at})  # only successes can be changes
    earlier: list[dora.DeployRow] = []
    seen: dict[tuple[str, str], datetime] = {}
    for i in range(0, len(shas), CHUNK):
        query = (select(Deployment.repository, Deployment.service, Deployment.environment, Deployment.sha,
                        func.min(Deployment.id).label("id"), func.min(Deployment.created_at).label("created"),
                        func.min(Deployment.deployed_at).label("deployed"))
                 .where(Deployment.sha.in_(shas[i:i + CHUNK]))
                 .group_by(Deployment.repository, Deployment.service, Deployment.environment, Deployment.sha))
        for r in conn.execute(query):
            owner = r.repository or r.service or ""
            _merge_seen(seen, {(owner, r.sha): min(t for t in (r.created, r.deployed) if t is not None)})
            if r.deployed is not None and r.deployed < since:
                earlier.append(dora.DeployRow(id=-r.id, owner=owner, environment=r.environment, sha=r.sha,
                                              created_at=r.created, deployed_at=r.deployed, counted=False))
    return earlier, seen


def _merge_seen(into: dict[tuple[str, str], datetime], more: dict[tuple[str, str], datetime]) -> None:
    """Keep the earliest time of each commit."""
    for key, when in more.items():
        into[key] = min(into.get(key, when), when)


def _commits_seen(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """Earliest time a gate decision or a deploy candidate saw each (repository, sha)."""
    seen: dict[tuple[str, str], datetime] = {}
    shas, repos = sorted({sha for _, sha in keys}), sorted({repo for repo, _ in keys})
    for table in (Decision, Candidate):
        for i in range(0, len(shas), CHUNK):
            query = (select(table.repository, table.sha, func.min(table.created_at).label("first"))
                     .where(table.repository.in_(repos[:CHUNK]) if len(repos) <= CHUNK else True,
                            table.sha.in_(shas[i:i + CHUNK]))
                     .group_by(table.repository, table.sha))
            _merge_seen(seen, {(r.repository, r.sha): r.first for r in conn.execute(query)
                               if (r.repository, r.sha) in keys and r.first is not None})
    return seen
