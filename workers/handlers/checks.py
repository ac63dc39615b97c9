"""check_suite, check_run, workflow_run and status: re-evaluate the candidates waiting on that commit."""

from __future__ import annotations

from workers import gitops, provisioners, repoconfig
from workers.events import Event, Outcome
from workers.handlers.common import default_branch, get, repo_for
from workers.policy import WorkflowRunFacts, candidate_for_workflow_run
from workers.registry import handles


def _reevaluate(event: Event, sha: str | None) -> Outcome:
    """Decide again for every waiting or blocked candidate of the commit, from GitHub's current checks."""
    if not sha:
        return Outcome.ignored("the payload names no commit")
    repo = repo_for(event)
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    verdicts = gitops.evaluate_open_for_sha(event.rt, repo, cfg, sha, event.guid)
    return Outcome("done", f"{len(verdicts)} candidates for {sha[:7]}: {', '.join(verdicts) or 'none waiting'}")


@handles("check_suite", "completed")
def on_check_suite(event: Event) -> Outcome:
    """A check suite finished."""
    return _reevaluate(event, get(event.payload, "check_suite", "head_sha"))


@handles("check_run", "completed")
def on_check_run(event: Event) -> Outcome:
    """A check run finished."""
    return _reevaluate(event, get(event.payload, "check_run", "head_sha"))


@handles("status")
def on_status(event: Event) -> Outcome:
    """A commit status changed (Slipway's own `slipway/*` statuses are not news to it)."""
    if str(event.payload.get("context", "")).startswith("slipway/"):
        return Outcome.ignored("Slipway's own status")
    return _reevaluate(event, event.payload.get("sha"))


@handles("workflow_run", "requested", "in_progress", "completed")
def on_workflow_run(event: Event) -> Outcome:
    """Follow dispatched deploy workflows; a completed run may deploy (on: workflow_run) and ends waits."""
    run = event.payload["workflow_run"]
    repo = repo_for(event)
    followed = provisioners.follow_workflow_run(event.rt, repo, run, event.guid)
    if event.action != "completed":
        return Outcome("done", f"workflow {run.get('name')} {event.action}; {followed} deployment statuses")
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    head_repo = get(run, "head_repository", "full_name")
    facts = WorkflowRunFacts(str(run.get("name") or ""), run.get("conclusion"), run.get("head_branch"),
                             event=str(run.get("event") or "push"), path=run.get("path"),
                             from_fork=bool(head_repo) and head_repo != event.repository)
    found = candidate_for_workflow_run("completed", facts, default_branch(event), cfg)
    ordinal = gitops.ordinal_of(run.get("updated_at"), run.get("created_at"))
    for cand in found:
        gitops.propose(event.rt, repo, cfg, cand, gitops.Target(
            event.repository or "", run["head_sha"], run.get("head_branch"), ordinal,
            installation_id=event.installation_id, delivery_guid=event.guid))
    rest = _reevaluate(event, run.get("head_sha"))
    return Outcome("done", f"{len(found)} proposed; {followed} deployment statuses; {rest.note}")
