"""Deploy decisions: which environments an event concerns, and whether to deploy now.

Handlers turn an event into candidates (`candidate_for_*`, `decide_preview`,
`branch_environment_for`), evaluate the CI gate for the candidate's commit (`gate.evaluate_gate`
with `candidate.required_checks`), compute `freeze.freeze_until(candidate.freeze, now)`, and let
`decide_candidate` give the verdict that they store and apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from workers.policy.config import EnvironmentConfig, PreviewConfig, RepoConfig, parse_duration
from workers.policy.freeze import FreezeWindow
from workers.policy.gate import STATUS_DESCRIPTION_MAX, GateResult, commit_status_for
from workers.policy.templates import render_template, render_url
from workers.policy.text import branch_name, glob_match, shorten

Trigger = Literal["push", "release", "tag", "workflow_run", "branch", "preview"]
PROTECTION_COMMENT_MAX = 1024
# Actions that may (re)deploy a preview, and those that may take it away.
PREVIEW_DEPLOY_ACTIONS = frozenset({"opened", "reopened", "synchronize", "ready_for_review", "labeled"})
PREVIEW_TEARDOWN_ACTIONS = frozenset({"unlabeled", "converted_to_draft"})
# Workflow runs for pull requests test the PR's code, not the branch that an environment follows.
_PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})


# ---- facts and results ------------------------------------------------------------------------


@dataclass(frozen=True)
class PullRequestFacts:
    """What a preview decision needs to know about a pull request."""

    number: int
    head_sha: str
    head_ref: str
    base_repo: str
    head_repo: str | None  # None when the fork was deleted
    draft: bool = False
    labels: tuple[str, ...] = ()
    state: str = "open"
    merged: bool = False

    @property
    def from_fork(self) -> bool:
        """Tell whether the head lives outside the base repository (a deleted fork counts)."""
        return self.head_repo is None or self.head_repo.casefold() != self.base_repo.casefold()


@dataclass(frozen=True)
class ReleaseFacts:
    """What a release decision needs to know about a release."""

    tag_name: str
    prerelease: bool = False
    draft: bool = False


@dataclass(frozen=True)
class WorkflowRunFacts:
    """What a workflow_run decision needs to know about the run."""

    name: str
    conclusion: str | None
    head_branch: str | None
    event: str = "push"
    path: str | None = None  # e.g. ".github/workflows/build.yml"
    from_fork: bool = False


@dataclass(frozen=True)
class Candidate:
    """An environment that a commit may be deployed to, with the gate settings that apply.

    It unpacks as `(environment, reason)`.
    """

    environment: str
    reason: str
    trigger: Trigger
    required_checks: tuple[str, ...] = ()
    freeze: tuple[FreezeWindow, ...] = ()
    rollback_on_failure: bool = False
    transient: bool = False
    url: str | None = None

    def __iter__(self) -> Iterator[str]:
        """Yield environment and reason, for `for environment, reason in candidates`."""
        return iter((self.environment, self.reason))


@dataclass(frozen=True)
class PreviewDecision:
    """What to do with a pull request's preview environment."""

    verdict: Literal["deploy", "teardown", "skip"]
    environment: str
    reasons: list[str]
    url: str | None = None
    candidate: Candidate | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict on one candidate; `not_before` is when a frozen candidate may go."""

    verdict: Literal["deploy", "wait", "block", "skip", "superseded"]
    reasons: list[str]
    not_before: datetime | None = None
    gate: GateResult | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DeploymentRecord:
    """One past deployment of an environment; `succeeded` = it reached `success` at some point."""

    id: int
    sha: str
    succeeded: bool


# ---- previews ---------------------------------------------------------------------------------


def decide_preview(
    pr: PullRequestFacts, cfg: PreviewConfig, action: str, *, label: str | None = None
) -> PreviewDecision:
    """Decide deploy, teardown or skip for a pull_request event; `label` is the event's label."""
    environment = render_template(cfg.environment, **_template_facts(pr))
    if action == "closed":
        return PreviewDecision("teardown", environment, ["pull request merged" if pr.merged else "pull request closed"])
    if action not in PREVIEW_DEPLOY_ACTIONS | PREVIEW_TEARDOWN_ACTIONS:
        return PreviewDecision("skip", environment, [f"action {action} does not change previews"])
    if not cfg.enabled:
        return PreviewDecision("skip", environment, ["previews are disabled"])
    blocker = _preview_blocker(pr, cfg)
    if action in PREVIEW_TEARDOWN_ACTIONS:
        if blocker:
            return PreviewDecision("teardown", environment, [blocker])
        return PreviewDecision("skip", environment, [f"still gets a preview after {action}"])
    if blocker:
        return PreviewDecision("skip", environment, [blocker])
    if action == "labeled" and label is not None and not _is_preview_label(label, cfg):
        return PreviewDecision("skip", environment, [f"label {label} does not change the preview"])
    return _deploy_preview(pr, cfg, action, environment)


def _preview_blocker(pr: PullRequestFacts, cfg: PreviewConfig) -> str | None:
    """Return why this pull request gets no preview, or None when it gets one."""
    if pr.state != "open":
        return "pull request is not open"
    if pr.from_fork and not cfg.forks:
        return f"pull request from a fork ({pr.head_repo or 'deleted'}); previews.forks is off"
    if pr.draft and not cfg.drafts:
        return "draft pull request; previews.drafts is off"
    if cfg.labels and not any(_is_preview_label(label, cfg) for label in pr.labels):
        return f"no preview label (needs one of: {', '.join(cfg.labels)})"
    return None


def _is_preview_label(label: str, cfg: PreviewConfig) -> bool:
    """Tell whether a label is one of the configured preview labels (case-insensitive)."""
    return label.casefold() in {name.casefold() for name in cfg.labels}


def _template_facts(pr: PullRequestFacts) -> dict[str, Any]:
    """Return the template placeholders' values for a pull request."""
    return {"number": pr.number, "branch": pr.head_ref, "sha": pr.head_sha, "repo": pr.base_repo}


def _deploy_preview(pr: PullRequestFacts, cfg: PreviewConfig, action: str, environment: str) -> PreviewDecision:
    """Build the deploy decision with its candidate."""
    url = render_url(cfg.url, **_template_facts(pr)) if cfg.url else None
    reason = f"pull request #{pr.number} {action}"
    candidate = Candidate(environment, reason, "preview", cfg.required_checks, transient=True, url=url)
    return PreviewDecision("deploy", environment, [reason], url=url, candidate=candidate)


def preview_expired(last_activity: datetime, ttl: timedelta | str | None, now: datetime) -> bool:
    """Tell whether a preview idle since `last_activity` outlived its TTL (None = never)."""
    if ttl is None:
        return False
    return now - last_activity > parse_duration(ttl)


# ---- candidates from events -------------------------------------------------------------------


def candidate_for_push(ref: str, default_branch: str, cfg: RepoConfig, *, repo: str | None = None) -> list[Candidate]:
    """Return the environments that follow the pushed branch (call it only for non-deleting pushes).

    Branch environments (`branches:`) follow pushes to their branch too.
    """
    if ref.startswith("refs/") and not ref.startswith("refs/heads/"):
        return []  # tags come through candidate_for_tag (create event); other refs deploy nothing
    branch = branch_name(ref)
    found = [
        _from_environment(name, env, "push", f"push to {branch}")
        for name, env in cfg.environments.items()
        if env.on == "push" and glob_match(env.branch or default_branch, branch)
    ]
    branch_env = branch_environment_for(branch, "branch", cfg, repo=repo)
    return found + ([branch_env] if branch_env else [])


def candidate_for_release(action: str, release: ReleaseFacts, cfg: RepoConfig) -> list[Candidate]:
    """Return the environments that a release event deploys to.

    GitHub sends `released` when a full release is published or a pre-release becomes a
    release, and `published` for every publication; so full releases are taken from `released`
    and pre-releases from `published`, and nothing deploys twice.
    """
    if release.draft:
        return []
    if action == "released" and not release.prerelease:
        kind = "release"
    elif action == "published" and release.prerelease:
        kind = "prerelease"
    else:
        return []
    return [
        _from_environment(name, env, "release", f"{kind} {release.tag_name} {action}")
        for name, env in cfg.environments.items()
        if env.on == "release"
        and (env.prereleases or kind == "release")
        and glob_match(env.tags or "*", release.tag_name)
    ]


def candidate_for_tag(ref: str, cfg: RepoConfig) -> list[Candidate]:
    """Return the environments that a created tag (short name or refs/tags/x) deploys to."""
    tag = ref.removeprefix("refs/tags/")
    return [
        _from_environment(name, env, "tag", f"tag {tag} created")
        for name, env in cfg.environments.items()
        if env.on == "tag" and glob_match(env.tags or "*", tag)
    ]


def candidate_for_workflow_run(
    action: str, run: WorkflowRunFacts, default_branch: str, cfg: RepoConfig
) -> list[Candidate]:
    """Return the environments that a successfully completed workflow run deploys to.

    Runs for pull requests and runs from forks deploy nothing: a fork's `main` is not ours.
    """
    if action != "completed" or (run.conclusion or "").lower() != "success":
        return []
    if run.from_fork or run.event in _PULL_REQUEST_EVENTS or not run.head_branch:
        return []
    return [
        _from_environment(name, env, "workflow_run", f"workflow {run.name} succeeded on {run.head_branch}")
        for name, env in cfg.environments.items()
        if env.on == "workflow_run"
        and _is_workflow(env.workflow or "", run)
        and glob_match(env.branch or default_branch, run.head_branch)
    ]


def branch_environment_for(ref: str, ref_type: str, cfg: RepoConfig, *, repo: str | None = None) -> Candidate | None:
    """Return the branch environment of a created or deleted branch (first matching pattern)."""
    if ref_type != "branch":
        return None
    branch = branch_name(ref)
    for entry in cfg.branches:
        if glob_match(entry.pattern, branch):
            environment = render_template(entry.environment, branch=branch, repo=repo)
            reason = f"branch {branch} matches {entry.pattern}"
            return Candidate(environment, reason, "branch", entry.required_checks, transient=True)
    return None


def _from_environment(name: str, env: EnvironmentConfig, trigger: Trigger, reason: str) -> Candidate:
    """Build a candidate for a configured environment."""
    return Candidate(name, reason, trigger, env.required_checks, env.freeze, env.rollback_on_failure)


def _is_workflow(wanted: str, run: WorkflowRunFacts) -> bool:
    """Match a configured workflow against the run's name or its file name."""
    file_name = (run.path or "").split("@", 1)[0].rsplit("/", 1)[-1]
    return wanted.casefold() in {run.name.casefold(), file_name.casefold()}


# ---- verdicts ---------------------------------------------------------------------------------


def decide_candidate(
    candidate: Candidate,
    gate: GateResult,
    *,
    newer_candidate_exists: bool,
    freeze_until: datetime | None,
    now: datetime,
    already_deployed: bool = False,
) -> Decision:
    """Give the verdict on a candidate: superseded, skip, block, wait (gate or freeze) or deploy.

    A newer candidate for the same environment wins over everything, so an old commit is never
    deployed over a newer one; a failed check blocks even during a freeze.
    """
    environment = candidate.environment
    if newer_candidate_exists:
        return Decision("superseded", [f"superseded: a newer commit is the candidate for {environment}"], gate=gate)
    if already_deployed:
        return Decision("skip", [f"skipped: already deployed to {environment}"], gate=gate)
    if gate.verdict == "block":
        return Decision("block", list(gate.reasons), gate=gate)
    reasons = list(gate.reasons) if gate.verdict == "wait" else []
    frozen = freeze_until is not None and freeze_until > now
    if frozen:
        reasons.append(f"frozen until {_when(freeze_until)}")
    if reasons:
        return Decision("wait", reasons, not_before=freeze_until if frozen else None, gate=gate)
    return Decision("deploy", [candidate.reason, *gate.reasons], gate=gate)


def commit_status_for_decision(decision: Decision, environment: str, *, sha: str | None = None) -> tuple[str, str]:
    """Return (state, description) of the `slipway/<environment>` status for a decision."""
    gate_speaks = decision.gate is not None and decision.not_before is None and decision.verdict in ("wait", "block")
    if decision.verdict == "deploy" or gate_speaks:
        return commit_status_for(decision.gate or GateResult("deploy", []), environment, sha=sha)
    # A superseded or skipped commit is not at fault, so its status is not red.
    state = {"wait": "pending", "block": "failure"}.get(decision.verdict, "success")
    return state, shorten("; ".join(decision.reasons), STATUS_DESCRIPTION_MAX)


def decide_rollback(
    failed_status_state: str,
    cfg_env: EnvironmentConfig,
    history: Sequence[DeploymentRecord],
    *,
    failed_id: int,
    failed_sha: str,
    failed_was_rollback: bool = False,
) -> str | None:
    """Return the sha to redeploy after a failed deployment, or None.

    The target is the newest earlier deployment that succeeded with another commit. There is
    none when rollback is off, the state is not failure/error, a newer deployment already
    replaced the failed one, or the failed deployment was itself a rollback (no cascades).
    """
    if failed_status_state not in ("failure", "error") or not cfg_env.rollback_on_failure or failed_was_rollback:
        return None
    if any(record.id > failed_id for record in history):
        return None
    good = [r for r in history if r.succeeded and r.id < failed_id and r.sha != failed_sha]
    return max(good, key=lambda r: r.id).sha if good else None


def decide_protection_rule(gate: GateResult | None, *, error: str | None = None) -> tuple[str, str]:
    """Return ("approved" | "rejected", comment) for a deployment protection rule.

    GitHub must always get an answer: an internal error (or no gate result) rejects with the reason.
    """
    if error is not None or gate is None:
        comment = f"Slipway could not evaluate the gate: {error or 'no gate result'}"
        return "rejected", shorten(comment, PROTECTION_COMMENT_MAX)
    if gate.verdict == "deploy":
        return "approved", shorten(f"Slipway: {'; '.join(gate.reasons)}", PROTECTION_COMMENT_MAX)
    comment = "; ".join(gate.reasons)
    if gate.verdict == "wait":
        comment += ". Re-run this job when the checks have finished."
    return "rejected", shorten(f"Slipway: {comment}", PROTECTION_COMMENT_MAX)


def _when(moment: datetime) -> str:
    """Write a time for people, in its own zone ("2026-03-30 08:00 CEST")."""
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()
