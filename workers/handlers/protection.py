"""deployment_protection_rule: approve or reject through GitHub's callback, always, with the reason."""

from __future__ import annotations

import logging
import re

from workers import gitops, repoconfig
from workers.events import Event, Outcome
from workers.handlers.common import default_branch, repo_for
from workers.policy import evaluate_gate
from workers.policy.decisions import decide_protection_rule
from workers.registry import handles

log = logging.getLogger(__name__)
RUN_ID = re.compile(r"/actions/runs/(\d+)/")


@handles("deployment_protection_rule", "requested")
def on_protection_rule(event: Event) -> Outcome:
    """Gate a GitHub Actions job on the environment's required checks; an internal error rejects with the reason."""
    p = event.payload
    repo = repo_for(event)
    environment, callback = str(p.get("environment") or ""), str(p.get("deployment_callback_url") or "")
    try:
        state, comment = _decide(event, repo, environment, callback)
    except Exception as exc:  # GitHub must hear back, or the job waits with no reason
        log.exception("protection rule evaluation failed", extra={"delivery": event.guid})
        state, comment = decide_protection_rule(None, error=f"{type(exc).__name__}: {exc}")
    repo.review_protection_rule(callback, environment=environment, state=state, comment=comment)
    return Outcome("done", f"{state}: {comment}")


def _decide(event: Event, repo, environment: str, callback: str) -> tuple[str, str]:  # noqa: ANN001
    """The gate over the commit's checks, leaving out the workflow run that is waiting for this answer."""
    cfg = repoconfig.load(event.rt, repo, default_branch(event))
    env = cfg.environments.get(environment)
    required = list(env.required_checks) if env else []
    match = RUN_ID.search(callback + "/")
    waiting_run = match.group(1) if match else None
    checks = [c for c in gitops.gather_checks(repo, str(event.payload.get("sha") or ""))
              if not (waiting_run and c.kind == "workflow_run" and str(c.id) == waiting_run)]
    checks = [c for c in checks if not (c.kind == "check_run" and c.status != "completed" and waiting_run)]
    return decide_protection_rule(evaluate_gate(checks, required))
