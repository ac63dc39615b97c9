"""deployment and deployment_status: record every deployment, Slipway's own and other tools', once each."""

from __future__ import annotations

from models.db import transaction
from workers.events import Event, Outcome
from workers.record import parse_time, record_github_deployment, record_status, refresh_deployment
from workers.registry import handles


@handles("deployment", "created")
def on_deployment(event: Event) -> Outcome:
    """Record the deployment (the echo of Slipway's own is matched to it by the key in its payload)."""
    dep = event.payload["deployment"]
    with transaction(event.rt.engine) as conn:
        dep_id = record_github_deployment(conn, event.repository or "", dep, installation_id=event.installation_id,
                                          delivery_guid=event.guid)
        refresh_deployment(conn, dep_id)
    return Outcome("done", f"deployment {dep['id']} recorded as {dep_id}")


@handles("deployment_status", "created")
def on_deployment_status(event: Event) -> Outcome:
    """Record the status (its deployment too, if this status arrived first) and refresh the environment."""
    dep, st = event.payload["deployment"], event.payload["deployment_status"]
    with transaction(event.rt.engine) as conn:
        dep_id = record_github_deployment(conn, event.repository or "", dep, installation_id=event.installation_id,
                                          delivery_guid=event.guid)
        new = record_status(conn, dep_id, state=st["state"], created_at=parse_time(st.get("created_at")),
                            github_status_id=st.get("id"), description=st.get("description"),
                            environment_url=st.get("environment_url") or None,
                            log_url=st.get("log_url") or st.get("target_url") or None,
                            source="github", delivery_guid=event.guid)
    if not new:
        return Outcome("done", f"status {st.get('id')} already recorded")
    if st["state"] in ("failure", "error") and event.rt.settings.github_enabled:
        rolled = _rollback(event, dep_id, st["state"])
        if rolled:
            return Outcome("done", f"status {st['state']} recorded; rollback {rolled}")
    return Outcome("done", f"status {st['state']} of deployment {dep['id']} recorded")


def _rollback(event: Event, dep_id: int, state: str) -> str | None:
    """Automatic rollback (environments with rollback_on_failure)."""
    from workers import gitops, repoconfig
    from workers.events import Ignored
    from workers.handlers.common import default_branch, repo_for

    try:
        repo = repo_for(event)
    except Ignored:
        return None
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    return gitops.maybe_rollback(event.rt, repo, cfg, dep_id, state, event.guid)
