"""Time-driven GitOps work the sweeper starts: candidates whose freeze ended, previews idle past their TTL."""

from __future__ import annotations

from sqlalchemy import select, update

from models import Deployment, Environment, RepoConfig
from models.base import utcnow
from slipway.runtime import Runtime
from workers import gitops, inbox
from workers.policy import merge_config, parse_config, preview_expired
from workers.repoconfig import server_defaults


def start_due_work(rt: Runtime) -> int:
    """Queue re-evaluations and teardowns that are due; returns how many jobs were queued."""
    if not rt.settings.github_enabled:
        return 0
    queued = 0
    for cid, repository, installation_id in gitops.due_frozen(rt):
        inbox.submit_internal(rt.engine, rt.transport, "slipway.evaluate", {
            "candidate_id": cid, "repository": repository, "installation_id": installation_id})
        queued += 1
    for repository, name, installation_id in expired_previews(rt):
        inbox.submit_internal(rt.engine, rt.transport, "slipway.teardown", {
            "environment": name, "repository": repository, "installation_id": installation_id,
            "reason": "idle past its ttl"})
        queued += 1
    return queued


def expired_previews(rt: Runtime) -> list[tuple[str, str, int | None]]:
    """Active previews idle longer than their repository's `previews.ttl`; each is claimed once per TTL."""
    now = utcnow()
    with rt.engine.connect() as conn:
        envs = list(conn.execute(select(Environment.id, Environment.repository, Environment.name,
                                        Environment.updated_at).where(Environment.kind == "preview",
                                                                      Environment.state == "active")))
        texts = dict(conn.execute(select(RepoConfig.repository, RepoConfig.good_text)).all())
    due = []
    for env in envs:
        text = texts.get(env.repository)
        cfg = merge_config(server_defaults(rt), parse_config(text) if text else None)
        if preview_expired(env.updated_at, cfg.previews.ttl, now):
            due.append(env)
    out = []
    for env in due:
        with rt.engine.begin() as conn:
            # Touching updated_at claims it: the next sweep does not queue the same teardown again.
            claimed = conn.execute(update(Environment).where(Environment.id == env.id,
                                                             Environment.updated_at == env.updated_at)
                                   .values(updated_at=now)).rowcount
            inst = conn.execute(select(Deployment.installation_id).where(
                Deployment.repository == env.repository, Deployment.environment == env.name,
                Deployment.installation_id.is_not(None)).order_by(Deployment.id.desc()).limit(1)).scalar()
        if claimed:
            out.append((env.repository, env.name, inst))
    return out
