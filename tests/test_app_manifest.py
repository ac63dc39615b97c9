"""app.yml: the events it subscribes to are exactly those Slipway handles, with the least permissions they need."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from workers.registry import handled_events

APP_YML = Path(__file__).resolve().parents[1] / "app.yml"

# Delivered to every App without (and unable to) subscribe: GitHub's docs say so for the two
# installation events; `ping` is sent when the App (its hook) is created.
ALWAYS_DELIVERED = {"installation", "installation_repositories", "ping"}

# The permission GitHub requires to subscribe to each event (github/docs "Webhook events and payloads").
EVENT_NEEDS = {
    "check_run": ("checks", "read"),
    "check_suite": ("checks", "read"),
    "create": ("contents", "read"),
    "delete": ("contents", "read"),
    "deployment": ("deployments", "read"),
    "deployment_protection_rule": ("deployments", "read"),
    "deployment_status": ("deployments", "read"),
    "pull_request": ("pull_requests", "read"),
    "push": ("contents", "read"),
    "release": ("contents", "read"),
    "status": ("statuses", "read"),
    "workflow_run": ("actions", "read"),
}

# What the features do on GitHub (workers/github.py) and the permission each call needs.
FEATURE_NEEDS = {
    "create deployments and deployment statuses": ("deployments", "write"),
    "review a custom deployment protection rule (callback)": ("deployments", "write"),
    "post slipway/<environment> commit statuses": ("statuses", "write"),
    "read combined commit status for CI gates": ("statuses", "read"),
    "list check runs for CI gates": ("checks", "read"),
    "run a workflow_dispatch provisioner": ("actions", "write"),
    "list workflow runs for CI gates": ("actions", "read"),
    "read .github/slipway.yml and commits": ("contents", "read"),
    "read the pull request as it is now": ("pull_requests", "read"),
    "read the repository (default branch)": ("metadata", "read"),
}

LEVEL = {"read": 1, "write": 2}


@pytest.fixture(scope="module")
def manifest() -> dict:
    """app.yml, parsed."""
    return yaml.safe_load(APP_YML.read_text())


def github_events() -> set[str]:
    """Every webhook event name GitHub knows (githubkit's schema of the 2026-03-10 API)."""
    from githubkit_schemas.v2026_03_10.webhooks import EventNameType

    return set(typing.get_args(EventNameType))


def subscribable_handled() -> set[str]:
    """The GitHub events the registry handles, minus internal and always-delivered ones."""
    return {e for e in handled_events() if not e.startswith("slipway.")} - ALWAYS_DELIVERED


def test_default_events_are_exactly_the_handled_events(manifest: dict) -> None:
    """Nothing handled is left unsubscribed, and nothing is subscribed that no handler acts on."""
    subscribed = set(manifest["default_events"])
    assert len(subscribed) == len(manifest["default_events"]), "duplicate events in app.yml"
    handled = subscribable_handled()
    assert handled - subscribed == set(), f"handled but not subscribed: {sorted(handled - subscribed)}"
    assert subscribed - handled == set(), f"subscribed but not handled: {sorted(subscribed - handled)}"


def test_default_events_are_real_subscribable_github_events(manifest: dict) -> None:
    """Every listed event exists, and the always-delivered ones are not listed (they cannot be subscribed)."""
    events = set(manifest["default_events"])
    assert events <= github_events()
    assert not events & ALWAYS_DELIVERED
    assert ALWAYS_DELIVERED <= github_events()


def test_handled_events_that_are_always_delivered_are_really_handled() -> None:
    """The exclusion list does not hide anything: each always-delivered event is one the registry handles."""
    assert ALWAYS_DELIVERED <= set(handled_events())


def test_every_event_has_the_permission_it_needs(manifest: dict) -> None:
    """GitHub only delivers an event to an App holding its permission."""
    perms = manifest["default_permissions"]
    missing = subscribable_handled() - set(EVENT_NEEDS)
    assert not missing, f"add {sorted(missing)} to EVENT_NEEDS"
    for event, (name, level) in EVENT_NEEDS.items():
        if event in manifest["default_events"]:
            assert LEVEL.get(perms.get(name, ""), 0) >= LEVEL[level], f"{event} needs {name}: {level}"


def test_permissions_are_the_least_the_features_need(manifest: dict) -> None:
    """Each permission is needed by an event or a feature, at no higher level than the highest need."""
    perms = manifest["default_permissions"]
    needed: dict[str, str] = {}
    for name, level in [*EVENT_NEEDS.values(), *FEATURE_NEEDS.values()]:
        if LEVEL[level] > LEVEL.get(needed.get(name, ""), 0):
            needed[name] = level
    assert perms == needed
    assert "administration" not in perms  # deleting preview environments is left to the operator (see app.yml)


def test_manifest_has_the_keys_github_requires(manifest: dict) -> None:
    """url, name, the webhook path, a private App, a redirect for the manifest flow."""
    assert manifest["name"] and manifest["url"].startswith("https://")
    assert manifest["hook_attributes"]["url"].endswith("/api/github/webhooks")
    assert manifest["hook_attributes"].get("active", True) is True
    assert manifest["public"] is False
    assert manifest["redirect_url"].startswith("http")
    assert set(manifest["default_permissions"].values()) <= {"read", "write"}
