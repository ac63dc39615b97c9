"""Deploy candidates: propose, evaluate against the gate, deploy through the provisioner, tear down.

Facts come from GitHub (checks on the exact sha) and the database; verdicts come from the pure
functions in workers.policy; effects go through workers.github (via workers.deploy and
workers.provisioners); every verdict is stored as a Decision and shown on the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select, update

from models import Candidate as CandidateRow
from models import Decision, Deployment, Environment
from models.base import utcnow
from models.db import autocommit, insert_or_get
from models.gitops import OPEN
from slipway.runtime import Runtime
from workers import provisioners
from workers.deploy import Planned, ensure_deployment, post_status
from workers.github import Repo
from workers.policy import Check, RepoConfig, evaluate_gate, status_context
from workers.policy.decisions import Candidate, Decision as Verdict
from workers.policy.decisions import commit_status_for_decision, decide_candidate
from workers.policy.freeze import freeze_until

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Where and what a candidate deploys: the commit and its context."""

    repository: str
    sha: str
    ref: str | None
    ordinal: float  # GitHub's time of the change that made the candidate
    kind: str = "static"
    version: str | None = None
    pr_number: int | None = None
    installation_id: int | None = None
    delivery_guid: str | None = None


def propose(rt: Runtime, repo: Repo, cfg: RepoConfig, cand: Candidate, t: Target, *, key_suffix: str = "") -> str:
    """Store a candidate once, supersede older open ones for its environment, and evaluate it now."""
    key = f"{t.repository}|{cand.environment}|{t.sha}|{cand.trigger}{key_suffix}"[:300]
    now = utcnow()
    with rt.engine.begin() as conn:
        row, _ = insert_or_get(conn, CandidateRow, {
            "key": key, "repository": t.repository, "environment": cand.environment, "kind": t.kind,
            "trigger": cand.trigger, "sha": t.sha, "ref": t.ref, "version": t.version,
            "required_checks": list(cand.required_checks), "ordinal": t.ordinal, "state": "waiting",
            "reason": cand.reason, "environment_url": cand.url, "pr_number": t.pr_number,
            "production": cand.environment == "production", "installation_id": t.installation_id,
            "delivery_guid": t.delivery_guid, "extra": {"freeze": [w.text for w in cand.freeze]},
            "created_at": now, "updated_at": now}, CandidateRow.key == key)
    _supersede_older(rt, repo, row)
    return evaluate(rt, repo, cfg, row.id, t.delivery_guid, row=row)


def _supersede_older(rt: Runtime, repo: Repo, row: Any) -> None:
    """An old commit is never deployed over a newer one: older open candidates end here."""
    with autocommit(rt.engine) as conn:
        older = list(conn.execute(select(CandidateRow).where(
            CandidateRow.repository == row.repository, CandidateRow.environment == row.environment,
            CandidateRow.state.in_(OPEN), CandidateRow.ordinal < row.ordinal, CandidateRow.id != row.id)))
    for old in older:
        verdict = Verdict("superseded", [f"superseded by {row.sha[:7]}, a newer commit for {row.environment}"])
        _apply(rt, repo, old, verdict, row.delivery_guid)


def evaluate(rt: Runtime, repo: Repo, cfg: RepoConfig | None, candidate_id: int, delivery_guid: str | None,
             row: Any = None) -> str:
    """Decide an open candidate from GitHub's current checks, then record and apply the verdict.

    `row` is the candidate as this job has just read it (propose), saving a read.
    """
    with autocommit(rt.engine) as conn:
        if row is None:
            row = conn.execute(select(CandidateRow).where(CandidateRow.id == candidate_id)).one()
        if row.state not in OPEN:
            return row.state
        newer_q = exists().where(
            CandidateRow.repository == row.repository, CandidateRow.environment == row.environment,
            CandidateRow.ordinal > row.ordinal, CandidateRow.state.in_(("waiting", "blocked", "deployed")))
        deployed_q = exists().where(
            Environment.repository == row.repository, Environment.name == row.environment,
            Environment.sha == row.sha, Environment.status == "success")
        newer, deployed = conn.execute(select(newer_q, deployed_q)).one()
        # A rollback redeploys a commit the record still shows as current: the failed deploy may have broken it.
        deployed = deployed and row.trigger != "rollback"
    gate = evaluate_gate(gather_checks(repo, row.sha) if row.required_checks else [], row.required_checks or [])
    frozen = freeze_until((row.extra or {}).get("freeze") or [], utcnow())
    cand = Candidate(row.environment, row.reason or "", row.trigger, tuple(row.required_checks or ()))
    verdict = decide_candidate(cand, gate, newer_candidate_exists=bool(newer), freeze_until=frozen, now=utcnow(),
                               already_deployed=bool(deployed))
    _apply(rt, repo, row, verdict, delivery_guid, cfg)
    return verdict.verdict


def gather_checks(repo: Repo, sha: str) -> list[Check]:
    """Every CI result on the exact commit: check runs, commit statuses and workflow runs."""
    checks = [Check(r["name"], "check_run", r.get("status") or "queued", r.get("conclusion"),
                    app_slug=(r.get("app") or {}).get("slug"), id=r.get("id")) for r in repo.check_runs(sha)]
    checks += [Check.from_commit_status(s["context"], s["state"], id=s.get("id"))
               for s in repo.combined_status(sha).get("statuses", [])]
    checks += [Check(w.get("name") or "", "workflow_run", w.get("status") or "queued", w.get("conclusion"),
                     id=w.get("id"), attempt=w.get("run_attempt") or 1) for w in repo.workflow_runs(sha)]
    return checks


_STATE_OF = {"deploy": "deployed", "wait": "waiting", "block": "blocked", "skip": "skipped", "superseded": "superseded"}


def _apply(rt: Runtime, repo: Repo, row: Any, verdict: Verdict, delivery_guid: str | None,
           cfg: RepoConfig | None = None) -> None:
    """Record the verdict, tell the commit, and deploy when the verdict says so."""
    _record_decision(rt, row, verdict, delivery_guid)
    _tell_commit(rt, repo, row, verdict)
    if verdict.verdict == "deploy":
        deploy(rt, repo, row, cfg, delivery_guid)
    with autocommit(rt.engine) as conn:
        conn.execute(update(CandidateRow).where(CandidateRow.id == row.id, CandidateRow.state.in_(OPEN)).values(
            state=_STATE_OF[verdict.verdict], reason="; ".join(verdict.reasons)[:2000],
            not_before=verdict.not_before, updated_at=utcnow()))


def _record_decision(rt: Runtime, row: Any, verdict: Verdict, delivery_guid: str | None) -> None:
    """Store the decision with its reasons, the commit, the environment and the delivery."""
    with autocommit(rt.engine) as conn:
        conn.execute(Decision.__table__.insert().values(
            repository=row.repository, environment=row.environment, sha=row.sha, verdict=verdict.verdict,
            reasons=list(verdict.reasons), delivery_guid=delivery_guid, created_at=utcnow()))
    metrics = rt.extras.get("on_decision")
    if metrics:
        metrics(verdict.verdict)


def _tell_commit(rt: Runtime, repo: Repo, row: Any, verdict: Verdict) -> None:
    """Post `slipway/<environment>` on the commit unless it already says exactly this."""
    state, description = commit_status_for_decision(verdict, row.environment, sha=row.sha)
    said = f"{state}|{description}"[:300]
    if row.last_commit_status == said:
        return
    repo.create_commit_status(row.sha, state=state, context=status_context(row.environment), description=description)
    with autocommit(rt.engine) as conn:
        conn.execute(update(CandidateRow).where(CandidateRow.id == row.id).values(last_commit_status=said))


def deploy(rt: Runtime, repo: Repo, row: Any, cfg: RepoConfig | None, delivery_guid: str | None) -> int:
    """Create the GitHub deployment once, post `queued`, and hand it to the provisioner."""
    planned = Planned(key=f"candidate-{row.id}", repository=row.repository, environment=row.environment,
                      kind=row.kind, ref=row.ref or row.sha, sha=row.sha, version=row.version,
                      description=f"Slipway: {row.reason or 'deploy'}"[:140], delivery_guid=delivery_guid,
                      production=row.production, environment_url=row.environment_url)
    dep_id, gh_id, created = ensure_deployment(rt.engine, repo, planned)
    with autocommit(rt.engine) as conn:
        conn.execute(update(CandidateRow).where(CandidateRow.id == row.id).values(deployment_id=dep_id))
    post_status(rt.engine, repo, dep_id, gh_id, "queued", description="queued by Slipway",
                environment_url=row.environment_url, delivery_guid=delivery_guid,
                auto_inactive=None if row.kind == "static" else False, new_deployment=created, key=planned.key)
    provisioners.deploy(rt, repo, cfg, row, dep_id, gh_id, delivery_guid)
    return dep_id


def evaluate_open_for_sha(rt: Runtime, repo: Repo, cfg: RepoConfig | None, sha: str,
                          delivery_guid: str | None) -> list[str]:
    """Re-evaluate every waiting or blocked candidate for this commit (a check finished)."""
    with rt.engine.connect() as conn:
        ids = conn.execute(select(CandidateRow.id).where(
            CandidateRow.repository == repo.full_name, CandidateRow.sha == sha, CandidateRow.state.in_(OPEN))
            .order_by(CandidateRow.ordinal)).scalars().all()
    return [evaluate(rt, repo, cfg, cid, delivery_guid) for cid in ids]


def teardown(rt: Runtime, repo: Repo, cfg: RepoConfig | None, environment: str, reason: str,
             delivery_guid: str | None) -> str:
    """End an environment: open candidates stop, every deployment goes inactive, the provisioner destroys it."""
    with rt.engine.connect() as conn:
        open_rows = list(conn.execute(select(CandidateRow).where(
            CandidateRow.repository == repo.full_name, CandidateRow.environment == environment,
            CandidateRow.state.in_(OPEN))))
        deployments = list(conn.execute(select(Deployment.id, Deployment.github_deployment_id, Deployment.status).where(
            Deployment.repository == repo.full_name, Deployment.environment == environment,
            Deployment.github_deployment_id.is_not(None))))
    for row in open_rows:
        _apply(rt, repo, row, Verdict("skip", [f"environment {environment} torn down: {reason}"]), delivery_guid)
    for dep in deployments:
        if dep.status != "inactive":
            post_status(rt.engine, repo, dep.id, dep.github_deployment_id, "inactive",
                        description=f"torn down: {reason}"[:140], delivery_guid=delivery_guid)
    provisioners.destroy(rt, repo, cfg, environment, delivery_guid)
    deleted = repo.delete_environment(environment)
    return f"{environment} torn down ({len(deployments)} deployments inactive" + \
        ("; GitHub environment deleted)" if deleted else "; the App may not delete the GitHub environment)")


def maybe_rollback(rt: Runtime, repo: Repo, cfg: RepoConfig, deployment_id: int, state: str,
                   delivery_guid: str | None) -> str | None:
    """After a failure status, redeploy the last good commit when the environment asks for it."""
    from workers.policy import DeploymentRecord, decide_rollback

    with rt.engine.connect() as conn:
        dep = conn.execute(select(Deployment).where(Deployment.id == deployment_id)).one()
        env_cfg = cfg.environments.get(dep.environment)
        if env_cfg is None or not dep.sha:
            return None
        history = [DeploymentRecord(r.id, r.sha or "", r.deployed_at is not None) for r in conn.execute(
            select(Deployment.id, Deployment.sha, Deployment.deployed_at).where(
                Deployment.repository == dep.repository, Deployment.environment == dep.environment))]
        was_rollback = bool(dep.key and conn.execute(select(exists().where(
            CandidateRow.deployment_id == dep.id, CandidateRow.trigger == "rollback"))).scalar())
    target = decide_rollback(state, env_cfg, history, failed_id=dep.id, failed_sha=dep.sha,
                             failed_was_rollback=was_rollback)
    if target is None:
        return None
    cand = Candidate(dep.environment, f"rollback to {target[:7]} after {state} of {dep.sha[:7]}", "rollback")
    t = Target(dep.repository or "", target, None, utcnow().timestamp(), installation_id=repo.installation_id,
               delivery_guid=delivery_guid)
    return propose(rt, repo, cfg, cand, t, key_suffix=f":{dep.id}")


def due_frozen(rt: Runtime) -> list[tuple[int, str, int | None]]:
    """Candidates whose freeze has ended: (id, repository, installation) to evaluate again."""
    now = utcnow()
    with rt.engine.begin() as conn:
        rows = conn.execute(update(CandidateRow).where(and_(CandidateRow.state == "waiting",
                                                            CandidateRow.not_before.is_not(None),
                                                            CandidateRow.not_before <= now))
                            .values(not_before=None).returning(CandidateRow.id, CandidateRow.repository,
                                                               CandidateRow.installation_id))
        return [tuple(r) for r in rows]


def ordinal_of(*values: Any) -> float:
    """The first usable timestamp (epoch number or ISO 8601 text) as epoch seconds; now if none."""
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return utcnow().timestamp()
