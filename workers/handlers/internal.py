"""Slipway's own jobs, queued as internal deliveries: re-evaluate after a freeze, expire idle previews."""

from __future__ import annotations

from workers import gitops, repoconfig
from workers.events import Event, Outcome
from workers.registry import handles


def _repo(event: Event):  # noqa: ANN202
    """The repository client for an internal job's payload."""
    from workers.handlers.common import repo_for

    return repo_for(event)


@handles("slipway.evaluate")
def on_evaluate(event: Event) -> Outcome:
    """A freeze window ended: decide again."""
    repo = _repo(event)
    cfg = repoconfig.load(event.rt, repo, event.payload.get("default_branch") or repo.default_branch())
    verdict = gitops.evaluate(event.rt, repo, cfg, int(event.payload["candidate_id"]), event.guid)
    return Outcome("done", f"candidate {event.payload['candidate_id']}: {verdict}")


@handles("slipway.teardown")
def on_teardown(event: Event) -> Outcome:
    """A preview idle past its TTL is destroyed."""
    repo = _repo(event)
    cfg = repoconfig.load(event.rt, repo, repo.default_branch())
    return Outcome("done", gitops.teardown(event.rt, repo, cfg, event.payload["environment"],
                                           event.payload.get("reason") or "idle past its ttl", event.guid))
