"""Verdicts on candidates, rollback targets and deployment protection rule answers."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from workers.policy.config import EnvironmentConfig
from workers.policy.decisions import (
    Candidate,
    Decision,
    DeploymentRecord,
    commit_status_for_decision,
    decide_candidate,
    decide_protection_rule,
    decide_rollback,
)
from workers.policy.gate import GateResult

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)
FROZEN_UNTIL = datetime(2026, 3, 30, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
CANDIDATE = Candidate("production", "release v1.0 released", "release")
PASS = GateResult("deploy", ["required checks passed: test"])
WAIT = GateResult("wait", ["waiting for: test, lint"], ["test", "lint"])
BLOCK = GateResult("block", ["required check test: failure"], [], ["test"])

VERDICT_CASES = [
    pytest.param(PASS, False, None, False, "deploy", "release v1.0 released", id="gate-passed-deploys"),
    pytest.param(WAIT, False, None, False, "wait", "waiting for: test, lint", id="gate-waits"),
    pytest.param(BLOCK, False, None, False, "block", "required check test: failure", id="gate-blocks"),
    pytest.param(PASS, True, None, False, "superseded", "newer commit", id="newer-supersedes-ready"),
    pytest.param(WAIT, True, None, False, "superseded", "newer commit", id="newer-supersedes-waiting"),
    pytest.param(BLOCK, True, None, False, "superseded", "newer commit", id="newer-supersedes-blocked"),
    pytest.param(PASS, True, FROZEN_UNTIL, False, "superseded", "newer commit", id="newer-supersedes-frozen"),
    pytest.param(PASS, False, FROZEN_UNTIL, False, "wait", "frozen until 2026-03-30 08:00 CEST", id="freeze-delays"),
    pytest.param(WAIT, False, FROZEN_UNTIL, False, "wait", "frozen until", id="freeze-and-gate-wait"),
    pytest.param(BLOCK, False, FROZEN_UNTIL, False, "block", "failure", id="failure-blocks-during-freeze"),
    pytest.param(PASS, False, NOW - timedelta(minutes=1), False, "deploy", "release", id="freeze-over-deploys"),
    pytest.param(PASS, False, None, True, "skip", "already deployed to production", id="already-deployed"),
]


@pytest.mark.parametrize(("gate", "newer", "until", "deployed", "verdict", "reason"), VERDICT_CASES)
def test_decide_candidate(gate, newer, until, deployed, verdict, reason):
    """Supersede beats everything, a failure blocks, a freeze or the gate waits, else deploy."""
    decision = decide_candidate(
        CANDIDATE, gate, newer_candidate_exists=newer, freeze_until=until, now=NOW, already_deployed=deployed
    )
    assert decision.verdict == verdict
    assert any(reason in text for text in decision.reasons), decision.reasons


def test_frozen_wait_says_when_to_look_again():
    """A frozen candidate carries the freeze end, so the sweeper can re-check it then."""
    decision = decide_candidate(CANDIDATE, PASS, newer_candidate_exists=False, freeze_until=FROZEN_UNTIL, now=NOW)
    assert decision.not_before == FROZEN_UNTIL
    gate_wait = decide_candidate(CANDIDATE, WAIT, newer_candidate_exists=False, freeze_until=None, now=NOW)
    assert gate_wait.not_before is None


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (Decision("deploy", ["x"], gate=PASS), ("success", "deploying abc1234 to production")),
        (Decision("wait", WAIT.reasons, gate=WAIT), ("pending", "waiting for: test, lint")),
        (Decision("block", BLOCK.reasons, gate=BLOCK), ("failure", "blocked: test failed")),
        (Decision("wait", ["frozen until 2026-03-30 08:00 CEST"], FROZEN_UNTIL, PASS), ("pending", "frozen until 2026-03-30 08:00 CEST")),
        (Decision("superseded", ["superseded: a newer commit"], gate=WAIT), ("success", "superseded: a newer commit")),
        (Decision("skip", ["skipped: already deployed"]), ("success", "skipped: already deployed")),
    ],
    ids=["deploy", "wait", "block", "frozen", "superseded", "skip"],
)
def test_commit_status_for_decision(decision, expected):
    """Each verdict becomes a slipway/<environment> status a commit author understands."""
    assert commit_status_for_decision(decision, "production", sha="abc1234ffff") == expected


ROLLBACK_ON = EnvironmentConfig(on="release", rollback_on_failure=True)
ROLLBACK_OFF = EnvironmentConfig(on="release")
HISTORY = [
    DeploymentRecord(1, "aaa", succeeded=True),
    DeploymentRecord(2, "bbb", succeeded=True),  # now `inactive`, still a good target
    DeploymentRecord(3, "ccc", succeeded=False),
    DeploymentRecord(4, "ddd", succeeded=False),  # the one that failed
]

ROLLBACK_CASES = [
    pytest.param("failure", ROLLBACK_ON, HISTORY, 4, "ddd", False, "bbb", id="last-good-before-failure"),
    pytest.param("error", ROLLBACK_ON, HISTORY, 4, "ddd", False, "bbb", id="error-also-rolls-back"),
    pytest.param("failure", ROLLBACK_OFF, HISTORY, 4, "ddd", False, None, id="rollback-off"),
    pytest.param("success", ROLLBACK_ON, HISTORY, 4, "ddd", False, None, id="success-no-rollback"),
    pytest.param("inactive", ROLLBACK_ON, HISTORY, 4, "ddd", False, None, id="inactive-no-rollback"),
    pytest.param("failure", ROLLBACK_ON, HISTORY, 4, "ddd", True, None, id="failed-rollback-does-not-cascade"),
    pytest.param(
        "failure",
        ROLLBACK_ON,
        [*HISTORY[:3], DeploymentRecord(4, "bbb", succeeded=False)],
        4,
        "bbb",
        False,
        "aaa",
        id="skips-the-failed-commit",
    ),
    pytest.param("failure", ROLLBACK_ON, HISTORY[3:], 4, "ddd", False, None, id="nothing-succeeded-before"),
    pytest.param(
        "failure", ROLLBACK_ON, [*HISTORY, DeploymentRecord(5, "eee", succeeded=True)], 4, "ddd", False, None, id="newer-deploy-exists"
    ),
    pytest.param(
        "failure", ROLLBACK_ON, list(reversed(HISTORY)), 4, "ddd", False, "bbb", id="history-order-does-not-matter"
    ),
]


@pytest.mark.parametrize(
    ("state", "env", "history", "failed_id", "failed_sha", "was_rollback", "target"), ROLLBACK_CASES
)
def test_decide_rollback(state, env, history, failed_id, failed_sha, was_rollback, target):
    """rollback_on_failure redeploys the newest earlier successful commit that is not the failed one."""
    got = decide_rollback(
        state, env, history, failed_id=failed_id, failed_sha=failed_sha, failed_was_rollback=was_rollback
    )
    assert got == target


@pytest.mark.parametrize(
    ("gate", "error", "state", "fragment"),
    [
        (PASS, None, "approved", "required checks passed: test"),
        (BLOCK, None, "rejected", "required check test: failure"),
        (WAIT, None, "rejected", "waiting for: test, lint"),
        (None, "GitHub API timed out", "rejected", "could not evaluate the gate: GitHub API timed out"),
        (PASS, "database unreachable", "rejected", "database unreachable"),
        (None, None, "rejected", "no gate result"),
    ],
    ids=["passed", "blocked", "waiting", "error", "error-wins-over-pass", "no-gate"],
)
def test_decide_protection_rule(gate, error, state, fragment):
    """GitHub always gets an answer; anything but a passed gate (or an error) rejects with the reason."""
    got_state, comment = decide_protection_rule(gate, error=error)
    assert got_state == state and fragment in comment and len(comment) <= 1024


def test_protection_comment_is_cut_to_github_limit():
    """Comments longer than GitHub's 1,024 characters are cut."""
    long_gate = GateResult("block", ["x" * 2000], [], ["x"])
    assert len(decide_protection_rule(long_gate)[1]) == 1024


def test_candidate_unpacks_as_environment_and_reason():
    """Handlers may treat a candidate as the pair (environment, reason)."""
    environment, reason = CANDIDATE
    assert (environment, reason) == ("production", "release v1.0 released")
