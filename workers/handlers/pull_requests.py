"""pull_request: preview environments, checked against the pull request as GitHub has it now."""

from __future__ import annotations

from typing import Any

from workers import gitops, repoconfig
from workers.events import Event, Outcome
from workers.github import pull
from workers.handlers.common import default_branch, get, record_skip, repo_for
from workers.policy import PullRequestFacts, decide_preview
from workers.registry import handles

ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review", "labeled", "unlabeled", "closed",
           "converted_to_draft")


def facts(pr: dict[str, Any], base_repo: str) -> PullRequestFacts:
    """The preview decision's facts from a pull request object."""
    return PullRequestFacts(
        number=int(pr["number"]), head_sha=get(pr, "head", "sha") or "", head_ref=get(pr, "head", "ref") or "",
        base_repo=base_repo, head_repo=get(pr, "head", "repo", "full_name"), draft=bool(pr.get("draft")),
        labels=tuple(str(label.get("name")) for label in pr.get("labels") or [] if isinstance(label, dict)),
        state=str(pr.get("state") or "open"), merged=bool(pr.get("merged")))


@handles("pull_request", *ACTIONS)
def on_pull_request(event: Event) -> Outcome:
    """Deploy, tear down or skip the preview; a stale event (the head moved on) changes nothing."""
    repo = repo_for(event)
    sent = event.payload["pull_request"]
    current = pull(repo, int(sent["number"])) if event.action != "closed" else None
    if current is not None and current.get("state") == "closed":
        event.action, sent = "closed", current  # a late event after the close: make sure nothing is left
    elif current is not None and get(current, "head", "sha") != get(sent, "head", "sha"):
        return Outcome.ignored(f"stale: the head of #{sent['number']} is now {get(current, 'head', 'sha')}")
    pr = facts(current or sent, event.repository or "")
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    decision = decide_preview(pr, cfg.previews, event.action or "", label=get(event.payload, "label", "name"))
    if decision.verdict == "teardown":
        return Outcome("done", gitops.teardown(event.rt, repo, cfg, decision.environment,
                                               "; ".join(decision.reasons), event.guid))
    if decision.verdict == "skip" or decision.candidate is None:
        record_skip(event, decision.environment, pr.head_sha, decision.reasons)
        return Outcome("done", f"preview skipped: {'; '.join(decision.reasons)}")
    target = gitops.Target(event.repository or "", pr.head_sha, pr.head_ref, gitops.ordinal_of(sent.get("updated_at")),
                           kind="preview", pr_number=pr.number, installation_id=event.installation_id,
                           delivery_guid=event.guid)
    verdict = gitops.propose(event.rt, repo, cfg, decision.candidate, target)
    return Outcome("done", f"preview {decision.environment}: {verdict}")
