"""GitOps end to end: signed webhooks → worker → the exact calls the fake GitHub received (both modes)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import Candidate, Decision, Delivery, Environment
from models.base import utcnow
from tests import factories as f
from tests.conftest import Deliveries, drain
from workers.sweeper import sweep_once

REPO = f.REPO


@pytest.fixture
def hooks(gh_client) -> Deliveries:  # noqa: ANN001
    """Signed deliveries to the GitHub-enabled app."""
    return Deliveries(gh_client)


def send(rt, hooks: Deliveries, event: str, payload: dict) -> None:  # noqa: ANN001
    """Deliver one event and run the worker until idle."""
    resp = hooks.post(event, payload)
    assert resp.status_code == 202, resp.get_json()
    drain(rt)


def config(fake, text: str) -> None:  # noqa: ANN001
    """Put a .github/slipway.yml on the default branch."""
    fake.set_file(REPO, ".github/slipway.yml", text)


def commit_statuses(fake, sha: str) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(context, state, description) of every status posted on a commit, in order."""
    return [(s["context"], s["state"], s["description"]) for s in fake.commit_statuses.get(REPO, [])
            if s.get("sha", sha) == sha]


def posted_deployments(fake) -> list[dict]:  # noqa: ANN001
    """Bodies of POST /deployments, in order."""
    return [c.json for c in fake.calls_to("POST", r"/deployments$")]


def decisions(rt) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(environment, sha[:7], verdict) of every stored decision."""
    with rt.engine.connect() as conn:
        return [(d.environment, (d.sha or "")[:7], d.verdict) for d in conn.execute(select(Decision).order_by(Decision.id))]


def states(rt) -> dict[str, str]:  # noqa: ANN001
    """Delivery guid → state."""
    with rt.engine.connect() as conn:
        return dict(conn.execute(select(Delivery.guid, Delivery.state)).all())


STAGING_GATED = """
environments:
  staging:
    on: push
    required_checks: [test, lint]
"""


def test_ci_gated_push_waits_then_deploys_when_checks_pass(gh_rt, hooks, fake_github) -> None:
    """Seed use case 'CI-gated deployment': wait with the missing checks named, deploy once both pass."""
    config(fake_github, STAGING_GATED)
    sha = f.sha("gated")
    send(gh_rt, hooks, "push", f.push(after=sha))
    assert posted_deployments(fake_github) == []
    (ctx, state, desc), = [s for s in commit_statuses(fake_github, sha) if s[0] == "slipway/staging"]
    assert (state, desc) == ("pending", "waiting for: test, lint")
    fake_github.add_check_run(REPO, sha, "test", conclusion="success")
    send(gh_rt, hooks, "check_run", f.check_run(sha, "test"))
    assert posted_deployments(fake_github) == []  # lint still missing
    fake_github.add_check_run(REPO, sha, "lint", conclusion="success")
    send(gh_rt, hooks, "check_run", f.check_run(sha, "lint"))
    (body,) = posted_deployments(fake_github)
    assert body["environment"] == "staging" and body["ref"] == sha and body["auto_merge"] is False
    assert body["required_contexts"] == [] and body["payload"]["slipway"]["key"].startswith("candidate-")
    (dep,) = fake_github.deployments[REPO]
    assert [s["state"] for s in fake_github.deployment_statuses[dep["id"]]] == ["queued"]
    assert [v for _, _, v in decisions(gh_rt)] == ["wait", "wait", "deploy"]
    assert commit_statuses(fake_github, sha)[-1][1] == "success"
    # A late, duplicate check event changes nothing.
    send(gh_rt, hooks, "check_run", f.check_run(sha, "lint"))
    assert len(posted_deployments(fake_github)) == 1


def test_failed_required_check_blocks_with_its_name(gh_rt, hooks, fake_github) -> None:
    """A failing required check blocks; the commit says which; nothing is deployed."""
    config(fake_github, STAGING_GATED)
    sha = f.sha("red")
    fake_github.add_check_run(REPO, sha, "lint", conclusion="success")
    fake_github.add_check_run(REPO, sha, "test", conclusion="failure")
    send(gh_rt, hooks, "push", f.push(after=sha))
    assert posted_deployments(fake_github) == []
    assert decisions(gh_rt)[-1][2] == "block"
    last = [s for s in commit_statuses(fake_github, sha) if s[0] == "slipway/staging"][-1]
    assert last[1] == "failure" and "test" in last[2]
    # A re-run that passes unblocks it.
    fake_github.add_check_run(REPO, sha, "test", conclusion="success")
    send(gh_rt, hooks, "check_run", f.check_run(sha, "test"))
    assert len(posted_deployments(fake_github)) == 1


def test_newer_push_supersedes_an_older_waiting_one_in_any_order(gh_rt, hooks, fake_github) -> None:
    """An old commit is never deployed over a newer one, whichever push arrives first."""
    config(fake_github, STAGING_GATED)
    old, new = f.sha("old"), f.sha("new")
    send(gh_rt, hooks, "push", f.push(after=new, pushed_at=2_000))
    send(gh_rt, hooks, "push", f.push(after=old, pushed_at=1_000))  # arrives late
    for sha in (old, new):
        for name in ("test", "lint"):
            fake_github.add_check_run(REPO, sha, name)
    send(gh_rt, hooks, "check_run", f.check_run(old, "lint"))
    assert posted_deployments(fake_github) == []  # the old one is superseded, not deployed
    send(gh_rt, hooks, "check_run", f.check_run(new, "lint"))
    assert [b["ref"] for b in posted_deployments(fake_github)] == [new]
    assert ("staging", old[:7], "superseded") in decisions(gh_rt)


def test_default_config_deploys_staging_from_the_default_branch_only(gh_rt, hooks, fake_github) -> None:
    """No file: staging follows pushes to the default branch with required_checks ['*']."""
    sha = f.sha("main")
    fake_github.add_check_run(REPO, sha, "build")
    send(gh_rt, hooks, "push", f.push(after=sha))
    send(gh_rt, hooks, "push", f.push("refs/heads/other", after=f.sha("other")))
    assert [(b["environment"], b["ref"]) for b in posted_deployments(fake_github)] == [("staging", sha)]


PREVIEWS = """
previews:
  url: "https://pr-{number}.preview.example.com"
  required_checks: []
environments: {}
"""


def test_preview_lifecycle_open_synchronize_close(gh_rt, hooks, fake_github) -> None:
    """Seed use case 'preview environments': deploy per head, supersede, tear everything down on close."""
    config(fake_github, PREVIEWS)
    first, second = f.sha("pr-1"), f.sha("pr-2")
    send(gh_rt, hooks, "pull_request", f.pull_request("opened", head_sha=first))
    (body,) = posted_deployments(fake_github)
    assert (body["environment"], body["ref"], body["transient_environment"], body["production_environment"]) == (
        "pr-7", first, True, False)
    dep1 = fake_github.deployments[REPO][0]["id"]
    queued = fake_github.calls_to("POST", rf"/deployments/{dep1}/statuses$")[0].json
    assert queued["state"] == "queued" and queued["environment_url"] == "https://pr-7.preview.example.com"
    send(gh_rt, hooks, "pull_request", f.pull_request("synchronize", head_sha=second, updated_at="2026-01-01T11:00:00Z"))
    assert [b["ref"] for b in posted_deployments(fake_github)] == [first, second]
    send(gh_rt, hooks, "pull_request", f.pull_request("closed", head_sha=second, state="closed", merged=True,
                                                       updated_at="2026-01-01T12:00:00Z"))
    for dep in fake_github.deployments[REPO]:
        assert fake_github.deployment_statuses[dep["id"]][-1]["state"] == "inactive"
    assert fake_github.calls_to("DELETE", r"/environments/pr-7$")
    # The closed event delivered again: nothing new happens.
    calls = len(fake_github.calls)
    send(gh_rt, hooks, "pull_request", f.pull_request("closed", head_sha=second, state="closed", merged=True,
                                                       updated_at="2026-01-01T12:00:01Z"))
    assert [c for c in fake_github.calls[calls:] if c.method == "POST"] == []


@pytest.mark.parametrize("kwargs,reason", [
    ({"draft": True}, "draft"), ({"fork": True}, "fork"),
])
def test_drafts_and_forks_get_no_preview(gh_rt, hooks, fake_github, kwargs, reason) -> None:  # noqa: ANN001
    """Drafts and forks are skipped by default, with the reason stored."""
    config(fake_github, PREVIEWS)
    send(gh_rt, hooks, "pull_request", f.pull_request("opened", **kwargs))
    assert posted_deployments(fake_github) == []
    with gh_rt.engine.connect() as conn:
        (d,) = conn.execute(select(Decision)).all()
    assert d.verdict == "skip" and reason in " ".join(d.reasons)


def test_label_gated_previews(gh_rt, hooks, fake_github) -> None:
    """With labels configured, only labelled PRs get a preview, and removing the label tears it down."""
    config(fake_github, PREVIEWS.replace("required_checks: []", "required_checks: []\n  labels: [preview]"))
    send(gh_rt, hooks, "pull_request", f.pull_request("opened"))
    assert posted_deployments(fake_github) == []
    send(gh_rt, hooks, "pull_request", f.pull_request("labeled", labels=["preview"], label="preview",
                                                       updated_at="2026-01-01T10:01:00Z"))
    assert len(posted_deployments(fake_github)) == 1
    send(gh_rt, hooks, "pull_request", f.pull_request("unlabeled", labels=[], label="preview",
                                                       updated_at="2026-01-01T10:02:00Z"))
    dep = fake_github.deployments[REPO][0]["id"]
    assert fake_github.deployment_statuses[dep][-1]["state"] == "inactive"


BRANCHES = """
environments: {}
branches:
  - pattern: "feature/*"
    environment: "branch-{branch}"
"""


def test_branch_environments_follow_create_push_and_delete(gh_rt, hooks, fake_github) -> None:
    """Seed use case 'branch-based deployment': a matching branch deploys on push and is torn down on delete."""
    config(fake_github, BRANCHES)
    sha = f.sha("feature")
    send(gh_rt, hooks, "create", f.ref_event("feature/search"))
    send(gh_rt, hooks, "push", f.push("refs/heads/feature/search", after=sha))
    send(gh_rt, hooks, "push", f.push("refs/heads/fix/typo", after=f.sha("fix")))
    (body,) = posted_deployments(fake_github)
    assert (body["environment"], body["ref"], body["transient_environment"]) == ("branch-feature-search", sha, True)
    send(gh_rt, hooks, "delete", f.ref_event("feature/search"))
    dep = fake_github.deployments[REPO][0]["id"]
    assert fake_github.deployment_statuses[dep][-1]["state"] == "inactive"
    assert fake_github.calls_to("DELETE", r"/environments/branch-feature-search$")


def test_invalid_config_is_reported_and_the_last_good_one_stays(gh_rt, hooks, fake_github) -> None:
    """A broken slipway.yml shows as a failing slipway/config status naming the line; the good one stays in force."""
    config(fake_github, STAGING_GATED)
    send(gh_rt, hooks, "push", f.push(after=f.sha("c1"), pushed_at=1))
    config(fake_github, "environments:\n  staging:\n    on: sometimes\n")
    bad = f.sha("c2")
    send(gh_rt, hooks, "push", f.push(after=bad, pushed_at=2, changed=[".github/slipway.yml"]))
    (status,) = [s for s in commit_statuses(fake_github, bad) if s[0] == "slipway/config"]
    assert status[1] == "failure" and "line 3" in status[2] and "on" in status[2]
    staging = [s for s in commit_statuses(fake_github, bad) if s[0] == "slipway/staging"]
    assert staging and "test, lint" in staging[-1][2]  # the last good gate still applies


def test_protection_rule_is_answered_approve_reject_and_on_error(gh_rt, hooks, fake_github) -> None:
    """Approve when the gate passes, reject naming the failed check, reject with the reason on an internal error."""
    config(fake_github, "environments:\n  production:\n    on: release\n    required_checks: [test]\n")
    good, bad = f.sha("ok"), f.sha("bad")
    fake_github.add_check_run(REPO, good, "test")
    fake_github.add_check_run(REPO, bad, "test", conclusion="failure")
    send(gh_rt, hooks, "deployment_protection_rule", f.protection_rule("production", good))
    send(gh_rt, hooks, "deployment_protection_rule", f.protection_rule("production", bad))
    fake_github.fail("GET", r"/check-runs$", 500, times=None)
    send(gh_rt, hooks, "deployment_protection_rule", f.protection_rule("production", f.sha("x")))
    reviews = [c.json for c in fake_github.calls_to("POST", r"/deployment_protection_rule$")]
    assert [r["state"] for r in reviews] == ["approved", "rejected", "rejected"]
    assert all(r["environment_name"] == "production" for r in reviews)
    assert "test" in reviews[1]["comment"] and "could not evaluate" in reviews[2]["comment"]


def test_rollback_on_failure_redeploys_the_last_good_commit(gh_rt, hooks, fake_github) -> None:
    """Seed use case 'deployment status tracking' with rollback: a failure status brings back the last success."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: []\n    rollback_on_failure: true\n")
    good, broken = f.sha("good"), f.sha("broken")
    send(gh_rt, hooks, "push", f.push(after=good, pushed_at=1))
    dep_good = fake_github.deployments[REPO][-1]
    send(gh_rt, hooks, "deployment_status", f.deployment_status_event(dep_good, 901, "success", "2026-01-01T10:05:00Z"))
    send(gh_rt, hooks, "push", f.push(after=broken, pushed_at=2))
    dep_broken = fake_github.deployments[REPO][-1]
    assert dep_broken["sha"] == broken
    send(gh_rt, hooks, "deployment_status", f.deployment_status_event(dep_broken, 902, "failure", "2026-01-01T11:05:00Z"))
    assert [b["ref"] for b in posted_deployments(fake_github)] == [good, broken, good]
    # The rollback itself failing does not cascade.
    dep_rollback = fake_github.deployments[REPO][-1]
    send(gh_rt, hooks, "deployment_status", f.deployment_status_event(dep_rollback, 903, "failure", "2026-01-01T12:05:00Z"))
    assert len(posted_deployments(fake_github)) == 3


def test_freeze_delays_until_the_window_ends(gh_rt, hooks, fake_github) -> None:
    """A frozen environment waits with 'frozen until'; when the freeze is over the sweeper deploys it."""
    now = utcnow()
    start, end = (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"), (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    config(fake_github, f"environments:\n  staging:\n    on: push\n    required_checks: []\n"
                        f"    freeze: [\"{start} - {end} UTC\"]\n")
    sha = f.sha("frozen")
    send(gh_rt, hooks, "push", f.push(after=sha))
    assert posted_deployments(fake_github) == []
    with gh_rt.engine.connect() as conn:
        cand = conn.execute(select(Candidate)).one()
    assert cand.state == "waiting" and "frozen until" in cand.reason and cand.not_before is not None
    with gh_rt.engine.begin() as conn:  # the window has passed
        conn.execute(update(Candidate).values(not_before=utcnow() - timedelta(seconds=1), extra={"freeze": []}))
    assert sweep_once(gh_rt).started == 1
    drain(gh_rt)
    assert [b["ref"] for b in posted_deployments(fake_github)] == [sha]


def test_idle_preview_is_torn_down_after_its_ttl(gh_rt, hooks, fake_github) -> None:
    """The sweeper destroys previews idle for longer than previews.ttl."""
    config(fake_github, PREVIEWS.replace("required_checks: []", "required_checks: []\n  ttl: 1h"))
    send(gh_rt, hooks, "pull_request", f.pull_request("opened"))
    with gh_rt.engine.begin() as conn:
        conn.execute(update(Environment).where(Environment.name == "pr-7")
                     .values(updated_at=utcnow() - timedelta(hours=2)))
    assert sweep_once(gh_rt).started == 1
    drain(gh_rt)
    dep = fake_github.deployments[REPO][0]["id"]
    assert fake_github.deployment_statuses[dep][-1]["state"] == "inactive"
    assert sweep_once(gh_rt).started == 0  # claimed once


def test_workflow_dispatch_provisioner_is_followed_to_success(gh_rt, hooks, fake_github) -> None:
    """The workflow runs once with its inputs; its run's progress becomes the deployment's statuses."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: []\n"
                        "provisioner:\n  kind: workflow_dispatch\n  workflow: deploy.yml\n")
    sha = f.sha("wd")
    send(gh_rt, hooks, "push", f.push(after=sha))
    (dispatch,) = fake_github.calls_to("POST", r"/actions/workflows/deploy.yml/dispatches$")
    gh_dep = fake_github.deployments[REPO][0]["id"]
    assert dispatch.json == {"ref": "main", "inputs": {"environment": "staging", "ref": "main", "sha": sha,
                                                        "action": "deploy", "deployment_id": str(gh_dep)}}
    send(gh_rt, hooks, "workflow_run", f.workflow_run("in_progress", sha, status="in_progress", conclusion=None, run_id=77))
    send(gh_rt, hooks, "workflow_run", f.workflow_run("completed", sha, run_id=77))
    posted = [c.json for c in fake_github.calls_to("POST", rf"/deployments/{gh_dep}/statuses$")]
    assert [p["state"] for p in posted] == ["queued", "in_progress", "success"]
    assert posted[-1]["log_url"] == f"https://github.com/{REPO}/actions/runs/77"


def test_github_failures_retry_later_and_deploy_exactly_once(gh_rt, hooks, fake_github) -> None:
    """500, a secondary rate limit and a dropped answer: retried by re-queueing, never slept on; one deployment."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: []\n")
    fake_github.fail("POST", r"/deployments$", 500)
    fake_github.fail_secondary_rate_limit("POST", r"/deployments$", retry_after=30)
    fake_github.fail("POST", r"/deployments$", drop=True)
    resp = hooks.post("push", f.push(after=f.sha("flaky")))
    guid = resp.get_json()["delivery"]
    waits = []
    for _ in range(4):
        drain(gh_rt)
        with gh_rt.engine.connect() as conn:
            row = conn.execute(select(Delivery).where(Delivery.guid == guid)).one()
        if row.state == "done":
            break
        assert row.state == "queued" and row.next_attempt_at is not None
        waits.append(round((row.next_attempt_at - utcnow()).total_seconds()))
        with gh_rt.engine.begin() as conn:
            conn.execute(update(Delivery).values(next_attempt_at=utcnow()))
        sweep_once(gh_rt)
    assert row.state == "done" and row.attempts == 4
    assert 25 <= waits[1] <= 30  # the rate limit's own Retry-After
    assert len(fake_github.deployments[REPO]) == 1


def _run_until_settled(rt, guid: str, rounds: int = 6, pause: float = 0.0) -> Delivery:  # noqa: ANN001
    """Run the delivery, making each scheduled retry due after `pause` s (instead of its backoff), until it
    ends; returns its row."""
    for _ in range(rounds):
        drain(rt)
        with rt.engine.connect() as conn:
            row = conn.execute(select(Delivery).where(Delivery.guid == guid)).one()
        if row.state in ("done", "failed", "ignored"):
            return row
        time.sleep(pause)
        with rt.engine.begin() as conn:
            conn.execute(update(Delivery).values(next_attempt_at=utcnow()))
        sweep_once(rt)
    return row


# The slow answer (3 s, over the 2 s timeout) is created by the fake when its pause ends: the retry waits for
# that (as the real backoff, 5 s, would), so it must find the deployment by its key instead of making a second
# one, and the fake's late creation cannot land in the next test.
@pytest.mark.parametrize("inject,final,attempts,pause", [
    (lambda fg: fg.fail("POST", r"/deployments$", 422, body={"message": "No ref found for: gone"}), "failed", 1, 0),
    (lambda fg: fg.fail("POST", r"/deployments$", 404, body={"message": "Not Found"}), "failed", 1, 0),
    (lambda fg: fg.fail_primary_rate_limit("POST", r"/deployments$", reset_in=90), "done", 2, 0),
    (lambda fg: fg.fail("POST", r"/deployments$", delay=3.0), "done", 2, 1.5),
    (lambda fg: fg.fail("POST", r"/deployments$", 502, times=2), "done", 3, 0),
    (lambda fg: fg.suspend_installation(f.INSTALLATION_ID), "failed", 1, 0),
], ids=["422", "404", "primary-rate-limit", "slow", "502-twice", "suspended"])
def test_each_injected_failure_ends_right(gh_rt, hooks, fake_github, inject, final: str, attempts: int,  # noqa: ANN001
                                          pause: float) -> None:
    """4xx that cannot succeed and a suspended installation end at once; transient ones retry, then deploy once."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: []\n")
    inject(fake_github)
    guid = hooks.post("push", f.push(after=f.sha("inject"))).get_json()["delivery"]
    row = _run_until_settled(gh_rt, guid, pause=pause)
    assert (row.state, row.attempts) == (final, attempts), row.error
    assert len(fake_github.deployments.get(REPO, [])) == (1 if final == "done" else 0)
    if final == "failed":
        assert row.error and ("GitHub answered" in row.error or "suspended" in row.error)


def test_stale_pull_request_event_changes_nothing(gh_rt, hooks, fake_github) -> None:
    """A synchronize for a head that GitHub no longer has is ignored: no deployment of the old head."""
    config(fake_github, PREVIEWS)
    old, new = f.sha("stale-old"), f.sha("stale-new")
    fake_github.set_pull(REPO, 7, new)
    guid = hooks.post("pull_request", f.pull_request("synchronize", head_sha=old)).get_json()["delivery"]
    drain(gh_rt)
    assert posted_deployments(fake_github) == []
    with gh_rt.engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.guid == guid)).one()
    assert row.state == "ignored" and "stale" in row.note


def test_late_event_after_close_leaves_no_orphan(gh_rt, hooks, fake_github) -> None:
    """An 'opened' that arrives after the PR was closed tears down instead of deploying a preview."""
    config(fake_github, PREVIEWS)
    head = f.sha("late")
    fake_github.set_pull(REPO, 7, head, state="closed")
    send(gh_rt, hooks, "pull_request", f.pull_request("opened", head_sha=head))
    assert posted_deployments(fake_github) == []
    assert fake_github.calls_to("DELETE", r"/environments/pr-7$")


def test_release_deploys_production_by_its_tag(gh_rt, hooks, fake_github) -> None:
    """A published release deploys the tagged commit to production (built-in defaults, gate '*')."""
    sha = f.sha("release")
    fake_github.set_branch(REPO, "v1.0.0", sha)
    fake_github.add_check_run(REPO, sha, "build")
    send(gh_rt, hooks, "release", f.release("released", "v1.0.0"))
    (body,) = posted_deployments(fake_github)
    assert (body["environment"], body["ref"], body["production_environment"]) == ("production", sha, True)
    send(gh_rt, hooks, "release", f.release("published", "v1.0.0"))  # the same release's other action
    assert len(posted_deployments(fake_github)) == 1


def test_prereleases_deploy_only_where_configured(gh_rt, hooks, fake_github) -> None:
    """prereleases: true lets a pre-release deploy; the built-in production does not take them."""
    config(fake_github, "environments:\n  beta:\n    on: release\n    prereleases: true\n    required_checks: []\n"
                        "  production:\n    on: release\n    required_checks: []\n")
    sha = f.sha("rc")
    fake_github.set_branch(REPO, "v2.0.0-rc.1", sha)
    send(gh_rt, hooks, "release", f.release("published", "v2.0.0-rc.1", prerelease=True))
    assert [b["environment"] for b in posted_deployments(fake_github)] == ["beta"]


def test_tag_push_deploys_environments_that_follow_tags(gh_rt, hooks, fake_github) -> None:
    """on: tag with a glob: a matching tag push deploys its commit with the tag as version."""
    config(fake_github, "environments:\n  demo:\n    on: tag\n    tags: \"demo-*\"\n    required_checks: []\n")
    sha = f.sha("tag")
    send(gh_rt, hooks, "push", f.push("refs/tags/demo-42", after=sha))
    send(gh_rt, hooks, "push", f.push("refs/tags/v9", after=f.sha("other-tag")))
    (body,) = posted_deployments(fake_github)
    assert (body["environment"], body["ref"]) == ("demo", sha)
    assert body["payload"]["slipway"]["version"] == "demo-42"


def test_commit_status_contexts_gate_through_status_events(gh_rt, hooks, fake_github) -> None:
    """A required commit status context (e.g. an external CI) gates until its status event says success."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: [\"ci/jenkins\"]\n")
    sha = f.sha("jenkins")
    fake_github.add_commit_status(REPO, sha, "ci/jenkins", "pending")
    send(gh_rt, hooks, "push", f.push(after=sha))
    assert posted_deployments(fake_github) == []
    fake_github.add_commit_status(REPO, sha, "ci/jenkins", "success")
    send(gh_rt, hooks, "status", f.status(sha, "ci/jenkins", "success"))
    assert [b["ref"] for b in posted_deployments(fake_github)] == [sha]
    # Slipway's own status events are not news: they re-evaluate nothing.
    resp = hooks.post("status", f.status(sha, "slipway/staging", "success"))
    drain(gh_rt)
    with gh_rt.engine.connect() as conn:
        assert conn.execute(select(Delivery.state).where(Delivery.guid == resp.get_json()["delivery"])).scalar() == "ignored"


def test_environment_following_a_workflow_run(gh_rt, hooks, fake_github) -> None:
    """on: workflow_run deploys when the named workflow succeeds on the branch; PR runs never deploy."""
    config(fake_github, "environments:\n  staging:\n    on: workflow_run\n    workflow: Build\n    required_checks: []\n")
    sha = f.sha("built")
    send(gh_rt, hooks, "workflow_run", f.workflow_run("completed", f.sha("pr-run"), name="Build",
                                                       path=".github/workflows/build.yml", run_event="pull_request"))
    send(gh_rt, hooks, "workflow_run", f.workflow_run("completed", sha, name="Build",
                                                       path=".github/workflows/build.yml", run_event="push"))
    assert [(b["environment"], b["ref"]) for b in posted_deployments(fake_github)] == [("staging", sha)]


def test_ci_gated_flow_makes_exactly_these_calls(gh_rt, hooks, fake_github) -> None:
    """Every call to GitHub for one gated push, in order: nothing more, nothing twice."""
    config(fake_github, "environments:\n  staging:\n    on: push\n    required_checks: [test]\n")
    sha = f.sha("exact")
    fake_github.reset_calls()
    send(gh_rt, hooks, "push", f.push(after=sha))
    fake_github.add_check_run(REPO, sha, "test")
    send(gh_rt, hooks, "check_run", f.check_run(sha, "test"))
    repo = f"/repos/{REPO}"
    assert [(c.method, c.path) for c in fake_github.calls] == [
        ("POST", f"/app/installations/{f.INSTALLATION_ID}/access_tokens"),
        ("GET", f"{repo}/contents/.github/slipway.yml"),
        ("GET", f"{repo}/commits/{sha}/check-runs"),
        ("GET", f"{repo}/commits/{sha}/status"),
        ("GET", f"{repo}/actions/runs"),
        ("POST", f"{repo}/statuses/{sha}"),                       # slipway/staging: waiting for: test
        ("GET", f"{repo}/commits/{sha}/check-runs"),
        ("GET", f"{repo}/commits/{sha}/status"),
        ("GET", f"{repo}/actions/runs"),
        ("POST", f"{repo}/statuses/{sha}"),                       # slipway/staging: deploying
        # No look-up first: the local row for our key is new, so no earlier attempt can have made it
        # (test_github_faults and test_github_client cover the retries, which do look).
        ("POST", f"{repo}/deployments"),
        ("POST", f"{repo}/deployments/{fake_github.deployments[REPO][0]['id']}/statuses"),  # queued
    ]


def test_a_suspended_installation_is_not_acted_on(gh_rt, hooks, fake_github) -> None:
    """After `installation.suspend` a push is recorded as ignored, with no call to GitHub for it."""
    hooks.post("installation", f.installation("created"))
    drain(gh_rt)
    hooks.post("installation", f.installation("suspend"))
    drain(gh_rt)
    fake_github.reset_calls()
    resp = hooks.post("push", f.push(after=f.sha("suspended")))
    drain(gh_rt)
    with gh_rt.engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.guid == resp.get_json()["delivery"])).one()
    assert (row.state, row.note) == ("ignored", f"installation {f.INSTALLATION_ID} is suspended or deleted")
    assert fake_github.calls == []
