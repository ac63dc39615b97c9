"""push, create, delete and release: the environments that follow branches, tags and releases."""

from __future__ import annotations

from workers import gitops, repoconfig
from workers.events import Event, Outcome
from workers.handlers.common import default_branch, get, repo_and_config, repo_for
from workers.policy import (
    ReleaseFacts,
    branch_environment_for,
    candidate_for_push,
    candidate_for_release,
    candidate_for_tag,
    touches_config,
)
from workers.registry import handles

ZERO_SHA = "0" * 40


def _changed_paths(payload: dict) -> list[str]:
    """Every path a push touched."""
    return [p for c in payload.get("commits") or [] for k in ("added", "modified", "removed") for p in c.get(k) or []]


@handles("push")
def on_push(event: Event) -> Outcome:
    """Refresh the configuration when the push changed it; propose the environments that follow this ref."""
    p = event.payload
    if p.get("deleted") or p.get("after") == ZERO_SHA:
        return Outcome.ignored("ref deleted (the delete event tears down)")
    repo, cached = repo_and_config(event)
    ref, branch = p["ref"], default_branch(event)
    sha = get(p, "head_commit", "id") or p["after"]
    refresh = touches_config(ref, branch, _changed_paths(p))
    cfg = repoconfig.load(event.rt, repo, branch, refresh=refresh, status_sha=sha if refresh else None,
                          cached=cached)
    name = (event.repository or "").split("/")[-1]
    found = candidate_for_tag(ref, cfg) if ref.startswith("refs/tags/") else candidate_for_push(ref, branch, cfg, repo=name)
    ordinal = gitops.ordinal_of(get(p, "repository", "pushed_at"), get(p, "head_commit", "timestamp"))
    short_ref = ref.split("/", 2)[-1]
    verdicts = [f"{c.environment}: " + gitops.propose(event.rt, repo, cfg, c, gitops.Target(
        event.repository or "", sha, short_ref, ordinal, kind="branch" if c.trigger == "branch" else "static",
        version=short_ref if c.trigger == "tag" else None, installation_id=event.installation_id,
        delivery_guid=event.guid)) for c in found]
    return Outcome("done", ", ".join(verdicts) or f"no environment follows {short_ref}")


@handles("create")
def on_create(event: Event) -> Outcome:
    """A new branch with a branch environment deploys from its push (which carries the sha)."""
    p = event.payload
    if p.get("ref_type") != "branch":
        return Outcome("done", f"tag {p.get('ref')}: deploys come from its push")
    cfg = repoconfig.load(event.rt, repo_for(event), default_branch(event))
    env = branch_environment_for(p["ref"], "branch", cfg, repo=(event.repository or "").split("/")[-1])
    if env is None:
        return Outcome("done", f"no branch environment for {p['ref']}")
    return Outcome("done", f"branch environment {env.environment} deploys from the push of {p['ref']}")


@handles("delete")
def on_delete(event: Event) -> Outcome:
    """A deleted branch takes its branch environment with it."""
    p = event.payload
    if p.get("ref_type") != "branch":
        return Outcome("done", f"tag {p.get('ref')} deleted: nothing to tear down")
    repo = repo_for(event)
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    env = branch_environment_for(p["ref"], "branch", cfg, repo=(event.repository or "").split("/")[-1])
    if env is None:
        return Outcome("done", f"no branch environment for {p['ref']}")
    return Outcome("done", gitops.teardown(event.rt, repo, cfg, env.environment, f"branch {p['ref']} deleted",
                                           event.guid))


@handles("release", "published", "released", "prereleased")
def on_release(event: Event) -> Outcome:
    """Releases deploy to the environments that follow releases."""
    release = event.payload["release"]
    repo = repo_for(event)
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    facts = ReleaseFacts(str(release.get("tag_name")), bool(release.get("prerelease")), bool(release.get("draft")))
    found = candidate_for_release(event.action or "", facts, cfg)
    if not found:
        return Outcome("done", f"no environment follows release {facts.tag_name} {event.action}")
    sha = repo.commit_sha(facts.tag_name)
    ordinal = gitops.ordinal_of(release.get("published_at"), release.get("created_at"))
    verdicts = [f"{c.environment}: " + gitops.propose(event.rt, repo, cfg, c, gitops.Target(
        event.repository or "", sha, facts.tag_name, ordinal, version=facts.tag_name,
        installation_id=event.installation_id, delivery_guid=event.guid)) for c in found]
    return Outcome("done", ", ".join(verdicts))
