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
