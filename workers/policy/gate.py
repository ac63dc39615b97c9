"""The CI gate: may a commit be deployed, given the checks reported on it?

Rules:
- Each entry of `required_checks` is a name or a glob (`*`, `?`), matched case-insensitively
  against check-run names, workflow names and status contexts. `"*"` is simply the glob that
  matches every check on the commit.
- An entry is satisfied when at least one check matches it and every matching check passed
  (success, neutral, skipped). A matching check that failed blocks; one still queued, running
  or pending waits; an entry that matches nothing yet waits.
- Re-runs: checks are grouped by (kind, name, case-insensitive) and the latest one counts. The
  latest is the one with the highest `(id, attempt)`; GitHub's check-run and status ids grow
  with every new result and a workflow re-run keeps its id but raises `run_attempt`. Checks
  without an id count as older than those with one, and among equals the later in the input wins,
  so a handler that has no ids passes the checks oldest first.
- Slipway's own statuses (`slipway/*`) and check runs (its app slug) are left out, so the gate
  never waits for itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from workers.policy.text import glob_match, shorten

CheckKind = Literal["check_run", "workflow_run", "status"]
Verdict = Literal["deploy", "wait", "block"]
Outcome = Literal["passed", "failed", "pending"]

PASSED = frozenset({"success", "neutral", "skipped"})
FAILED = frozenset({"failure", "cancelled", "timed_out", "action_required", "error", "startup_failure"})
# `stale` is set by GitHub on a check left incomplete for 14 days: it waits for a re-run.
NOT_FINISHED = frozenset({"queued", "in_progress", "pending", "requested", "waiting", "stale"})
OWN_CONTEXTS = ("slipway/*",)
STATUS_DESCRIPTION_MAX = 140
_NAMES_SHOWN = 10


@dataclass(frozen=True)
class Check:
    """One CI result on a commit: a check run, a workflow run or a commit status."""

    name: str
    kind: CheckKind
    status: str
    conclusion: str | None = None
    app_slug: str | None = None
    id: int | None = None
    attempt: int = 1

    @classmethod
    def from_commit_status(cls, context: str, state: str, *, id: int | None = None) -> Check:
        """Build a Check from a commit status (state pending, success, failure or error)."""
        done = state != "pending"
        return cls(context, "status", "completed" if done else "pending", state if done else None, id=id)

    @property
    def outcome(self) -> Outcome:
        """Classify the check; an unknown conclusion fails, so the gate fails closed."""
        conclusion = (self.conclusion or "").lower()
        if not conclusion or conclusion in NOT_FINISHED or self.status.lower() in NOT_FINISHED:
            return "pending"
        return "passed" if conclusion in PASSED else "failed"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with its reasons and the check names behind it."""

    verdict: Verdict
    reasons: list[str]
    waiting_for: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def evaluate_gate(
    checks: Iterable[Check],
    required: Sequence[str],
    *,
    own_contexts: Sequence[str] = OWN_CONTEXTS,
    own_app_slug: str | None = None,
) -> GateResult:
    """Decide deploy, wait or block for one commit from its checks and the required list."""
    latest = _latest(c for c in checks if not _is_own(c, own_contexts, own_app_slug))
    wanted = [r for r in _unique(required) if not any(glob_match(o, r, ignore_case=True) for o in own_contexts)]
    if not wanted:
        return GateResult("deploy", ["no required checks"])
    failed: list[Check] = []
    pending: list[str] = []
    nothing_yet = False
    for entry in wanted:
        matches = [c for c in latest if glob_match(entry, c.name, ignore_case=True)]
        if not matches and entry == "*":
            nothing_yet = True
        elif not matches:
            pending.append(entry)
        failed += [c for c in matches if c.outcome == "failed"]
        pending += [c.name for c in matches if c.outcome == "pending"]
    return _result(wanted, latest, _unique_checks(failed), _unique(pending), nothing_yet)


def _result(
    wanted: list[str], latest: list[Check], failed: list[Check], pending: list[str], nothing_yet: bool
) -> GateResult:
    """Assemble the verdict and its reasons from what evaluate_gate found."""
    reasons = [f"required check {c.name}: {(c.conclusion or '').lower()}" for c in failed]
    if pending:
        reasons.append(f"waiting for: {_names(pending)}")
    if nothing_yet:
        reasons.append('no checks on the commit yet (required_checks: ["*"] waits for at least one)')
    failed_names = [c.name for c in failed]
    if failed:
        return GateResult("block", reasons, pending, failed_names)
    if reasons:
        return GateResult("wait", reasons, pending, [])
    passed = wanted if "*" not in wanted else [c.name for c in latest]
    return GateResult("deploy", [f"required checks passed: {_names(_unique(passed))}"])


def commit_status_for(result: GateResult, environment: str, *, sha: str | None = None) -> tuple[str, str]:
    """Return (state, description) for the `slipway/<environment>` commit status."""
    if result.verdict == "deploy":
        what = f"deploying {sha[:7]}" if sha else "checks passed, deploying"
        return "success", shorten(f"{what} to {environment}", STATUS_DESCRIPTION_MAX)
    if result.verdict == "block":
        return "failure", shorten(f"blocked: {_names(result.failed)} failed", STATUS_DESCRIPTION_MAX)
    if result.waiting_for:
        return "pending", shorten(f"waiting for: {_names(result.waiting_for)}", STATUS_DESCRIPTION_MAX)
    return "pending", shorten(f"waiting: {result.reasons[0] if result.reasons else 'checks'}", STATUS_DESCRIPTION_MAX)


def status_context(environment: str) -> str:
    """Return the commit status context for an environment."""
    return f"slipway/{environment}"


def _latest(checks: Iterable[Check]) -> list[Check]:
    """Keep the latest check per (kind, name), in order of first appearance."""
    best: dict[tuple[str, str], tuple[tuple[int, int, int], Check]] = {}
    for position, check in enumerate(checks):
        key = (check.kind, check.name.casefold())
        rank = (check.id if check.id is not None else -1, check.attempt, position)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, check)
    return [check for _rank, check in best.values()]


def _is_own(check: Check, own_contexts: Sequence[str], own_app_slug: str | None) -> bool:
    """Tell whether Slipway itself reported this check."""
    if own_app_slug and (check.app_slug or "").casefold() == own_app_slug.casefold():
        return True
    return any(glob_match(pattern, check.name, ignore_case=True) for pattern in own_contexts)


def _unique(names: Iterable[str]) -> list[str]:
    """Drop case-insensitive duplicates, keeping the first spelling and the order."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.casefold(), name)
    return list(seen.values())


def _unique_checks(checks: list[Check]) -> list[Check]:
    """Drop checks whose name already appeared (one check matched by two entries)."""
    by_name: dict[str, Check] = {}
    for check in checks:
        by_name.setdefault(check.name.casefold(), check)
    return list(by_name.values())


def _names(names: Sequence[str]) -> str:
    """Join names for a message, cutting long lists."""
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"
