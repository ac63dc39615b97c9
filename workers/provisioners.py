"""Who carries a deployment out, per `provisioner.kind`: the GitHub deployment itself, a workflow, or an HTTP hook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from sqlalchemy import update

from models import Candidate as CandidateRow
from slipway.runtime import Runtime
from workers.deploy import post_status
from workers.events import Permanent, RetryLater
from workers.github import Repo
from workers.policy import RepoConfig
from workers.urlsafety import UnsafeURL, check_url

log = logging.getLogger(__name__)


def _kind(cfg: RepoConfig | None) -> str:
    """The configured provisioner kind (deployment when nothing says otherwise)."""
    return cfg.provisioner.kind if cfg is not None else "deployment"


def deploy(rt: Runtime, repo: Repo, cfg: RepoConfig | None, row: Any, dep_id: int, gh_id: int,
           delivery_guid: str | None) -> None:
    """Hand a queued deployment over; `deployment` needs nothing more (the CD system listens to GitHub)."""
    kind = _kind(cfg)
    if kind == "workflow_dispatch":
        _dispatch_once(rt, repo, cfg, row, "deploy", {"deployment_id": str(gh_id)})
    elif kind == "http":
        answer = _post_hook(rt, cfg, _hook_body("deploy", repo.full_name, row.environment, row.sha, row.ref, gh_id,
                                                 f"slipway-candidate-{row.id}", row.environment_url))
        post_status(rt.engine, repo, dep_id, gh_id, "in_progress", description="accepted by the provisioner",
                    delivery_guid=delivery_guid)
        outcome = answer.get("status") if isinstance(answer, dict) else None
        if outcome in ("success", "failure", "error"):
            post_status(rt.engine, repo, dep_id, gh_id, outcome, description=f"provisioner: {outcome}",
                        environment_url=answer.get("environment_url") or row.environment_url,
                        log_url=answer.get("log_url"), delivery_guid=delivery_guid)


def destroy(rt: Runtime, repo: Repo, cfg: RepoConfig | None, environment: str, delivery_guid: str | None) -> None:
    """Tell the provisioner to destroy an environment (the inactive statuses already tell a `deployment` CD)."""
    kind = _kind(cfg)
    if kind == "workflow_dispatch" and cfg is not None:
        repo.dispatch_workflow(cfg.provisioner.workflow or "", repo.default_branch(),
                               {"environment": environment, "ref": "", "sha": "", "action": "destroy"})
    elif kind == "http":
        _post_hook(rt, cfg, _hook_body("destroy", repo.full_name, environment, None, None, None,
                                        f"slipway-destroy-{repo.full_name}-{environment}", None))


def _dispatch_once(rt: Runtime, repo: Repo, cfg: RepoConfig | None, row: Any, action: str,
                   extra: dict[str, str]) -> None:
    """Run the configured workflow once per candidate (remembered on the candidate)."""
    if (row.extra or {}).get("dispatched"):
        return
    inputs = {"environment": row.environment, "ref": row.ref or "", "sha": row.sha, "action": action, **extra}
    repo.dispatch_workflow(cfg.provisioner.workflow or "", row.ref or "main", inputs)  # type: ignore[union-attr]
    with rt.engine.begin() as conn:
        conn.execute(update(CandidateRow).where(CandidateRow.id == row.id).values(
            extra={**(row.extra or {}), "dispatched": True, "workflow": cfg.provisioner.workflow}))  # type: ignore[union-attr]


def _hook_body(action: str, repository: str, environment: str, sha: str | None, ref: str | None,
               deployment_id: int | None, dedup_id: str, environment_url: str | None) -> dict[str, Any]:
    """What the http provisioner receives."""
    return {"action": action, "repository": repository, "environment": environment, "sha": sha, "ref": ref,
            "github_deployment_id": deployment_id, "dedup_id": dedup_id, "environment_url": environment_url}


def sign_standard_webhook(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: v1,base64(HMAC-SHA256(secret, "id.timestamp.body"))."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _post_hook(rt: Runtime, cfg: RepoConfig | None, body: dict[str, Any]) -> Any:
    """POST the signed JSON to the provisioner URL under the SSRF rules; 5xx and timeouts are retried."""
    import httpx

    url = cfg.provisioner.url if cfg is not None else None
    if not url:
        raise Permanent("provisioner kind http needs a url")
    try:
        check_url(url, allow_private=rt.settings.allow_private_urls)
    except UnsafeURL as exc:
        raise Permanent(f"provisioner URL refused: {exc}") from None
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": body["dedup_id"], "webhook-timestamp": str(ts),
               "webhook-signature": sign_standard_webhook(rt.settings.provisioner_secret_bytes, body["dedup_id"], ts, raw)}
    try:
        resp = httpx.post(url, content=raw, headers=headers, timeout=15, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise RetryLater(f"provisioner unreachable: {exc}") from None
    if resp.status_code >= 500 or resp.status_code == 429:
        raise RetryLater(f"provisioner answered {resp.status_code}")
    if resp.status_code >= 300:
        raise Permanent(f"provisioner refused the request: {resp.status_code} {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError:
        return None


def follow_workflow_run(rt: Runtime, repo: Repo, run: dict[str, Any], delivery_guid: str | None) -> int:
    """Mirror a dispatched deploy workflow's progress onto its deployments; returns how many it moved."""
    from sqlalchemy import select

    from models import Deployment

    if run.get("event") != "workflow_dispatch":
        return 0
    path = (run.get("path") or "").split("@", 1)[0].rsplit("/", 1)[-1]
    with rt.engine.connect() as conn:
        rows = list(conn.execute(select(CandidateRow.id, CandidateRow.extra, Deployment.id.label("dep_id"),
                                        Deployment.github_deployment_id, Deployment.status)
                                 .join(Deployment, Deployment.id == CandidateRow.deployment_id)
                                 .where(CandidateRow.repository == repo.full_name,
                                        CandidateRow.sha == run.get("head_sha"), CandidateRow.state == "deployed")))
    moved = 0
    for r in rows:
        if (r.extra or {}).get("workflow") not in (path, run.get("name")) or r.status in ("success", "failure", "error"):
            continue
        final = _run_state(run)
        for state in ("in_progress",) if final == "in_progress" else ("in_progress", final):
            moved += post_status(rt.engine, repo, r.dep_id, r.github_deployment_id, state,
                                 description=f"workflow {run.get('name')}: {state}", log_url=run.get("html_url"),
                                 delivery_guid=delivery_guid)
    return moved


def _run_state(run: dict[str, Any]) -> str:
    """A workflow run's status as a deployment state."""
    if run.get("status") != "completed":
        return "in_progress"
    return {"success": "success", "cancelled": "error", "timed_out": "error"}.get(run.get("conclusion") or "", "failure")
