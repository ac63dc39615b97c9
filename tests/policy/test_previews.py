"""Preview environments for pull requests: deploy, teardown or skip, per action."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from workers.policy.config import PreviewConfig
from workers.policy.decisions import PullRequestFacts, decide_preview, preview_expired

PR = PullRequestFacts(
    number=42,
    head_sha="0123456789abcdef0123456789abcdef01234567",
    head_ref="feature/login",
    base_repo="octo/shop",
    head_repo="octo/shop",
)
FORK = replace(PR, head_repo="mallory/shop")
DELETED_FORK = replace(PR, head_repo=None)
DRAFT = replace(PR, draft=True)
LABELLED = replace(PR, labels=("Preview",))
CLOSED = replace(PR, state="closed")
MERGED = replace(PR, state="closed", merged=True)

DEFAULT = PreviewConfig()
OFF = PreviewConfig(enabled=False)
WITH_FORKS = PreviewConfig(forks=True)
WITH_DRAFTS = PreviewConfig(drafts=True)
BY_LABEL = PreviewConfig(labels=("preview",))

PREVIEW_CASES = [
    pytest.param(PR, DEFAULT, "opened", None, "deploy", "pull request #42 opened", id="opened-deploys"),
    pytest.param(PR, DEFAULT, "reopened", None, "deploy", "reopened", id="reopened-deploys"),
    pytest.param(PR, DEFAULT, "synchronize", None, "deploy", "synchronize", id="synchronize-deploys"),
    pytest.param(PR, DEFAULT, "ready_for_review", None, "deploy", "ready_for_review", id="ready-for-review-deploys"),
    pytest.param(CLOSED, DEFAULT, "closed", None, "teardown", "pull request closed", id="closed-tears-down"),
    pytest.param(MERGED, DEFAULT, "closed", None, "teardown", "pull request merged", id="merged-tears-down"),
    pytest.param(CLOSED, OFF, "closed", None, "teardown", "closed", id="closed-tears-down-even-if-off"),
    pytest.param(PR, DEFAULT, "edited", None, "skip", "action edited does not change previews", id="unrelated-action"),
    pytest.param(PR, OFF, "opened", None, "skip", "previews are disabled", id="disabled"),
    pytest.param(FORK, DEFAULT, "opened", None, "skip", "fork (mallory/shop)", id="fork-skipped"),
    pytest.param(DELETED_FORK, DEFAULT, "synchronize", None, "skip", "fork (deleted)", id="deleted-fork-skipped"),
    pytest.param(FORK, WITH_FORKS, "opened", None, "deploy", "opened", id="fork-allowed"),
    pytest.param(replace(PR, head_repo="Octo/Shop"), DEFAULT, "opened", None, "deploy", "opened", id="same-repo-other-case"),
    pytest.param(DRAFT, DEFAULT, "opened", None, "skip", "draft pull request", id="draft-skipped"),
    pytest.param(DRAFT, WITH_DRAFTS, "opened", None, "deploy", "opened", id="draft-allowed"),
    pytest.param(DRAFT, DEFAULT, "converted_to_draft", None, "teardown", "draft", id="converted-to-draft-tears-down"),
    pytest.param(DRAFT, WITH_DRAFTS, "converted_to_draft", None, "skip", "still gets a preview", id="converted-with-drafts-on"),
    pytest.param(PR, BY_LABEL, "opened", None, "skip", "no preview label (needs one of: preview)", id="label-missing"),
    pytest.param(LABELLED, BY_LABEL, "opened", None, "deploy", "opened", id="label-present-any-case"),
    pytest.param(LABELLED, BY_LABEL, "labeled", "Preview", "deploy", "labeled", id="labeled-with-preview-label"),
    pytest.param(replace(LABELLED, labels=("Preview", "bug")), BY_LABEL, "labeled", "bug", "skip", "label bug", id="labeled-other-label"),
    pytest.param(PR, BY_LABEL, "labeled", "bug", "skip", "no preview label", id="labeled-still-no-preview-label"),
    pytest.param(PR, DEFAULT, "labeled", "bug", "skip", "label bug does not change", id="labeled-when-labels-unused"),
    pytest.param(PR, BY_LABEL, "unlabeled", "preview", "teardown", "no preview label", id="unlabeled-removes-preview"),
    pytest.param(replace(PR, labels=("preview",)), BY_LABEL, "unlabeled", "bug", "skip", "still gets", id="unlabeled-other-label"),
    pytest.param(PR, DEFAULT, "unlabeled", "bug", "skip", "still gets", id="unlabeled-when-labels-unused"),
    pytest.param(CLOSED, DEFAULT, "synchronize", None, "skip", "not open", id="late-event-for-closed-pr"),
]


@pytest.mark.parametrize(("pr", "cfg", "action", "label", "verdict", "reason"), PREVIEW_CASES)
def test_decide_preview(pr, cfg, action, label, verdict, reason):
    """Each pull_request action deploys, tears down or skips the preview, with the reason."""
    decision = decide_preview(pr, cfg, action, label=label)
    assert decision.verdict == verdict
    assert any(reason in text for text in decision.reasons), decision.reasons
    assert decision.environment == "pr-42"
    assert (decision.candidate is not None) == (verdict == "deploy")


def test_deploy_carries_the_preview_gate_and_url():
    """A deploy decision names environment, URL and the preview gate for the candidate."""
    cfg = PreviewConfig(
        environment="preview-{branch}", url="https://{branch}.{repo}.example.com", required_checks=("test",)
    )
    decision = decide_preview(PR, cfg, "opened")
    assert decision.environment == "preview-feature-login"
    assert decision.url == "https://feature-login.shop.example.com"
    candidate = decision.candidate
    assert (candidate.environment, candidate.trigger, candidate.required_checks, candidate.transient) == (
        "preview-feature-login",
        "preview",
        ("test",),
        True,
    )
    assert candidate.url == decision.url


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("idle", "ttl", "expired"),
    [
        (timedelta(days=8), timedelta(days=7), True),
        (timedelta(days=6), timedelta(days=7), False),
        (timedelta(days=7), timedelta(days=7), False),
        (timedelta(hours=13), "12h", True),
        (timedelta(days=365), None, False),
    ],
    ids=["past-ttl", "within-ttl", "exactly-ttl", "text-ttl", "no-ttl"],
)
def test_preview_expired(idle, ttl, expired):
    """A preview idle for longer than its TTL is expired; without a TTL never."""
    assert preview_expired(NOW - idle, ttl, NOW) is expired
