"""Which environments an event makes a deploy candidate for."""

import pytest

from workers.policy.config import BUILTIN_DEFAULTS, parse_config
from workers.policy.decisions import (
    ReleaseFacts,
    WorkflowRunFacts,
    branch_environment_for,
    candidate_for_push,
    candidate_for_release,
    candidate_for_tag,
    candidate_for_workflow_run,
)

CFG = parse_config(
    """\
environments:
  staging:
    on: push
  develop:
    on: push
    branch: develop
    required_checks: [test]
  hotfix:
    on: push
    branch: "hotfix/*"
  production:
    on: release
    freeze: ["Fri 16:00 - Mon 08:00 Europe/Berlin"]
    rollback_on_failure: true
  beta:
    on: release
    prereleases: true
    tags: "v*"
  artifacts:
    on: workflow_run
    workflow: Build
  nightly:
    on: tag
    tags: "nightly-*"
branches:
  - pattern: "feature/*"
    environment: "branch-{branch}"
  - pattern: "*"
    environment: "any-{branch}"
"""
)


def names(candidates):
    """Environment names of candidates, in order."""
    return [environment for environment, _reason in candidates]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/heads/main", ["staging", "any-main"]),
        ("refs/heads/develop", ["develop", "any-develop"]),
        ("refs/heads/hotfix/login", ["hotfix", "any-hotfix-login"]),
        ("refs/heads/feature/x", ["branch-feature-x"]),
        ("main", ["staging", "any-main"]),
        ("refs/tags/v1.0", []),
        ("refs/pull/1/head", []),
    ],
    ids=["default-branch", "named-branch", "branch-glob", "branch-environment", "short-ref", "tag-push", "other-ref"],
)
def test_candidate_for_push(ref, expected):
    """A push makes candidates for environments that follow the branch, and its branch environment."""
    assert names(candidate_for_push(ref, "main", CFG)) == expected


def test_push_candidate_carries_its_gate():
    """A candidate brings the environment's required checks, freeze and rollback setting."""
    (develop,) = [c for c in candidate_for_push("refs/heads/develop", "main", CFG) if c.environment == "develop"]
    assert (develop.trigger, develop.required_checks, develop.reason) == ("push", ("test",), "push to develop")


def test_builtin_defaults_deploy_default_branch_to_staging():
    """Without any file, a push to the default branch is a staging candidate gated on every check."""
    (candidate,) = candidate_for_push("refs/heads/trunk", "trunk", BUILTIN_DEFAULTS)
    assert (candidate.environment, candidate.required_checks) == ("staging", ("*",))
    assert candidate_for_push("refs/heads/other", "trunk", BUILTIN_DEFAULTS) == []


@pytest.mark.parametrize(
    ("action", "release", "expected"),
    [
        ("released", ReleaseFacts("v1.0"), ["production", "beta"]),
        ("published", ReleaseFacts("v1.0"), []),
        ("published", ReleaseFacts("v1.1-rc1", prerelease=True), ["beta"]),
        ("prereleased", ReleaseFacts("v1.1-rc1", prerelease=True), []),
        ("released", ReleaseFacts("2.0"), ["production"]),
        ("released", ReleaseFacts("v1.0", draft=True), []),
        ("created", ReleaseFacts("v1.0"), []),
        ("deleted", ReleaseFacts("v1.0"), []),
    ],
    ids=["release", "published-counted-once", "prerelease", "prereleased-counted-once", "tag-filter", "draft", "created", "deleted"],
)
def test_candidate_for_release(action, release, expected):
    """Full releases deploy everywhere that follows releases; pre-releases only where allowed."""
    assert names(candidate_for_release(action, release, CFG)) == expected


def test_release_candidate_carries_freeze_and_rollback():
    """The production candidate brings its freeze windows and rollback setting."""
    (production, _beta) = candidate_for_release("released", ReleaseFacts("v1.0"), CFG)
    assert production.freeze[0].text == "Fri 16:00 - Mon 08:00 Europe/Berlin"
    assert production.rollback_on_failure is True


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("nightly-2026-06-01", ["nightly"]), ("refs/tags/nightly-1", ["nightly"]), ("v1.0", [])],
    ids=["matching-tag", "full-ref", "other-tag"],
)
def test_candidate_for_tag(ref, expected):
    """A created tag is a candidate for environments with on: tag whose glob matches."""
    assert names(candidate_for_tag(ref, CFG)) == expected


BUILD = WorkflowRunFacts(name="Build", conclusion="success", head_branch="main", path=".github/workflows/build.yml")


@pytest.mark.parametrize(
    ("action", "run", "expected"),
    [
        ("completed", BUILD, ["artifacts"]),
        ("completed", WorkflowRunFacts("CI", "success", "main", path=".github/workflows/Build"), ["artifacts"]),
        ("completed", WorkflowRunFacts("build", "success", "main"), ["artifacts"]),
        ("in_progress", BUILD, []),
        ("completed", WorkflowRunFacts("Build", "failure", "main"), []),
        ("completed", WorkflowRunFacts("Build", "success", "develop"), []),
        ("completed", WorkflowRunFacts("Lint", "success", "main"), []),
        ("completed", WorkflowRunFacts("Build", "success", "main", event="pull_request"), []),
        ("completed", WorkflowRunFacts("Build", "success", "main", from_fork=True), []),
        ("completed", WorkflowRunFacts("Build", "success", None), []),
    ],
    ids=["success", "by-file-name", "name-any-case", "not-completed", "failed", "other-branch", "other-workflow", "pr-run", "fork", "no-branch"],
)
def test_candidate_for_workflow_run(action, run, expected):
    """Only a successful run of the named workflow on the followed branch deploys."""
    assert names(candidate_for_workflow_run(action, run, "main", CFG)) == expected


@pytest.mark.parametrize(
    ("ref", "ref_type", "expected"),
    [
        ("feature/new-ui", "branch", "branch-feature-new-ui"),
        ("refs/heads/feature/a", "branch", "branch-feature-a"),
        ("fix", "branch", "any-fix"),
        ("v1.0", "tag", None),
    ],
    ids=["first-pattern-wins", "full-ref", "catch-all", "tag"],
)
def test_branch_environment_for(ref, ref_type, expected):
    """Created or deleted branches map to their branch environment; tags do not."""
    candidate = branch_environment_for(ref, ref_type, CFG)
    assert (candidate.environment if candidate else None) == expected


def test_branch_environment_none_without_patterns():
    """Without `branches:` no branch gets an environment."""
    assert branch_environment_for("feature/x", "branch", BUILTIN_DEFAULTS) is None


def test_branch_environment_can_use_repo_name():
    """{repo} in a branch template is the repository name without its owner."""
    cfg = parse_config("branches:\n  - pattern: '*'\n    environment: '{repo}-{branch}'\n")
    assert branch_environment_for("x/y", "branch", cfg, repo="octo/shop").environment == "shop-x-y"
