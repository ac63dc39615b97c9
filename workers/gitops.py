"""Deploy candidates: propose, evaluate against the gate, deploy through the provisioner, tear down.

Facts come from GitHub (checks on the exact sha) and the database; verdicts come from the pure
functions in workers.policy; effects go through workers.github (via workers.deploy and
workers.provisioners); every verdict is stored as a Decision and shown on the commit.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Boolean, and_, bindparam, case, exists, func, or_, select, update

from models import Candidate as CandidateRow
from models import Decision, Deployment, Environment
from models.base import utcnow
from models.db import Prepared, autocommit, run
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
    with autocommit(rt.engine) as conn:
        q = _statements(conn.dialect.name)
        row = run(conn, q.insert_candidate, {
            "b_key": key, "b_repository": t.repository, "b_environment": cand.environment, "b_kind": t.kind,
            "b_trigger": cand.trigger, "b_sha": t.sha, "b_ref": t.ref, "b_version": t.version,
            "b_required_checks": list(cand.required_checks), "b_ordinal": t.ordinal, "b_reason": cand.reason,
            "b_environment_url": cand.url, "b_pr_number": t.pr_number, "b_production": cand.environment == "production",
            "b_installation_id": t.installation_id, "b_delivery_guid": t.delivery_guid,
            "b_extra": {"freeze": [w.text for w in cand.freeze]}, "b_created_at": now, "b_updated_at": now}).first()
        if row is None:
            row = run(conn, q.candidate_by_key, {"b_key": key}).first()
            facts = _facts(conn, row)
        elif q.with_facts:  # PostgreSQL read the new row's facts in the same statement
            facts = _Facts(bool(row.newer), bool(row.deployed), bool(row.older))
        else:
            facts = _facts(conn, row)
    if facts.older:
        _supersede_older(rt, repo, row)
    return evaluate(rt, repo, cfg, row.id, t.delivery_guid, row=row, facts=facts)


class _Facts(NamedTuple):
    """What the database says about a candidate's neighbours, read in one statement."""

    newer: bool     # a newer commit is waiting, blocked or deployed for the environment
    deployed: bool  # the environment already runs this commit successfully
    older: bool     # older open candidates for the environment exist (they are superseded)


def _facts(conn: Any, row: Any) -> _Facts:
    """Read the candidate's _Facts."""
    got = run(conn, _statements(conn.dialect.name).facts, {
        "b_id": row.id, "b_repository": row.repository, "b_environment": row.environment, "b_ordinal": row.ordinal,
        "b_sha": row.sha}).first()
    return _Facts(bool(got[0]), bool(got[1]), bool(got[2]))


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
             row: Any = None, facts: _Facts | None = None) -> str:
    """Decide an open candidate from GitHub's current checks, then record and apply the verdict.

    `row` and `facts` are what this job has just read (propose), saving reads.
    """
    if row is None or facts is None:
        with autocommit(rt.engine) as conn:
            if row is None:
                row = run(conn, _statements(conn.dialect.name).candidate_by_id, {"b_id": candidate_id}).rows[0]
            if row.state not in OPEN:
                return row.state
            facts = _facts(conn, row)
    if row.state not in OPEN:
        return row.state
    # A rollback redeploys a commit the record still shows as current: the failed deploy may have broken it.
    deployed = facts.deployed and row.trigger != "rollback"
    gate = evaluate_gate(gather_checks(repo, row.sha) if row.required_checks else [], row.required_checks or [])
    frozen = freeze_until((row.extra or {}).get("freeze") or [], utcnow())
    cand = Candidate(row.environment, row.reason or "", row.trigger, tuple(row.required_checks or ()))
    verdict = decide_candidate(cand, gate, newer_candidate_exists=facts.newer, freeze_until=frozen, now=utcnow(),
                               already_deployed=deployed)
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
    """Tell the commit and deploy when the verdict says so, then store the decision and the candidate's new
    state in one statement. When a step fails, what was done (the commit status said, the deployment made)
    and the decision are stored still, without the new state, so the retry decides again."""
    said, dep_id, done = None, None, False
    try:
        said = _tell_commit(rt, repo, row, verdict)
        if verdict.verdict == "deploy":
            noted: dict[str, int] = {}
            try:
                deploy(rt, repo, row, cfg, delivery_guid, noted)
            finally:
                dep_id = noted.get("deployment_id")
        done = True
    finally:
        _settle(rt, row, verdict, delivery_guid, said, dep_id, done)


def _settle(rt: Runtime, row: Any, verdict: Verdict, delivery_guid: str | None, said: str | None,
            dep_id: int | None, done: bool) -> None:
    """Store the decision (reasons, commit, environment, delivery) and update the candidate."""
    now = utcnow()
    params = {"b_repository": row.repository, "b_environment": row.environment, "b_sha": row.sha,
              "b_verdict": verdict.verdict, "b_reasons": list(verdict.reasons), "b_delivery_guid": delivery_guid,
              "b_created_at": now, "b_id": row.id, "b_said": said, "b_deployment_id": dep_id, "b_done": done,
              "b_state": _STATE_OF[verdict.verdict], "b_reason": "; ".join(verdict.reasons)[:2000],
              "b_not_before": verdict.not_before, "b_updated_at": now}
    with autocommit(rt.engine) as conn:
        q = _statements(conn.dialect.name)
        if q.record_decision is not None:  # SQLite: no data-modifying CTE, so two statements
            run(conn, q.record_decision, params)
        run(conn, q.settle, params)
    metrics = rt.extras.get("on_decision")
    if metrics:
        metrics(verdict.verdict)


def _tell_commit(rt: Runtime, repo: Repo, row: Any, verdict: Verdict) -> str | None:
    """Post `slipway/<environment>` on the commit unless it already says exactly this; what it says now, if posted."""
    state, description = commit_status_for_decision(verdict, row.environment, sha=row.sha)
    said = f"{state}|{description}"[:300]
    if row.last_commit_status == said:
        return None
    repo.create_commit_status(row.sha, state=state, context=status_context(row.environment), description=description)
    return said


def deploy(rt: Runtime, repo: Repo, row: Any, cfg: RepoConfig | None, delivery_guid: str | None,
           noted: dict[str, int]) -> int:
    """Create the GitHub deployment once, post `queued`, and hand it to the provisioner; returns our id, also
    put in `noted` as soon as it is known (the caller stores it on the candidate, even if a later step fails)."""
    planned = Planned(key=f"candidate-{row.id}", repository=row.repository, environment=row.environment,
                      kind=row.kind, ref=row.ref or row.sha, sha=row.sha, version=row.version,
                      description=f"Slipway: {row.reason or 'deploy'}"[:140], delivery_guid=delivery_guid,
                      production=row.production, environment_url=row.environment_url)
    dep_id, gh_id, created = ensure_deployment(rt.engine, repo, planned)
    noted["deployment_id"] = dep_id
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


@dataclass(frozen=True)
class _Statements:
    """The candidate statements of every push, built once per process and dialect (models.db.Prepared);
    parameters are named b_<column>."""

    insert_candidate: Prepared  # on PostgreSQL with the new row's _Facts as `newer`, `deployed`, `older`
    with_facts: bool
    candidate_by_key: Prepared
    candidate_by_id: Prepared
    facts: Prepared
    record_decision: Prepared | None  # SQLite only; PostgreSQL inserts the decision inside `settle`
    settle: Prepared


_CANDIDATE_COLUMNS = ("key", "repository", "environment", "kind", "trigger", "sha", "ref", "version",
                      "required_checks", "ordinal", "reason", "environment_url", "pr_number", "production",
                      "installation_id", "delivery_guid", "extra", "created_at", "updated_at")
_DECISION_COLUMNS = ("repository", "environment", "sha", "verdict", "reasons", "delivery_guid", "created_at")


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Build the statements (first use in this process)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = {"postgresql": postgresql, "sqlite": sqlite}[dialect].insert
    ct, et, dt = CandidateRow.__table__, Environment.__table__, Decision.__table__
    c, e = ct.c, et.c

    def binds(table: Any, columns: tuple[str, ...]) -> dict[str, Any]:
        return {col: bindparam(f"b_{col}", type_=table.c[col].type) for col in columns}

    def one_of(col: Any, values: tuple[str, ...]) -> Any:
        return or_(*(col == v for v in values))  # not IN: Prepared compiles without expanding parameters

    same_env = (c.repository == bindparam("b_repository"), c.environment == bindparam("b_environment"))
    ordinal = bindparam("b_ordinal", type_=c.ordinal.type)
    newer = exists().where(*same_env, c.ordinal > ordinal, one_of(c.state, ("waiting", "blocked", "deployed")))
    deployed = exists().where(e.repository == bindparam("b_repository"), e.name == bindparam("b_environment"),
                              e.sha == bindparam("b_sha"), e.status == "success")
    older_open = exists().where(*same_env, one_of(c.state, OPEN), c.ordinal < ordinal)
    facts = select(newer, deployed, older_open.where(c.id != bindparam("b_id")))
    moves = and_(bindparam("b_done", type_=Boolean), one_of(c.state, OPEN))
    settle = update(ct).where(c.id == bindparam("b_id")).values(
        last_commit_status=func.coalesce(bindparam("b_said", type_=c.last_commit_status.type), c.last_commit_status),
        deployment_id=func.coalesce(bindparam("b_deployment_id", type_=c.deployment_id.type), c.deployment_id),
        state=case((moves, bindparam("b_state", type_=c.state.type)), else_=c.state),
        reason=case((moves, bindparam("b_reason", type_=c.reason.type)), else_=c.reason),
        not_before=case((moves, bindparam("b_not_before", type_=c.not_before.type)), else_=c.not_before),
        updated_at=case((moves, bindparam("b_updated_at", type_=c.updated_at.type)), else_=c.updated_at))
    record_decision = insert(dt).values(binds(dt, _DECISION_COLUMNS))
    new_row = insert(ct).values({**binds(ct, _CANDIDATE_COLUMNS), "state": "waiting"}).on_conflict_do_nothing()
    if dialect == "postgresql":
        # The facts in the same statement as the INSERT (a data-modifying CTE): its snapshot does not see the
        # new row, which the facts leave out anyway.
        created = new_row.returning(*c).cte("new_candidate")
        insert_candidate = select(created, *(f.label(n) for f, n in zip(
            (newer, deployed, older_open), ("newer", "deployed", "older"), strict=True)))
    else:
        insert_candidate = new_row.returning(*c)
    return _Statements(
        insert_candidate=Prepared(insert_candidate),
        with_facts=dialect == "postgresql",
        candidate_by_key=Prepared(select(*c).where(c.key == bindparam("b_key"))),
        candidate_by_id=Prepared(select(*c).where(c.id == bindparam("b_id"))),
        facts=Prepared(facts),
        record_decision=None if dialect == "postgresql" else Prepared(record_decision),
        # PostgreSQL: the decision is a data-modifying CTE of the candidate's UPDATE: one round trip for both.
        settle=Prepared(settle.add_cte(record_decision.cte("new_decision")) if dialect == "postgresql" else settle),
    )


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
