"""Pure derivations of a deployment's and an environment's state from their histories.

Order is never assumed: statuses are sorted by GitHub's timestamp, then GitHub's id, then ours, so the
same set of events gives the same result whatever order they arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StatusFact:
    """One recorded status."""

    state: str
    created_at: datetime
    github_id: int | None = None
    local_id: int = 0
    environment_url: str | None = None
    log_url: str | None = None


def order_key(s: StatusFact) -> tuple[datetime, int, int]:
    """GitHub's time first, then GitHub's id (monotonic), then ours."""
    return (s.created_at, s.github_id or 0, s.local_id)


@dataclass(frozen=True)
class DeploymentView:
    """A deployment's state as derived from its statuses."""

    status: str
    status_at: datetime | None
    environment_url: str | None
    log_url: str | None
    deployed_at: datetime | None  # first success


def deployment_view(statuses: list[StatusFact], *, initial: str = "pending") -> DeploymentView:
    """The latest status wins; URLs are the latest ones given; deployed_at is the first success."""
    ordered = sorted(statuses, key=order_key)
    if not ordered:
        return DeploymentView(initial, None, None, None, None)
    last = ordered[-1]
    env_url = next((s.environment_url for s in reversed(ordered) if s.environment_url), None)
    log_url = next((s.log_url for s in reversed(ordered) if s.log_url), None)
    first_success = next((s.created_at for s in ordered if s.state == "success"), None)
    return DeploymentView(last.state, last.created_at, env_url, log_url, first_success)


@dataclass(frozen=True)
class DeploymentFact:
    """What the environment view needs to know about one deployment."""

    id: int
    created_at: datetime
    status: str
    status_at: datetime | None
    sha: str | None = None
    version: str | None = None
    environment_url: str | None = None
    github_id: int | None = None


@dataclass(frozen=True)
class EnvironmentView:
    """What runs in an environment now."""

    state: str  # active | destroyed
    deployment_id: int | None
    status: str | None
    sha: str | None
    version: str | None
    url: str | None
    since: datetime | None


def environment_view(deployments: list[DeploymentFact]) -> EnvironmentView:
    """Current = the deployment that succeeded most recently and is still successful; else the newest one."""
    if not deployments:
        return EnvironmentView("active", None, None, None, None, None, None)
    by_time = sorted(deployments, key=lambda d: (d.created_at, d.github_id or 0, d.id))
    live = [d for d in by_time if d.status == "success"]
    current = max(live, key=lambda d: (d.status_at or d.created_at, d.github_id or 0, d.id)) if live else by_time[-1]
    destroyed = all(d.status == "inactive" for d in deployments)
    since = current.status_at if current.status == "success" else None
    return EnvironmentView("destroyed" if destroyed else "active", current.id, current.status, current.sha,
                           current.version, current.environment_url, since)
