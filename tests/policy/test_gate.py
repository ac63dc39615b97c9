"""The CI gate over check runs, workflow runs and commit statuses."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.policy.gate import Check, GateResult, commit_status_for, evaluate_gate, status_context


def run(name, conclusion=None, status="completed", **extra):
    """Build a check run; no conclusion means it is still running."""
    return Check(name, "check_run", status if conclusion else "in_progress", conclusion, **extra)


def status(context, state, **extra):
    """Build a commit status."""
    return Check.from_commit_status(context, state, **extra)


GATE_CASES = [
    pytest.param([], [], "deploy", [], [], id="nothing-required"),
    pytest.param([run("test", "success"), run("lint", "success")], ["test", "lint"], "deploy", [], [], id="all-passed"),
    pytest.param([run("test", "neutral"), run("lint", "skipped")], ["test", "lint"], "deploy", [], [], id="neutral-and-skipped-pass"),
    pytest.param([run("test", "success")], ["test", "lint"], "wait", ["lint"], [], id="missing-waits"),
    pytest.param([run("test"), run("lint")], ["test", "lint"], "wait", ["test", "lint"], [], id="running-waits"),
    pytest.param([run("test", status="queued")], ["test"], "wait", ["test"], [], id="queued-waits"),
    pytest.param([status("ci/jenkins", "pending")], ["ci/jenkins"], "wait", ["ci/jenkins"], [], id="pending-status-waits"),
    pytest.param([run("test", "stale")], ["test"], "wait", ["test"], [], id="stale-waits-for-rerun"),
    pytest.param([run("test", "failure")], ["test"], "block", [], ["test"], id="failure-blocks"),
    pytest.param([run("test", "cancelled")], ["test"], "block", [], ["test"], id="cancelled-blocks"),
    pytest.param([run("test", "timed_out")], ["test"], "block", [], ["test"], id="timed-out-blocks"),
    pytest.param([run("test", "action_required")], ["test"], "block", [], ["test"], id="action-required-blocks"),
    pytest.param([run("test", "startup_failure")], ["test"], "block", [], ["test"], id="startup-failure-blocks"),
    pytest.param([status("ci/jenkins", "error")], ["ci/jenkins"], "block", [], ["ci/jenkins"], id="status-error-blocks"),
    pytest.param([run("test", "mystery")], ["test"], "block", [], ["test"], id="unknown-conclusion-fails-closed"),
    pytest.param([run("test", "failure"), run("lint")], ["test", "lint"], "block", ["lint"], ["test"], id="failure-beats-waiting"),
    pytest.param([run("lint", "failure")], ["test"], "wait", ["test"], [], id="unrequired-failure-ignored"),
    pytest.param([], ["*"], "wait", [], [], id="star-with-no-checks-waits"),
    pytest.param([run("a", "success"), status("ci", "success")], ["*"], "deploy", [], [], id="star-all-passed"),
    pytest.param([run("a", "success"), run("b")], ["*"], "wait", ["b"], [], id="star-waits-for-running"),
    pytest.param([run("a", "success"), status("ci", "failure")], ["*"], "block", [], ["ci"], id="star-blocks-on-any-failure"),
    pytest.param([run("Test", "success")], ["test"], "deploy", [], [], id="names-case-insensitive"),
    pytest.param([run("test (ubuntu)", "success"), run("test (macos)")], ["test (*)"], "wait", ["test (macos)"], [], id="glob-entry"),
    pytest.param([run("build [linux]", "success")], ["build [linux]"], "deploy", [], [], id="brackets-are-literal"),
    pytest.param(
        [run("Test", "failure"), status("test", "failure")], ["test"], "block", [], ["Test"], id="same-name-two-kinds-reported-once"
    ),
]


@pytest.mark.parametrize(("checks", "required", "verdict", "waiting", "failed"), GATE_CASES)
def test_gate(checks, required, verdict, waiting, failed):
    """The gate deploys, waits or blocks, and names the checks behind the verdict."""
    result = evaluate_gate(checks, required)
    assert (result.verdict, result.waiting_for, result.failed) == (verdict, waiting, failed)


RERUN_CASES = [
    pytest.param([run("test", "failure"), run("test", "success")], "deploy", id="later-in-input-wins"),
    pytest.param([run("test", "success"), run("test", "failure")], "block", id="later-failure-wins"),
    pytest.param([run("test", "success", id=9), run("test", "failure", id=3)], "deploy", id="higher-id-wins-over-order"),
    pytest.param([run("test", "failure", id=3), run("test")], "block", id="id-beats-no-id"),
    pytest.param(
        [Check("test", "workflow_run", "completed", "success", id=5, attempt=2), Check("test", "workflow_run", "completed", "failure", id=5)],
        "deploy",
        id="workflow-rerun-attempt-wins",
    ),
    pytest.param([run("test", "success", id=3), run("test", id=4)], "wait", id="rerun-in-progress-waits"),
    pytest.param([status("test", "failure", id=1), status("TEST", "success", id=2)], "deploy", id="status-rerun-any-case"),
]


@pytest.mark.parametrize(("checks", "verdict"), RERUN_CASES)
def test_latest_result_per_name_wins(checks, verdict):
    """When a check ran again, only its latest result counts."""
    assert evaluate_gate(checks, ["test"]).verdict == verdict


OWN_CASES = [
    pytest.param([status("slipway/staging", "pending")], ["*"], {}, "wait", id="own-status-not-counted-for-star"),
    pytest.param([status("slipway/staging", "failure"), run("test", "success")], ["*"], {}, "deploy", id="own-failure-ignored"),
    pytest.param(
        [run("Slipway gate", status="in_progress", app_slug="slipway-app"), run("test", "success")],
        ["*"],
        {"own_app_slug": "slipway-app"},
        "deploy",
        id="own-check-run-by-app-slug",
    ),
    pytest.param([run("test", "success")], ["test", "slipway/config"], {}, "deploy", id="own-context-never-required"),
    pytest.param(
        [run("deploy-preview", status="in_progress"), run("test", "success")],
        ["*"],
        {"own_contexts": ("slipway/*", "deploy-preview")},
        "deploy",
        id="extra-own-contexts",
    ),
]


@pytest.mark.parametrize(("checks", "required", "options", "verdict"), OWN_CASES)
def test_slipway_never_waits_for_itself(checks, required, options, verdict):
    """Slipway's own statuses and check runs are left out of the gate."""
    assert evaluate_gate(checks, required, **options).verdict == verdict


@pytest.mark.parametrize(
    ("checks", "required", "reason"),
    [
        ([], ["*"], "no checks on the commit yet"),
        ([run("test"), run("lint")], ["test", "lint"], "waiting for: test, lint"),
        ([run("test", "timed_out")], ["test"], "required check test: timed_out"),
        ([run("test", "success")], ["test"], "required checks passed: test"),
        ([], [], "no required checks"),
    ],
    ids=["no-checks", "waiting", "failed", "passed", "none-required"],
)
def test_reasons_say_why(checks, required, reason):
    """Every verdict carries a reason a person can act on."""
    assert any(reason in text for text in evaluate_gate(checks, required).reasons)


@pytest.mark.parametrize(
    ("result", "sha", "expected"),
    [
        (GateResult("wait", ["waiting for: test, lint"], ["test", "lint"]), None, ("pending", "waiting for: test, lint")),
        (GateResult("wait", ["no checks on the commit yet"]), None, ("pending", "waiting: no checks on the commit yet")),
        (GateResult("block", ["required check test: failure"], [], ["test"]), None, ("failure", "blocked: test failed")),
        (GateResult("deploy", ["ok"]), "abc1234def", ("success", "deploying abc1234 to staging")),
        (GateResult("deploy", ["ok"]), None, ("success", "checks passed, deploying to staging")),
    ],
    ids=["waiting", "no-checks", "blocked", "deploying", "deploying-without-sha"],
)
def test_commit_status_for(result, sha, expected):
    """The slipway/<environment> status says what the gate waits for or why it blocked."""
    assert commit_status_for(result, "staging", sha=sha) == expected


def test_commit_status_description_fits_140_characters():
    """GitHub refuses longer descriptions, so long lists are cut."""
    names = [f"a-rather-long-check-name-{n}" for n in range(30)]
    state, description = commit_status_for(GateResult("wait", [], names), "staging")
    assert state == "pending" and len(description) <= 140


def test_status_context():
    """The context of an environment's status is slipway/<environment>."""
    assert status_context("pr-4") == "slipway/pr-4"


NAMES = st.sampled_from(["test", "lint", "build", "Test", "slipway/staging"])
CONCLUSIONS = st.sampled_from(
    [None, "success", "neutral", "skipped", "failure", "cancelled", "timed_out", "action_required", "error", "stale"]
)
CHECKS = st.lists(
    st.builds(
        Check,
        name=NAMES,
        kind=st.sampled_from(["check_run", "workflow_run", "status"]),
        status=st.sampled_from(["queued", "in_progress", "completed", "pending"]),
        conclusion=CONCLUSIONS,
        id=st.one_of(st.none(), st.integers(0, 5)),
        attempt=st.integers(1, 3),
    ),
    max_size=8,
)
REQUIRED = st.lists(st.sampled_from(["test", "lint", "build", "*", "TEST"]), max_size=4)


def _latest_outcomes(checks, name):
    """Outcomes of the latest check per kind among those named `name` (the gate's re-run rule)."""
    outcomes = []
    for kind in ("check_run", "workflow_run", "status"):
        same = [(i, c) for i, c in enumerate(checks) if c.kind == kind and c.name.lower() == name]
        if same:
            _i, latest = max(same, key=lambda item: (item[1].id if item[1].id is not None else -1, item[1].attempt, item[0]))
            outcomes.append(latest.outcome)
    return outcomes


@given(checks=CHECKS, required=REQUIRED)
def test_gate_never_deploys_while_a_required_check_failed_or_is_missing(checks, required):
    """Property: deploy only when every required name has only passed latest results."""
    result = evaluate_gate(checks, required)
    names = {c.name.lower() for c in checks if not c.name.startswith("slipway/")} if "*" in required else set()
    names |= {r.lower() for r in required if r != "*"}
    outcomes = {name: _latest_outcomes(checks, name) for name in names}
    if result.verdict == "deploy":
        assert all(outcomes[n] and set(outcomes[n]) == {"passed"} for n in names)
        assert "*" not in required or names
    if any("failed" in found for found in outcomes.values()):
        assert result.verdict == "block"
    elif any(not found or "pending" in found for found in outcomes.values()) or ("*" in required and not names):
        assert result.verdict == "wait"
