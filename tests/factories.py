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


def sha(n: int | str) -> str:
    """A distinct 40-hex commit id."""
    import hashlib

    return hashlib.sha1(f"commit-{n}".encode()).hexdigest()


def push(ref: str = "refs/heads/main", after: str | None = None, *, pushed_at: int = 1_800_000_000,
         changed: list[str] | None = None, repo: str = REPO) -> dict[str, Any]:
    """A push event."""
    after = after or sha(1)
    payload = event(None, repo=repo, ref=ref, before="0" * 40, after=after, created=False, deleted=False,
                    forced=False, commits=[{"id": after, "added": [], "removed": [], "modified": changed or []}],
                    head_commit={"id": after, "timestamp": "2026-01-01T10:00:00Z"}, pusher={"name": "octocat"})
    payload["repository"]["pushed_at"] = pushed_at
    return payload


def pull_request(action: str, number: int = 7, head_sha: str | None = None, *, head_ref: str = "feature/login",
                 draft: bool = False, labels: list[str] | None = None, fork: bool = False, state: str = "open",
                 merged: bool = False, updated_at: str = "2026-01-01T10:00:00Z", label: str | None = None,
                 repo: str = REPO) -> dict[str, Any]:
    """A pull_request event."""
    head_repo = repository("someone/fork" if fork else repo)
    pr = {"number": number, "state": state, "draft": draft, "merged": merged, "updated_at": updated_at,
          "labels": [{"name": n} for n in labels or []],
          "head": {"sha": head_sha or sha(2), "ref": head_ref, "repo": head_repo},
          "base": {"sha": sha(1), "ref": "main", "repo": repository(repo)}}
    extra: dict[str, Any] = {"number": number, "pull_request": pr}
    if label:
        extra["label"] = {"name": label}
    return event(action, repo=repo, **extra)


def check_run(head_sha: str, name: str = "test", conclusion: str = "success") -> dict[str, Any]:
    """A check_run.completed event."""
    return event("completed", check_run={"id": next(_ids), "name": name, "status": "completed",
                                         "conclusion": conclusion, "head_sha": head_sha,
                                         "app": {"slug": "github-actions"}})


def status(commit_sha: str, context: str, state: str) -> dict[str, Any]:
    """A status event."""
    return event(None, sha=commit_sha, context=context, state=state, id=next(_ids), description="", branches=[])


def ref_event(ref: str, ref_type: str = "branch") -> dict[str, Any]:
    """A create or delete event (short ref names, as GitHub sends them)."""
    return event(None, ref=ref, ref_type=ref_type, master_branch="main", pusher_type="user")


def release(action: str, tag: str = "v1.0.0", *, prerelease: bool = False) -> dict[str, Any]:
    """A release event."""
    return event(action, release={"id": next(_ids), "tag_name": tag, "target_commitish": "main", "name": tag,
                                  "draft": False, "prerelease": prerelease, "published_at": "2026-01-02T10:00:00Z",
                                  "created_at": "2026-01-02T09:00:00Z"})


def workflow_run(action: str, head_sha: str, *, name: str = "Deploy", path: str = ".github/workflows/deploy.yml",
                 status: str = "completed", conclusion: str | None = "success", run_event: str = "workflow_dispatch",
                 run_id: int | None = None, head_branch: str = "main") -> dict[str, Any]:
    """A workflow_run event."""
    run_id = run_id or next(_ids)
    return event(action, workflow_run={
        "id": run_id, "name": name, "path": path, "status": status, "conclusion": conclusion, "head_sha": head_sha,
        "head_branch": head_branch, "event": run_event, "run_attempt": 1,
        "html_url": f"https://github.com/{REPO}/actions/runs/{run_id}", "head_repository": {"full_name": REPO},
        "updated_at": "2026-01-01T10:05:00Z"})


def protection_rule(environment: str, commit_sha: str, run_id: int = 4711) -> dict[str, Any]:
    """A deployment_protection_rule.requested event."""
    return event("requested", environment=environment, event="push", ref="refs/heads/main", sha=commit_sha,
                 deployment_callback_url=f"https://api.github.com/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule")
