"""Slipway's deployment policy: pure functions from plain facts to decisions.

This package does no I/O: no network, database, queue, files, environment variables or clock.
Handlers gather the facts (payloads, API answers, database rows, the current time), call these
functions, and apply and record the results.

Modules:
- config: the `.github/slipway.yml` model, parser, built-in defaults and merge.
- templates: environment names and URLs from templates ("pr-{number}").
- gate: the CI gate over check runs, workflow runs and commit statuses.
- freeze: freeze windows ("Fri 16:00 - Mon 08:00 Europe/Berlin").
- decisions: previews, deploy candidates per event, verdicts, rollback, protection rules.
- errors, text, yamlfile: ConfigError, glob matching, YAML reading with line numbers.
"""

from workers.policy.config import (
    BUILTIN_DEFAULTS,
    CONFIG_PATH,
    BranchConfig,
    EnvironmentConfig,
    PreviewConfig,
    ProvisionerConfig,
    RepoConfig,
    config_status,
    merge_config,
    parse_config,
    parse_duration,
    render_template,
    render_url,
    touches_config,
)
from workers.policy.decisions import (
    Candidate,
    Decision,
    DeploymentRecord,
    PreviewDecision,
    PullRequestFacts,
    ReleaseFacts,
    WorkflowRunFacts,
    branch_environment_for,
    candidate_for_push,
    candidate_for_release,
    candidate_for_tag,
    candidate_for_workflow_run,
    commit_status_for_decision,
    decide_candidate,
    decide_preview,
    decide_protection_rule,
    decide_rollback,
    preview_expired,
)
from workers.policy.errors import ConfigError
from workers.policy.freeze import DatedWindow, FreezeWindow, WeeklyWindow, freeze_until, parse_freeze_window
from workers.policy.gate import Check, GateResult, commit_status_for, evaluate_gate, status_context

__all__ = [
    "BUILTIN_DEFAULTS",
    "CONFIG_PATH",
    "BranchConfig",
    "Candidate",
    "Check",
    "ConfigError",
    "DatedWindow",
    "Decision",
    "DeploymentRecord",
    "EnvironmentConfig",
    "FreezeWindow",
    "GateResult",
    "PreviewConfig",
    "PreviewDecision",
    "ProvisionerConfig",
    "PullRequestFacts",
    "ReleaseFacts",
    "RepoConfig",
    "WeeklyWindow",
    "WorkflowRunFacts",
    "branch_environment_for",
    "candidate_for_push",
    "candidate_for_release",
    "candidate_for_tag",
    "candidate_for_workflow_run",
    "commit_status_for",
    "commit_status_for_decision",
    "config_status",
    "decide_candidate",
    "decide_preview",
    "decide_protection_rule",
    "decide_rollback",
    "evaluate_gate",
    "freeze_until",
    "merge_config",
    "parse_config",
    "parse_duration",
    "parse_freeze_window",
    "preview_expired",
    "render_template",
    "render_url",
    "status_context",
    "touches_config",
]
