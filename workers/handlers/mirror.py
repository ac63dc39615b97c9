"""slipway.mirror: show a CI-reported deployment in GitHub's deployment UI, next to the others.

The job creates the GitHub deployment once (keyed by the local deployment's key, which travels in its
payload) and posts one GitHub status per recorded status, oldest first, each at most once; run again, it
finds everything already linked and calls GitHub for nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from models import Deployment, DeploymentStatus
from workers.deploy import Planned, ensure_deployment, post_status
from workers.events import Event, Outcome, RetryLater
from workers.history import StatusFact, order_key
from workers.registry import handles
from workers.reports import active_installation, is_production

# GitHub has no "cancelled" deployment state. A cancelled deploy left the previous one running and did
# not fail, so it is shown as inactive (grey) rather than as an error (red), which would count as a failure.
GITHUB_STATES = {"cancelled": "inactive"}
_embedded_lock = threading.Lock()  # embedded mode: one process, so a process lock is enough


def github_state(state: str) -> str:
    """GitHub's deployment status state for one of Slipway's statuses."""
    return GITHUB_STATES.get(state, state)


def github_ref(sha: str | None, ref: str | None) -> tuple[str, str]:
    """(full sha or "", ref) for GitHub: a full sha pins the commit; else the branch, else a short sha."""
    full = sha if sha and len(sha) == 40 else ""
    return full, ref or sha or ""


@handles("slipway.mirror")
def on_mirror(event: Event) -> Outcome:
    """Mirror one stored deployment and its statuses into GitHub."""
    engine = event.rt.engine
    dep_id = int(event.payload["deployment_id"])
    with engine.connect() as conn:
        row = conn.execute(select(Deployment).where(Deployment.id == dep_id)).first()
        installation_id = active_installation(conn, row.repository) if row and row.repository else None
    if row is None:
        return Outcome.ignored(f"deployment {dep_id} no longer exists")
    if row.key is None:  # only GitHub's own deployments lack a key, and they are in GitHub already
        return Outcome.ignored(f"deployment {dep_id} came from GitHub; nothing to mirror")
    if installation_id is None:
        return Outcome.ignored(f"{row.repository or row.service} is not a repository the App is installed on now")
    sha, ref = github_ref(row.sha, row.ref)
    if not ref:
        return Outcome.ignored(f"deployment {dep_id} has no sha or branch to deploy")
    with _one_at_a_time(event, dep_id):
        repo = event.rt.github().repo(installation_id, row.repository)
        _, gh_id, _created = ensure_deployment(engine, repo, _planned(row, sha, ref, event.guid))
        posted = _post_statuses(engine, repo, row, gh_id)
    return Outcome("done", f"deployment {dep_id} mirrored as GitHub deployment {gh_id}; {posted} status(es) posted")


def _planned(row: Any, sha: str, ref: str, guid: str) -> Planned:
    """The GitHub deployment for a stored one; its key is the row's key, so the row is reused."""
    what = row.version or (row.sha or "")[:7] or ref
    description = row.description or f"{row.source} deploy of {what}"
    return Planned(key=row.key, repository=row.repository, environment=row.environment, kind="static", ref=ref,
                   sha=sha, description=description, delivery_guid=guid, version=row.version,
                   production=is_production(row.environment), source=row.source)


def _post_statuses(engine: Any, repo: Any, row: Any, gh_id: int) -> int:
    """Post every status not yet on GitHub, oldest first; returns how many were posted now."""
    posted = 0
    for status in _unmirrored(engine, row.id):
        posted += post_status(engine, repo, row.id, gh_id, github_state(status.state),
                              description=status.description or "", log_url=status.log_url or row.log_url,
                              mirror_of=status.id)
    return posted


def _unmirrored(engine: Any, deployment_id: int) -> list[Any]:
    """The deployment's statuses without a GitHub twin, in history order."""
    with engine.connect() as conn:
        rows = list(conn.execute(select(DeploymentStatus).where(DeploymentStatus.deployment_id == deployment_id,
                                                                DeploymentStatus.github_status_id.is_(None))))
    return sorted(rows, key=lambda r: order_key(StatusFact(r.state, r.created_at, None, r.id)))


@contextlib.contextmanager
def _one_at_a_time(event: Event, deployment_id: int) -> Iterator[None]:
    """Let one worker mirror a deployment at a time, so two jobs never both create it on GitHub."""
    redis = event.rt.redis
    if redis is None:
        with _embedded_lock:
            yield
        return
    lock = redis.lock(f"slipway:mirror:{deployment_id}", timeout=120, blocking_timeout=5)
    if not lock.acquire():
        raise RetryLater(f"deployment {deployment_id} is being mirrored by another worker", after=5)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # the lock may have expired; the work is idempotent anyway
            lock.release()
