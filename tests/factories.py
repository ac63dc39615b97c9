"""Payload factories: the project's own minimal GitHub webhook payloads."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1000)
INSTALLATION_ID = 4242
REPO = "octo-org/hello"


def repository(full_name: str = REPO, repo_id: int | None = None, default_branch: str = "main") -> dict[str, Any]:
    """A repository object with the fields Slipway reads."""
    owner, name = full_name.split("/")
    return {"id": repo_id or next(_ids), "name": name, "full_name": full_name, "private": False,
            "default_branch": default_branch, "owner": {"login": owner, "id": 1, "type": "Organization"}}


def installation_obj(installation_id: int = INSTALLATION_ID, account: str = "octo-org") -> dict[str, Any]:
    """An installation object as App deliveries carry it."""
    return {"id": installation_id, "account": {"login": account, "id": 1, "type": "Organization"},
            "repository_selection": "selected", "app_id": 12345}


def event(action: str | None = None, *, repo: str = REPO, installation_id: int = INSTALLATION_ID,
          **fields: Any) -> dict[str, Any]:
    """A generic repository event with installation and sender."""
    payload: dict[str, Any] = {"repository": repository(repo), "installation": {"id": installation_id},
                               "sender": {"login": "octocat", "id": 1, "type": "User"}}
    if action is not None:
        payload["action"] = action
    payload.update(fields)
    return payload


def ping(zen: str = "Design for failure.") -> dict[str, Any]:
    """A ping delivery."""
    return {"zen": zen, "hook_id": next(_ids), "hook": {"type": "App", "id": 1, "events": ["push"], "app_id": 12345}}


def installation(action: str, installation_id: int = INSTALLATION_ID, repos: list[str] | None = None) -> dict[str, Any]:
    """An installation event."""
    payload: dict[str, Any] = {"action": action, "installation": installation_obj(installation_id),
                               "sender": {"login": "octocat", "id": 1, "type": "User"}}
    if action == "created":
        payload["repositories"] = [{"id": next(_ids), "full_name": r, "name": r.split("/")[1]} for r in repos or [REPO]]
    return payload


def installation_repositories(action: str, repos: list[tuple[int, str]],
                              installation_id: int = INSTALLATION_ID) -> dict[str, Any]:
    """An installation_repositories event adding or removing (id, full_name) pairs."""
    items = [{"id": i, "full_name": n, "name": n.split("/")[1]} for i, n in repos]
    return {"action": action, "installation": installation_obj(installation_id),
            "repositories_added": items if action == "added" else [],
            "repositories_removed": items if action == "removed" else [],
            "repository_selection": "selected", "sender": {"login": "octocat", "id": 1, "type": "User"}}


def deployment_obj(dep_id: int, *, environment: str = "staging", sha: str = "b" * 40, ref: str = "main",
                   payload: Any = None, created_at: str = "2026-01-01T10:00:00Z", transient: bool = False,
                   app_slug: str | None = None) -> dict[str, Any]:
    """A deployment object as deployment and deployment_status events carry it."""
    return {"id": dep_id, "sha": sha, "ref": ref, "task": "deploy", "payload": payload if payload is not None else {},
            "environment": environment, "original_environment": environment, "description": None,
            "creator": {"login": "octocat", "id": 1, "type": "User"}, "created_at": created_at,
            "updated_at": created_at, "transient_environment": transient,
            "production_environment": environment == "production",
            "performed_via_github_app": {"slug": app_slug, "id": 9} if app_slug else None}


def deployment_event(dep: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A deployment.created event."""
    return event("created", deployment=dep, **kw)


def deployment_status_event(dep: dict[str, Any], status_id: int, state: str, created_at: str, *,
                            environment_url: str = "", log_url: str = "") -> dict[str, Any]:
    """A deployment_status.created event."""
    status = {"id": status_id, "state": state, "description": f"{state}!", "environment": dep["environment"],
              "environment_url": environment_url, "log_url": log_url, "target_url": log_url,
              "created_at": created_at, "updated_at": created_at, "creator": {"login": "ci-bot", "id": 2}}
    return event("created", deployment=dep, deployment_status=status)
